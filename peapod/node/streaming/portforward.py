"""port-forward: the server side of kubelet's port-forward protocols.

- SPDY/3.1 (`X-Stream-Protocol-Version: portforward.k8s.io`): per forwarded connection the client
  opens an error stream and a data stream with headers streamType, port and requestID.
- The same SPDY session tunnelled in WebSocket binary messages (subprotocol
  `SPDY/3.1+portforward.k8s.io`, kubectl 1.31+).
- The WebSocket channel protocol (`v4.channel.k8s.io`, ports in the ``ports``/``port`` query, as the
  Python client's `portforward` uses): channels 2i (data) and 2i+1 (error) for the i-th port, each
  opened by a frame holding the port as 2 bytes little-endian; one connection per port.

Per connection the backend's `connect(port)` gives a TCP-like stream pair; bytes are pumped both
ways. A client half-close is passed on with write_eof; the target's EOF ends the connection. A connect
failure is reported on the error stream with kubelet's wording.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web

from peapod.node.streaming.channels import WebSocketChannel
from peapod.node.streaming.remotecommand import spdy_accept, spdy_handshake
from peapod.node.streaming.spdy_session import SpdySession, SpdyStream
from peapod.node.streaming.wschannel import (
    ChannelWebSocket,
    is_websocket_request,
    negotiate,
    offered_protocols,
)

log = logging.getLogger(__name__)

PORTFORWARD_PROTOCOL = "portforward.k8s.io"
TUNNEL_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
WS_PROTOCOLS = ["v4.channel.k8s.io", "v4.base64.channel.k8s.io", "channel.k8s.io", "base64.channel.k8s.io"]
PAIR_TIMEOUT = 30.0
_CHUNK = 32 * 1024


class PortForwardBackend(Protocol):
    async def connect(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open a connection to ``port`` inside the pod; raise (OSError, StreamError...) on failure."""
        ...


def parse_ports(query: object) -> list[int]:
    """Ports of a WebSocket port-forward request (``ports`` from the API, ``port`` from kubelet's URL)."""
    getall = query.getall  # type: ignore[attr-defined]
    values = list(getall("ports", [])) + list(getall("port", []))
    if not values:
        raise ValueError('query parameter "port" is required')
    ports: list[int] = []
    for value in values:
        if not value:
            raise ValueError('query parameter "port" cannot be empty')
        for p in value.split(","):
            try:
                port = int(p)
            except ValueError:
                raise ValueError(f'unable to parse "{p}" as a port: invalid syntax') from None
            if not 0 < port < 65536:
                raise ValueError(f'port "{p}" must be > 0 and < 65536')
            ports.append(port)
    return ports


def _error_message(port: int, err: BaseException, pod: str | None, uid: str | None) -> str:
    text = str(err) or type(err).__name__
    if pod is not None:
        return f"error forwarding port {port} to pod {pod}, uid {uid or ''}: {text}"
    return f"error forwarding port {port}: {text}"


async def forward(backend: PortForwardBackend, port: int, *, read_client: Callable[[], Awaitable[bytes]],
                  write_client: Callable[[bytes], Awaitable[None]], end_client: Callable[[], Awaitable[None]],
                  report_error: Callable[[str], Awaitable[None]], pod: str | None = None,
                  uid: str | None = None) -> None:
    """Connect to ``port`` and pump bytes until the target closes (or the client goes away)."""
    try:
        reader, writer = await backend.connect(port)
    except asyncio.CancelledError:
        raise
    except Exception as e:
        msg = _error_message(port, e, pod, uid)
        log.info("port-forward: %s", msg)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await report_error(msg)
        return

    async def upstream() -> None:
        while data := await read_client():
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    async def downstream() -> None:
        while data := await reader.read(_CHUNK):
            await write_client(data)

    up = asyncio.create_task(upstream())
    try:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            await downstream()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await end_client()
    finally:
        up.cancel()
        with contextlib.suppress(BaseException):
            await up
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def handle_portforward(request: web.Request, backend: PortForwardBackend, *, pod: str | None = None,
                             uid: str | None = None) -> web.StreamResponse:
    """Serve a port-forward request over whichever protocol the client asked for.

    ``pod`` ("namespace/name") and ``uid`` only shape error messages like kubelet's.
    """
    if is_websocket_request(request):
        offered = offered_protocols(request)
        if TUNNEL_PROTOCOL in offered:
            ws = web.WebSocketResponse(protocols=[TUNNEL_PROTOCOL], compress=False, timeout=2.0,
                                       max_msg_size=16 * 1024 * 1024)
            await ws.prepare(request)
            session = _PortForwardSession(backend, pod, uid)
            spdy = SpdySession(WebSocketChannel(ws), server=True, on_stream=session.on_stream)
            await session.serve(spdy)
            return ws
        return await _serve_websocket(request, backend, offered, pod=pod, uid=uid)
    proto, refusal = await spdy_handshake(request, [PORTFORWARD_PROTOCOL], default=None)
    if refusal is not None:
        return refusal
    session = _PortForwardSession(backend, pod, uid)
    resp, spdy, _, _ = await spdy_accept(request, proto, on_stream=session.on_stream)
    await session.serve(spdy, started=True)
    return resp


class _Pair:
    def __init__(self) -> None:
        self.data: SpdyStream | None = None
        self.error: SpdyStream | None = None
        self.started = False
        self.timer: asyncio.Future[None] | None = None


