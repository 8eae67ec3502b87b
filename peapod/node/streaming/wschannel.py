"""The channel.k8s.io WebSocket framing (k8s.io/apimachinery wsstream).

Binary protocols: each message is one channel byte then data. base64 protocols: text messages, the
channel as an ASCII digit then base64 data. v5 adds a close signal: a message [255, channel] from
the client means "no more data on channel" (used to close stdin).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from dataclasses import dataclass

import aiohttp
from aiohttp import web

CLOSE_CHANNEL = 255


def offered_protocols(request: web.BaseRequest) -> list[str]:
    """The Sec-WebSocket-Protocol values the client offered, in its order of preference."""
    out: list[str] = []
    for value in request.headers.getall("Sec-WebSocket-Protocol", []):
        out += [p.strip() for p in value.split(",") if p.strip()]
    return out


def is_websocket_request(request: web.BaseRequest) -> bool:
    return ("upgrade" in request.headers.get("Connection", "").lower()
            and request.headers.get("Upgrade", "").lower() == "websocket")


def negotiate(offered: list[str], supported: list[str]) -> str | None:
    """The first offered protocol we support; "" when nothing was offered; None when none fits
    (kubelet answers that with an error rather than picking a default)."""
    if not offered:
        return ""
    for p in offered:
        if p in supported:
            return p
    return None


@dataclass
class Message:
    channel: int
    data: bytes


class ChannelWebSocket:
    """Send and receive channel messages over a prepared aiohttp WebSocketResponse."""

    def __init__(self, ws: web.WebSocketResponse, *, base64_mode: bool) -> None:
        self.ws = ws
        self.base64 = base64_mode
        self._lock = asyncio.Lock()

    async def send(self, channel: int, data: bytes) -> None:
        async with self._lock:
            if self.ws.closed:
                raise ConnectionResetError("websocket closed")
            if self.base64:
                await self.ws.send_str(chr(ord("0") + channel) + base64.b64encode(data).decode())
            else:
                await self.ws.send_bytes(bytes([channel]) + data)

    async def receive(self) -> Message | None:
        """The next channel message, or None once the connection is closed."""
        while True:
            try:
                msg = await self.ws.receive()
            except (ConnectionError, OSError, RuntimeError):
                return None
            if msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                # Like kubelet, take either frame type; the protocol decides the encoding.
                data = msg.data.encode() if isinstance(msg.data, str) else bytes(msg.data)
                if not data:
                    continue
                if not self.base64:
                    return Message(data[0], data[1:])
                try:
                    return Message(data[0] - ord("0"), base64.b64decode(data[1:]))
                except (binascii.Error, ValueError):
                    continue
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
                              aiohttp.WSMsgType.ERROR):
                return None

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
