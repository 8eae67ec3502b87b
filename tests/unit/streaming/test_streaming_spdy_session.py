"""SPDY sessions over an in-memory byte channel: streams, replies, resets, pings, flow control."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from peapod.node.streaming import spdy_frames as f
from peapod.node.streaming.spdy_session import SpdySession, SpdyStream, StreamResetError


class MemChannel:
    """One end of an in-memory pipe; records frames written (parsed with a peer-side parser)."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.peer: MemChannel | None = None
        self.closed = False
        self.sent = f.FrameParser()
        self.frames: list[f.Frame] = []

    async def read(self) -> bytes:
        return await self.inbox.get()

    async def write(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionResetError
        assert self.peer is not None
        self.frames += self.sent.feed(data)
        self.peer.inbox.put_nowait(data)

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.inbox.put_nowait(b"")
            assert self.peer is not None
            self.peer.inbox.put_nowait(b"")


def pipe() -> tuple[MemChannel, MemChannel]:
    a, b = MemChannel(), MemChannel()
    a.peer, b.peer = b, a
    return a, b


class Pair:
    def __init__(self, *, accept: bool = True) -> None:
        self.client_ch, self.server_ch = pipe()
        self.accepted: asyncio.Queue[SpdyStream] = asyncio.Queue()

        def on_stream(s: SpdyStream) -> bool:
            if accept:
                self.accepted.put_nowait(s)
            return accept

        self.server = SpdySession(self.server_ch, server=True, on_stream=on_stream)
        self.client = SpdySession(self.client_ch, server=False)


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    p = Pair()
    p.server.start()
    p.client.start()
    yield p
    await p.client.close()
    await p.server.close()


async def test_open_reply_data_and_half_close(pair: Pair) -> None:
    cs = await pair.client.open_stream({"streamType": "stdin", "X-Extra": "1"})
    ss = await pair.accepted.get()
    assert ss.id == cs.id == 1
    assert ss.header("streamtype") == "stdin" and ss.headers["x-extra"] == ["1"]
    await cs.write(b"ping")
    assert await ss.read() == b"ping"
    await ss.write(b"pong")
    assert await cs.read() == b"pong"
    await cs.close()
    assert await ss.reader.read() == b""  # FIN reads as EOF
    await ss.write(b"still open this way")
    assert await cs.read() == b"still open this way"
    await ss.close()
    assert await cs.reader.read() == b""
    assert pair.server.streams == {} and pair.client.streams == {}


async def test_second_stream_gets_next_odd_id(pair: Pair) -> None:
    await pair.client.open_stream({"a": "1"})
    s2 = await pair.client.open_stream({"a": "2"}, fin=True)
    assert s2.id == 3
    ss2 = [await pair.accepted.get(), await pair.accepted.get()][1]
    assert ss2.remote_closed and await ss2.reader.read() == b""


async def test_refused_stream_is_reset() -> None:
    p = Pair(accept=False)
    p.server.start()
    p.client.start()
    with pytest.raises(StreamResetError):
        await p.client.open_stream({"streamType": "bogus"})
    assert f.RstStreamFrame(1, f.REFUSED_STREAM) in p.server_ch.frames
    await p.client.close()
    await p.server.close()


async def test_reset_ends_reader_and_fails_writes(pair: Pair) -> None:
    cs = await pair.client.open_stream({})
    ss = await pair.accepted.get()
    cs.reset()
    assert await ss.reader.read() == b""
    assert ss.is_reset and ss.reset_status == f.CANCEL
    with pytest.raises(StreamResetError):
        await ss.write(b"x")


async def test_ping_is_answered_and_goaway_recorded(pair: Pair) -> None:
    await pair.client.ping()
    await pair.server.ping()
    pair.server.goaway()
    await pair.server.flush()
    await asyncio.sleep(0)
    await pair.client.flush()
    for _ in range(3):
        await asyncio.sleep(0)
    assert pair.client.goaway_received
    with pytest.raises(StreamResetError):
        await pair.client.open_stream({})


async def test_bad_stream_ids_are_rejected(pair: Pair) -> None:
    comp = f.HeaderCompressor()
    await pair.client_ch.write(f.encode_frame(f.SynStreamFrame(2, {}), comp))  # even: server-initiated parity
    await pair.client_ch.write(f.encode_frame(f.SynStreamFrame(5, {}), comp))
    await pair.client_ch.write(f.encode_frame(f.SynStreamFrame(3, {}), comp))  # not increasing
    await (await pair.accepted.get()).close()
    await pair.server.flush()
    rst = [fr for fr in pair.server_ch.frames if isinstance(fr, f.RstStreamFrame)]
    assert rst == [f.RstStreamFrame(2, f.PROTOCOL_ERROR), f.RstStreamFrame(3, f.PROTOCOL_ERROR)]


async def test_channel_eof_ends_every_stream(pair: Pair) -> None:
    cs = await pair.client.open_stream({})
    ss = await pair.accepted.get()
    await pair.client_ch.close()
    await pair.server.wait_closed()
    assert await ss.reader.read() == b""
    with pytest.raises(StreamResetError):
        await ss.write(b"x")
    await pair.client.wait_closed()
    assert await cs.reader.read() == b""


async def test_protocol_error_sends_goaway(pair: Pair) -> None:
    pair.server_ch.inbox.put_nowait(b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01")  # SPDY/2 ping
    await pair.server.wait_closed()
    assert f.GoAwayFrame(0, f.GOAWAY_PROTOCOL_ERROR) in pair.server_ch.frames


def data_sent(ch: MemChannel, sid: int) -> int:
    return sum(len(fr.data) for fr in ch.frames if isinstance(fr, f.DataFrame) and fr.stream_id == sid)


async def test_flow_control_is_enforced_once_the_peer_uses_it(pair: Pair) -> None:
    # The client announces its window (as a spec-following peer does) but never consumes the data.
    pair.client.send_settings([(0, f.SETTINGS_INITIAL_WINDOW_SIZE, 10_000)])
    cs = await pair.client.open_stream({})
    ss = await pair.accepted.get()
    assert pair.server.peer_flow_control
    writer = asyncio.create_task(ss.write(b"z" * 50_000))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not writer.done()
    assert data_sent(pair.server_ch, ss.id) == 10_000  # stopped at the stream window
    pair.client._queue_control(f.WindowUpdateFrame(cs.id, 40_000))
    await asyncio.wait_for(writer, 5)
    # The session window (64 KiB) was never exceeded either.
    assert data_sent(pair.server_ch, ss.id) == 50_000
    assert await cs.reader.readexactly(50_000) == b"z" * 50_000


async def test_without_peer_flow_control_nothing_blocks_and_updates_are_sent(pair: Pair) -> None:
    cs = await pair.client.open_stream({})
    ss = await pair.accepted.get()
    assert not pair.server.peer_flow_control  # spdystream never sends WINDOW_UPDATE or SETTINGS
    await asyncio.wait_for(ss.write(b"y" * 200_000), 5)  # beyond 64 KiB without any window update
    assert await cs.reader.readexactly(200_000) == b"y" * 200_000
    await pair.client.flush()
    updates = [fr for fr in pair.client_ch.frames if isinstance(fr, f.WindowUpdateFrame)]
    assert {u.stream_id for u in updates} == {0, cs.id}  # the receiver still credits what it read
    assert sum(u.delta for u in updates if u.stream_id == 0) >= 150_000


async def test_a_full_stream_buffer_stops_reading_from_a_peer_without_flow_control(pair: Pair) -> None:
    # Play spdystream: raw frames, no windows, no WINDOW_UPDATE ever.
    comp = f.HeaderCompressor()
    raw = pair.server_ch.inbox.put_nowait
    raw(f.encode_frame(f.SynStreamFrame(1, {}), comp) + f.encode_frame(f.SynStreamFrame(3, {}), comp))
    ss, ss_other = await pair.accepted.get(), await pair.accepted.get()
    for _ in range(20):  # 640 KiB for stream 1, more than its buffer; nobody reads it yet
        raw(f.encode_frame(f.DataFrame(1, b"a" * 32768)))
    raw(f.encode_frame(f.DataFrame(3, b"b")))
    for _ in range(50):
        await asyncio.sleep(0)
    assert not pair.server.peer_flow_control
    assert len(ss_other.reader._buffer) == 0  # stuck behind stream 1
    assert await ss.reader.readexactly(20 * 32768) == b"a" * 20 * 32768  # draining unblocks the session
    assert await asyncio.wait_for(ss_other.read(), 5) == b"b"
