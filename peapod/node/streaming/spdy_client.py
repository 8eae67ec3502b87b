"""A minimal SPDY/3.1 client: the HTTP upgrade (or a WebSocket tunnel) and a client session.

Meant for tests and tools (e.g. checking that an API-server proxy passes upgrades through):

    path = "/api/v1/namespaces/d/pods/p/exec?command=ls&stdout=1"
    spdy, proto = await connect_spdy("127.0.0.1", port, path, protocols=["v4.channel.k8s.io"])
    err = await spdy.open_stream({"streamType": "error"})
    out = await spdy.open_stream({"streamType": "stdout"})
"""

from __future__ import annotations

import asyncio
import ssl as ssl_mod
from collections.abc import Mapping

import aiohttp

from peapod.node.streaming import spdy_frames as f
from peapod.node.streaming.channels import StreamChannel, WebSocketChannel
from peapod.node.streaming.spdy_session import SpdySession

_MAX_HEAD = 64 * 1024


class UpgradeRefused(Exception):
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        super().__init__(f"upgrade refused with HTTP {status}: {body[:200]!r}")
        self.status = status
        self.headers = headers
        self.body = body


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, list[tuple[str, str]], bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = await reader.read(4096)
        if not chunk:
            raise ConnectionError("connection closed before the response head")
        buf += chunk
        if len(buf) > _MAX_HEAD:
            raise ConnectionError("response head too large")
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    return status, headers, rest


class _PrefixedChannel(StreamChannel):
    """Yields bytes that arrived with the response head before reading the socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, prefix: bytes) -> None:
        super().__init__(reader, writer)
        self._prefix = prefix

    async def read(self) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix, b""
            return data
        return await super().read()


async def connect_spdy(host: str, port: int, path: str, *, protocols: list[str], method: str = "POST",
                       headers: Mapping[str, str] | None = None, ssl: ssl_mod.SSLContext | None = None,
                       flow_control: bool = True) -> tuple[SpdySession, str]:
    """Upgrade an HTTP/1.1 connection to SPDY/3.1; returns the started client session and the
    negotiated X-Stream-Protocol-Version. With ``flow_control`` the client announces its initial
    window in a SETTINGS frame, which makes our own server enforce windows toward it."""
    reader, writer = await asyncio.open_connection(host, port, ssl=ssl)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: Upgrade", "Upgrade: SPDY/3.1",
             "Content-Length: 0"]
    lines += [f"X-Stream-Protocol-Version: {p}" for p in protocols]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    await writer.drain()
    status, head, rest = await _read_head(reader)
    if status != 101:
        body = rest
        length = next((int(v) for k, v in head if k.lower() == "content-length" and v.isdigit()), None)
        if length is not None:
            while len(body) < length:
                chunk = await reader.read(length - len(body))
                if not chunk:
                    break
                body += chunk
        writer.close()
        raise UpgradeRefused(status, head, body)
    negotiated = next((v for k, v in head if k.lower() == "x-stream-protocol-version"), "")
    session = SpdySession(_PrefixedChannel(reader, writer, rest), server=False)
    session.start()
    if flow_control:
        session.send_settings([(0, f.SETTINGS_INITIAL_WINDOW_SIZE, session.initial_window)])
    return session, negotiated


async def connect_spdy_websocket(
    http: aiohttp.ClientSession, url: str, *, protocol: str = "portforward.k8s.io",
    headers: Mapping[str, str] | None = None, flow_control: bool = False,
) -> tuple[SpdySession, aiohttp.ClientWebSocketResponse]:
    """kubectl 1.31+'s port-forward: SPDY frames in WebSocket binary messages, subprotocol
    ``SPDY/3.1+<protocol>``."""
    ws = await http.ws_connect(url, protocols=[f"SPDY/3.1+{protocol}"], headers=headers, autoping=True)
    session = SpdySession(WebSocketChannel(ws), server=False)
    session.start()
    if flow_control:
        session.send_settings([(0, f.SETTINGS_INITIAL_WINDOW_SIZE, session.initial_window)])
    return session, ws
