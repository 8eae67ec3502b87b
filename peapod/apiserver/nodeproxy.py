"""Proxy pods/log|exec|attach|portforward to the node agent that runs the pod.

Plain requests (logs, also followed ones) are streamed through. Upgrade requests (WebSocket and
SPDY/3.1) are forwarded as raw bytes: once the node answers 101, bytes flow both ways unchanged
until either side closes, so every streaming protocol kubectl speaks works without being parsed here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

import aiohttp
from aiohttp import web

from peapod.api import errors
from peapod.api.resources import REGISTRY, ResourceInfo
from peapod.apiserver.context import ApiContext
from peapod.apiserver.handlers.read import get_object

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "authorization",
    "content-length",
}
_MAX_HEAD = 64 * 1024
_NODES = REGISTRY.get("", "v1", "nodes")


def _unavailable(message: str) -> errors.ApiError:
    return errors.ApiError(503, "ServiceUnavailable", message)


async def node_endpoint(ctx: ApiContext, pod: dict[str, Any]) -> tuple[str, int]:
    """(address, port) of the node agent serving ``pod``."""
    meta = pod.get("metadata", {})
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise errors.bad_request(f"pod {meta.get('name')} does not have a host assigned")
    assert _NODES is not None
    got = await ctx.storage.get(_NODES, None, node_name)
    if got is None:
        raise _unavailable(
            f'node "{node_name}" of pod "{meta.get("namespace")}/{meta.get("name")}" does not exist'
        )
    status = got[0].get("status") or {}
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    addresses = {
        a.get("type"): a.get("address") for a in status.get("addresses") or [] if isinstance(a, dict)
    }
    address = addresses.get("InternalIP") or addresses.get("ExternalIP") or addresses.get("Hostname")
    if not isinstance(port, int) or port <= 0 or not address:
        raise _unavailable(
            f'node "{node_name}" has no reachable agent endpoint (status.addresses and '
            "status.daemonEndpoints.kubeletEndpoint.Port)"
        )
    return address, port


def _ssl(ctx: ApiContext) -> ssl.SSLContext | bool | None:
    if ctx.node_scheme != "https":
        return None
    return ctx.node_client_ssl if ctx.node_client_ssl is not None else True


def _forward_headers(ctx: ApiContext, request: web.Request) -> list[tuple[str, str]]:
    """The request's end-to-end headers, repeated ones kept: kubectl offers each stream protocol in a
    header of its own (``X-Stream-Protocol-Version: v4.channel.k8s.io``, ... ``channel.k8s.io``), and
    keeping only the last would make the node pick v1, whose clients never close stdin."""
    out = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP and k.lower() != "x-remote-user"]
    if ctx.node_auth_header:
        out.append(("Authorization", ctx.node_auth_header))
    user = request.get("user")
    if isinstance(user, dict) and user.get("username"):
        out.append(("X-Remote-User", str(user["username"])))
    return out


async def proxy_to_node(
    ctx: ApiContext, request: web.Request, info: ResourceInfo, namespace: str | None, name: str, sub: str
) -> web.StreamResponse:
    pod = await get_object(ctx, info, namespace, name)
    host, port = await node_endpoint(ctx, pod)
    if request.headers.get("Upgrade"):
        return await _proxy_upgrade(ctx, request, host, port)
    return await _proxy_http(ctx, request, host, port)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


async def _proxy_http(ctx: ApiContext, request: web.Request, host: str, port: int) -> web.StreamResponse:
    url = f"{ctx.node_scheme}://{_url_host(host)}:{port}{request.raw_path}"
    session: aiohttp.ClientSession = ctx.node_session
    body = await request.read() if request.can_read_body else None
    try:
        upstream_cm = session.request(
            request.method,
            url,
            headers=_forward_headers(ctx, request),
            data=body,
            ssl=_ssl(ctx),
            allow_redirects=False,
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        upstream = await upstream_cm.__aenter__()
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        raise _unavailable(f"error dialing node agent at {host}:{port}: {e}") from None
    try:
        resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for k, v in upstream.headers.items():
            if k.lower() not in _HOP_BY_HOP and k.lower() != "content-encoding":
                resp.headers.add(k, v)
        await resp.prepare(request)
        with contextlib.suppress(aiohttp.ClientError, ConnectionResetError, asyncio.TimeoutError):
            async for chunk in upstream.content.iter_any():
                await resp.write(chunk)
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await resp.write_eof()
        return resp
    finally:
        await upstream_cm.__aexit__(None, None, None)


class _Feeder:
    """Takes the place of aiohttp's payload parser: raw client bytes go to a queue."""

    def __init__(self, transport: asyncio.Transport | None) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.transport = transport
        self.paused = False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if data:
            self.queue.put_nowait(data)
            if self.queue.qsize() > 64 and self.transport is not None and not self.paused:
                self.paused = True
                self.transport.pause_reading()
        return False, b""

    def feed_eof(self) -> None:
        self.queue.put_nowait(None)

    async def get(self) -> bytes | None:
        data = await self.queue.get()
        if self.paused and self.queue.qsize() < 8 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, str, list[tuple[str, str]], bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = await reader.read(4096)
        if not chunk:
            raise ConnectionError("node agent closed the connection")
        buf += chunk
        if len(buf) > _MAX_HEAD:
            raise ConnectionError("response head too large")
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    return status, reason, headers, rest


