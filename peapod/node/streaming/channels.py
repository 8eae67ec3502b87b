"""Byte channels: the bidirectional byte pipes a SPDY session runs over.

- `UpgradedChannel`: an aiohttp server connection taken over after answering 101 (SPDY/3.1 upgrade).
- `WebSocketChannel`: a WebSocket whose binary messages carry a byte stream (kubectl 1.31+ tunnels
  SPDY inside `SPDY/3.1+portforward.k8s.io`); works with aiohttp's server and client WebSockets.
- `StreamChannel`: an asyncio StreamReader/StreamWriter pair (test clients, proxies).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

import aiohttp
from aiohttp import web


class ByteChannel(Protocol):
    async def read(self) -> bytes:
        """The next bytes received; b"" once the peer closed or the connection broke."""
        ...

    async def write(self, data: bytes) -> None:
        """Send bytes, waiting while the peer is slow to read."""
        ...

    async def close(self) -> None: ...


class StreamChannel:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self) -> bytes:
        try:
            return await self._reader.read(65536)
        except (ConnectionError, OSError):
            return b""

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()


class _Feeder:
    """Stands in for aiohttp's payload parser: raw bytes of the upgraded connection go to a queue."""

    def __init__(self, transport: asyncio.Transport | None) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
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
        self.queue.put_nowait(b"")

    async def get(self) -> bytes:
        data = await self.queue.get()
        if not data:
            self.queue.put_nowait(b"")  # stay at EOF for later readers
        if self.paused and self.queue.qsize() < 8 and self.transport is not None:
            self.paused = False
            with contextlib.suppress(Exception):
                self.transport.resume_reading()
        return data


class UpgradedChannel:
    """The raw connection under an aiohttp request after a 101 answer."""

    def __init__(self, request: web.BaseRequest) -> None:
        self._transport = request.transport
        self._protocol: Any = request.protocol
        self._feeder = _Feeder(self._transport)  # type: ignore[arg-type]
        request.protocol.set_parser(self._feeder)  # type: ignore[arg-type]

    async def read(self) -> bytes:
        return await self._feeder.get()

    async def write(self, data: bytes) -> None:
        t = self._transport
        if t is None or t.is_closing():
            raise ConnectionResetError("connection closed")
        t.write(data)
        if self._protocol.writing_paused:
            await self._protocol._drain_helper()

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def upgrade_response(request: web.Request,
                           headers: dict[str, str]) -> tuple[web.StreamResponse, UpgradedChannel]:
    """Answer 101 with ``headers`` and take the connection over as a byte channel."""
    resp = web.StreamResponse(status=101, reason="Switching Protocols")
    for k, v in headers.items():
        resp.headers[k] = v
    resp.force_close()
    channel = UpgradedChannel(request)
    await resp.prepare(request)
    return resp, channel


class WebSocketChannel:
    """A byte stream carried in binary WebSocket messages (text messages are refused)."""

    def __init__(self, ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._lock = asyncio.Lock()

    async def read(self) -> bytes:
        while True:
            try:
                msg = await self._ws.receive()
            except (ConnectionError, OSError, RuntimeError, asyncio.CancelledError) as e:
                if isinstance(e, asyncio.CancelledError):
                    raise
                return b""
            if msg.type == aiohttp.WSMsgType.BINARY:
                if msg.data:
                    return bytes(msg.data)
                continue
            if msg.type in (aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG):
                continue
            return b""

    async def write(self, data: bytes) -> None:
        async with self._lock:
            await self._ws.send_bytes(data)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._ws.close()