class _PortForwardSession:
    """Pairs data and error streams by requestID and runs one forward per pair."""

    def __init__(self, backend: PortForwardBackend, pod: str | None, uid: str | None) -> None:
        self.backend = backend
        self.pod = pod
        self.uid = uid
        self.pairs: dict[str, _Pair] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def on_stream(self, stream: SpdyStream) -> bool:
        kind = (stream.header("streamtype") or "").lower()
        request_id = stream.header("requestid")
        if request_id is None:  # old clients: pair by stream id (data = error + 2)
            request_id = str(stream.id if kind == "error" else stream.id - 2)
        if kind not in ("data", "error"):
            return False
        pair = self.pairs.setdefault(request_id, _Pair())
        if kind == "data":
            if pair.data is not None:
                return False
            pair.data = stream
        else:
            if pair.error is not None:
                return False
            pair.error = stream
        if pair.data is not None and pair.error is not None and not pair.started:
            pair.started = True
            if pair.timer is not None:
                pair.timer.cancel()
            self._spawn(self._run_pair(request_id, pair))
        elif not pair.started and pair.timer is None:
            pair.timer = self._spawn(self._pair_timeout(request_id, pair))
        return True

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Future[None]:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _pair_timeout(self, request_id: str, pair: _Pair) -> None:
        await asyncio.sleep(PAIR_TIMEOUT)
        if not pair.started:
            self.pairs.pop(request_id, None)
            msg = f"(request={request_id}) timed out waiting for streams"
            for s in (pair.error, pair.data):
                if s is not None:
                    with contextlib.suppress(ConnectionError):
                        if s is pair.error:
                            await s.write(msg.encode())
                        await s.close()

    async def _run_pair(self, request_id: str, pair: _Pair) -> None:
        data, error = pair.data, pair.error
        assert data is not None and error is not None
        try:
            port_text = data.header("port") or ""
            try:
                port = int(port_text)
                if not 0 < port < 65536:
                    raise ValueError
            except ValueError:
                with contextlib.suppress(ConnectionError):
                    await error.write(f'invalid port header "{port_text}"'.encode())
                return

            async def report(msg: str) -> None:
                await error.write(msg.encode())

            await forward(self.backend, port, read_client=data.read, write_client=data.write,
                          end_client=data.close, report_error=report, pod=self.pod, uid=self.uid)
        finally:
            self.pairs.pop(request_id, None)
            for s in (data, error):
                with contextlib.suppress(ConnectionError):
                    await s.close()

    async def serve(self, spdy: SpdySession, *, started: bool = False) -> None:
        if not started:
            spdy.start()
        try:
            await spdy.wait_closed()
        finally:
            for t in list(self.tasks):
                t.cancel()
            for t in list(self.tasks):
                with contextlib.suppress(BaseException):
                    await t
            await spdy.close(goaway=False)


async def _serve_websocket(request: web.Request, backend: PortForwardBackend, offered: list[str], *,
                           pod: str | None, uid: str | None) -> web.StreamResponse:
    proto = negotiate(offered, WS_PROTOCOLS)
    if proto is None:
        return web.Response(status=400, text=f"requested protocol(s) are not supported: {offered}; "
                                             f"supports {WS_PROTOCOLS}")
    try:
        ports = parse_ports(request.query)
    except ValueError as e:
        return web.Response(status=400, text=str(e))
    ws = web.WebSocketResponse(protocols=[proto] if proto else (), compress=False, timeout=2.0,
                               max_msg_size=16 * 1024 * 1024)
    await ws.prepare(request)
    conn = ChannelWebSocket(ws, base64_mode="base64" in proto)
    inboxes: list[asyncio.Queue[bytes]] = [asyncio.Queue(maxsize=64) for _ in ports]
    for i, port in enumerate(ports):
        head = struct.pack("<H", port)
        await conn.send(2 * i, head)
        await conn.send(2 * i + 1, head)

    async def receive() -> None:
        try:
            while (m := await conn.receive()) is not None:
                if m.channel % 2 == 0 and m.channel // 2 < len(ports) and m.data:
                    await inboxes[m.channel // 2].put(m.data)
        finally:
            for q in inboxes:
                with contextlib.suppress(asyncio.QueueFull):
                    q.put_nowait(b"")

    def pump(i: int, port: int) -> Awaitable[None]:
        async def write(data: bytes) -> None:
            await conn.send(2 * i, data)

        async def end() -> None:
            return None

        async def report(msg: str) -> None:
            await conn.send(2 * i + 1, msg.encode())

        return forward(backend, port, read_client=inboxes[i].get, write_client=write, end_client=end,
                       report_error=report, pod=pod, uid=uid)

    receiver = asyncio.create_task(receive())
    pumps = [asyncio.ensure_future(pump(i, p)) for i, p in enumerate(ports)]
    try:
        done, pending = await asyncio.wait({*pumps, receiver}, return_when=asyncio.FIRST_COMPLETED)
        if receiver in done:  # the client left: stop forwarding
            for t in pending:
                t.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        await conn.close()
    finally:
        for t in [*pumps, receiver]:  # also when aiohttp cancels this handler on disconnect
            t.cancel()
        for t in [*pumps, receiver]:
            with contextlib.suppress(BaseException):
                await t
    return ws