async def _proxy_upgrade(ctx: ApiContext, request: web.Request, host: str, port: int) -> web.StreamResponse:
    ssl_arg = _ssl(ctx)
    if ssl_arg is True:
        ssl_arg = ssl.create_default_context()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host, port, ssl=ssl_arg or None, server_hostname=host if ssl_arg else None
            ),
            10,
        )
    except (OSError, TimeoutError, ssl.SSLError) as e:
        raise _unavailable(f"error dialing node agent at {host}:{port}: {e}") from None
    try:
        head = [f"{request.method} {request.raw_path} HTTP/1.1", f"Host: {_url_host(host)}:{port}"]
        for k, v in _forward_headers(ctx, request):
            head.append(f"{k}: {v}")
        head += ["Connection: Upgrade", f"Upgrade: {request.headers['Upgrade']}"]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        body = await request.read() if request.can_read_body else b""
        if body:
            writer.write(body)
        try:
            status, reason, headers, rest = await asyncio.wait_for(_read_head(reader), 30)
        except (ConnectionError, ValueError, IndexError, TimeoutError, OSError) as e:
            raise _unavailable(f"bad answer from node agent at {host}:{port}: {e}") from None
        if status != 101:
            return await _relay_refusal(status, reason, headers, rest, reader)
        resp = web.StreamResponse(status=101, reason=reason or "Switching Protocols")
        for k, v in headers:
            if k.lower() not in ("content-length", "transfer-encoding", "date", "server"):
                resp.headers.add(k, v)
        resp.force_close()
        feeder = _Feeder(request.transport)
        request.protocol.set_parser(feeder)
        await resp.prepare(request)
        transport = request.transport
        if transport is None:
            return resp
        if rest:
            transport.write(rest)
        await _pipe(feeder, reader, writer, transport)
        return resp
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _relay_refusal(
    status: int, reason: str, headers: list[tuple[str, str]], rest: bytes, reader: asyncio.StreamReader
) -> web.Response:
    length = next((v for k, v in headers if k.lower() == "content-length"), None)
    body = rest
    try:
        if length is not None and length.isdigit():
            want = min(int(length), 1 << 20)
            while len(body) < want:
                chunk = await asyncio.wait_for(reader.read(want - len(body)), 10)
                if not chunk:
                    break
                body += chunk
            body = body[:want]
    except (TimeoutError, OSError):
        pass
    resp = web.Response(status=status, reason=reason or None, body=body)
    for k, v in headers:
        if k.lower() not in _HOP_BY_HOP and k.lower() not in ("date", "server"):
            resp.headers.add(k, v)
    return resp


async def _pipe(
    feeder: _Feeder,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    transport: asyncio.BaseTransport,
) -> None:
    async def up() -> None:
        while True:
            data = await feeder.get()
            if data is None:
                with contextlib.suppress(OSError, RuntimeError):
                    if writer.can_write_eof():
                        writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    async def down() -> None:
        while True:
            data = await reader.read(65536)
            if not data or transport.is_closing():
                return
            transport.write(data)  # type: ignore[attr-defined]

    tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
    try:
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        # Let the other direction finish what is in flight briefly, then close both sides.
        if pending:
            await asyncio.wait(pending, timeout=1.0)
    except (OSError, ConnectionError):
        pass
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        with contextlib.suppress(Exception):
            transport.close()
