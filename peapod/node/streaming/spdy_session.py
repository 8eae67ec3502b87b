"""A SPDY/3.1 session over a byte channel: streams, replies, pings, GOAWAY and flow control.

Usable as server (peer-initiated odd stream ids, replied to at once like kubelet does) or client
(`open_stream`). One writer task sends queued frames in order, so the read loop never blocks on a slow
peer and header blocks are compressed in the order they are written.

Flow control: SPDY/3.1 has per-stream and per-session windows (64 KiB initially), but client-go's
spdystream neither sends WINDOW_UPDATE nor honours ours. Windows are therefore tracked always and
enforced on sending only once the peer has shown it does flow control (sent a WINDOW_UPDATE or a
SETTINGS initial window size). WINDOW_UPDATE frames are always sent for data handed to the reader's
buffer (spdystream ignores them). Against peers without flow control, a stream whose buffer is full
stops the read loop until its reader catches up, which is what spdystream itself does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from peapod.node.streaming import spdy_frames as f
from peapod.node.streaming.channels import ByteChannel

log = logging.getLogger(__name__)

MAX_DATA_FRAME = 32 * 1024
READ_BUFFER = 256 * 1024
WRITE_QUEUE_HIGH = 256 * 1024


class StreamResetError(ConnectionResetError):
    """The stream was reset (RST_STREAM) or the session ended before the write went out."""


class PauseFlag:
    """Plays asyncio.StreamReader's transport: the reader pauses us when its buffer grows past
    2*limit and resumes us when drained."""

    def __init__(self) -> None:
        self.resumed = asyncio.Event()
        self.resumed.set()
        self.on_resume: Callable[[], None] | None = None

    def pause_reading(self) -> None:
        self.resumed.clear()

    def resume_reading(self) -> None:
        self.resumed.set()
        if self.on_resume is not None:
            self.on_resume()

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class SpdyStream:
    """One SPDY stream. Read received bytes from `reader` (EOF on the peer's FIN or a reset)."""

    def __init__(self, session: SpdySession, stream_id: int, headers: f.Headers, *,
                 send_window: int, recv_window: int) -> None:
        self.session = session
        self.id = stream_id
        self.headers = headers
        self.reader = asyncio.StreamReader(limit=READ_BUFFER // 2)
        self._flag = PauseFlag()
        self._flag.on_resume = self._flush_window_update
        self.reader.set_transport(self._flag)  # type: ignore[arg-type]
        self.send_window = send_window
        self.recv_window = recv_window
        self._pending_update = 0
        self.remote_closed = False
        self.local_closed = False
        self.reset_status: int | None = None
        self.replied: asyncio.Future[f.Headers] = asyncio.get_running_loop().create_future()
        self._window_open = asyncio.Event()
        self._window_open.set()

    def header(self, name: str) -> str | None:
        return f.header(self.headers, name)

    @property
    def is_reset(self) -> bool:
        return self.reset_status is not None

    async def read(self, n: int = 65536) -> bytes:
        return await self.reader.read(n)

    async def write(self, data: bytes) -> None:
        """Send data frames, honouring flow control windows when the peer uses them."""
        view = memoryview(data)
        while view:
            if self.local_closed or self.is_reset or self.session.closed:
                raise StreamResetError(f"stream {self.id} is closed")
            size = min(len(view), MAX_DATA_FRAME)
            if self.session.peer_flow_control:
                size = min(size, self.send_window, self.session.send_window)
                if size <= 0:
                    await self.session._wait_window(self)
                    continue
            chunk = bytes(view[:size])
            view = view[size:]
            self.send_window -= size
            self.session.send_window -= size
            await self.session._send_data(f.DataFrame(self.id, chunk))

    async def close(self) -> None:
        """Half-close: send FIN. Idempotent."""
        if self.local_closed or self.is_reset or self.session.closed:
            self.local_closed = True
            return
        self.local_closed = True
        await self.session._send_data(f.DataFrame(self.id, b"", f.FLAG_FIN))
        self.session._maybe_forget(self)

    def reset(self, status: int = f.CANCEL) -> None:
        if self.is_reset:
            return
        self.reset_status = status
        self.local_closed = True
        self._remote_done()
        self.session._queue_control(f.RstStreamFrame(self.id, status))
        self.session._forget(self)

    # -- called by the session --
    def _deliver(self, data: bytes) -> None:
        if self.remote_closed:
            return
        self.recv_window -= len(data)
        self.reader.feed_data(data)
        self._pending_update += len(data)
        if self._flag.resumed.is_set():
            self._flush_window_update()

    def _flush_window_update(self) -> None:
        if self._pending_update >= f.DEFAULT_WINDOW // 4 and not self.remote_closed:
            delta, self._pending_update = self._pending_update, 0
            self.recv_window += delta
            self.session._queue_control(f.WindowUpdateFrame(self.id, delta))

    def _remote_done(self) -> None:
        if not self.remote_closed:
            self.remote_closed = True
            self.reader.feed_eof()
            self._flag.resume_reading()
        self._window_open.set()


class SpdySession:
    """A SPDY/3 connection. Call `start()`, then use streams; `wait_closed()` ends with the channel."""

    def __init__(self, channel: ByteChannel, *, server: bool,
                 on_stream: Callable[[SpdyStream], bool] | None = None,
                 initial_window: int = f.DEFAULT_WINDOW) -> None:
        self.channel = channel
        self.server = server
        self._on_stream = on_stream
        self._parser = f.FrameParser()
        self._compressor: f.HeaderCompressor | None = None
        self.streams: dict[int, SpdyStream] = {}
        self._next_id = 2 if server else 1
        self._next_ping = 2 if server else 1
        self._last_peer_id = 0
        self._pings: dict[int, asyncio.Future[None]] = {}
        self.peer_flow_control = False
        self.peer_initial_window = f.DEFAULT_WINDOW
        self.send_window = f.DEFAULT_WINDOW
        self.initial_window = initial_window
        self._session_pending_update = 0
        self.goaway_received = False
        self.goaway_sent = False
        self.closed = False
        self._closed_event = asyncio.Event()
        self._out: deque[bytes] = deque()
        self._out_bytes = 0
        self._out_event = asyncio.Event()
        self._out_space = asyncio.Event()
        self._out_space.set()
        self._out_idle = asyncio.Event()
        self._out_idle.set()
        self._window_event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle --
    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._read_loop(), name="spdy-read"),
                       asyncio.create_task(self._write_loop(), name="spdy-write")]

    async def wait_closed(self) -> None:
        await self._closed_event.wait()

    async def flush(self) -> None:
        """Wait until everything queued so far has been handed to the channel."""
        while not self.closed and (self._out or not self._out_idle.is_set()):
            self._out_event.set()
            waiter = asyncio.create_task(self._out_idle.wait())
            closer = asyncio.create_task(self._closed_event.wait())
            try:
                await asyncio.wait({waiter, closer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                closer.cancel()

    def goaway(self, status: int = f.GOAWAY_OK) -> None:
        if not self.goaway_sent and not self.closed:
            self.goaway_sent = True
            self._queue_control(f.GoAwayFrame(self._last_peer_id, status))

    async def close(self, *, goaway: bool = True) -> None:
        """Send GOAWAY (optional), flush, and close the channel."""
        if self.closed:
            return
        if goaway:
            self.goaway()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), 5)
        await self._shutdown()

    async def _shutdown(self) -> None:
        if not self.closed:
            self.closed = True
            for s in list(self.streams.values()):
                s._remote_done()
            self.streams.clear()
            for fut in self._pings.values():
                if not fut.done():
                    fut.set_exception(ConnectionResetError("session closed"))
            self._out_space.set()
            self._window_event.set()
            self._out_event.set()
            self._closed_event.set()
            with contextlib.suppress(Exception):
                await self.channel.close()
        current = asyncio.current_task()
        for t in self._tasks:
            if t is not current:
                t.cancel()

    # -- client side --
    async def open_stream(self, headers: f.Headers | dict[str, str], *, fin: bool = False,
                          timeout: float | None = 30) -> SpdyStream:
        """Send SYN_STREAM and wait for the SYN_REPLY (raises StreamResetError on RST_STREAM)."""
        if self.closed or self.goaway_received:
            raise StreamResetError("session is closed")
        sid = self._next_id
        self._next_id += 2
        hdrs = f.make_headers(headers)
        stream = SpdyStream(self, sid, hdrs, send_window=self.peer_initial_window,
                            recv_window=self.initial_window)
        self.streams[sid] = stream
        if fin:
            stream.local_closed = True
        self._queue_control(f.SynStreamFrame(sid, hdrs, f.FLAG_FIN if fin else 0))
        await asyncio.wait_for(asyncio.shield(stream.replied), timeout)
        return stream

    async def ping(self, timeout: float = 10) -> None:
        pid = self._next_ping
        self._next_ping += 2
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pings[pid] = fut
        self._queue_control(f.PingFrame(pid))
        try:
            await asyncio.wait_for(fut, timeout)
        finally:
            self._pings.pop(pid, None)

    def send_settings(self, entries: list[tuple[int, int, int]]) -> None:
        self._queue_control(f.SettingsFrame(entries))

    # -- output --
    def _enqueue(self, data: bytes) -> None:
        if self.closed:
            return
        self._out.append(data)
        self._out_bytes += len(data)
        self._out_idle.clear()
        self._out_event.set()
        if self._out_bytes > WRITE_QUEUE_HIGH:
            self._out_space.clear()

    def _queue_control(self, frame: f.Frame) -> None:
        if self.closed:
            return
        if self._compressor is None:
            # Compress with the dictionary variant the peer uses, once we know it.
            self._compressor = f.HeaderCompressor(self._parser.decompressor.dictionary or f.HEADER_DICTIONARY)
        self._enqueue(f.encode_frame(frame, self._compressor))

    async def _send_data(self, frame: f.DataFrame) -> None:
        while not self._out_space.is_set() and not self.closed:
            await self._out_space.wait()
        if self.closed:
            raise StreamResetError("session closed")
        self._enqueue(f.encode_frame(frame))

    async def _write_loop(self) -> None:
        try:
            while True:
                if not self._out:
                    self._out_idle.set()
                    self._out_event.clear()
                    await self._out_event.wait()
                    if self.closed:
                        return
                    continue
                batch = []
                size = 0
                while self._out and size < 256 * 1024:
                    item = self._out.popleft()
                    batch.append(item)
                    size += len(item)
                await self.channel.write(b"".join(batch))
                self._out_bytes -= size
                if self._out_bytes <= WRITE_QUEUE_HIGH // 2:
                    self._out_space.set()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # connection broke
            log.debug("spdy write failed: %s", e)
            await self._shutdown()

    async def _wait_window(self, stream: SpdyStream) -> None:
        self._window_event.clear()
        if stream.send_window > 0 and self.send_window > 0:
            return
        await self._window_event.wait()

    # -- input --
    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self.channel.read()
                if not data:
                    break
                for frame in self._parser.feed(data):
                    await self._handle(frame)
        except asyncio.CancelledError:
            raise
        except f.SpdyProtocolError as e:
            log.info("spdy protocol error: %s", e)
            self.goaway(f.GOAWAY_PROTOCOL_ERROR)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.flush(), 2)
        except Exception:
            log.exception("spdy session failed")
        await self._shutdown()

    def _forget(self, stream: SpdyStream) -> None:
        self.streams.pop(stream.id, None)

    def _maybe_forget(self, stream: SpdyStream) -> None:
        if stream.local_closed and stream.remote_closed:
            self._forget(stream)

    async def _handle(self, frame: f.Frame) -> None:
        if isinstance(frame, f.DataFrame):
            await self._on_data(frame)
        elif isinstance(frame, f.SynStreamFrame):
            self._on_syn_stream(frame)
        elif isinstance(frame, f.SynReplyFrame):
            s = self.streams.get(frame.stream_id)
            if s is not None and not s.replied.done():
                s.replied.set_result(frame.headers)
                if frame.flags & f.FLAG_FIN:
                    s._remote_done()
                    self._maybe_forget(s)
        elif isinstance(frame, f.RstStreamFrame):
            s = self.streams.pop(frame.stream_id, None)
            if s is not None:
                s.reset_status = frame.status
                s.local_closed = True
                s._remote_done()
                if not s.replied.done():
                    s.replied.set_exception(
                        StreamResetError(f"stream {s.id} reset with status {frame.status}"))
                self._window_event.set()
        elif isinstance(frame, f.SettingsFrame):
            for _flags, sid, value in frame.entries:
                if sid == f.SETTINGS_INITIAL_WINDOW_SIZE:
                    delta = value - self.peer_initial_window
                    self.peer_initial_window = value
                    self.peer_flow_control = True
                    for s in self.streams.values():
                        s.send_window += delta
                    self._window_event.set()
        elif isinstance(frame, f.PingFrame):
            if frame.ping_id % 2 != self._next_ping % 2:
                self._queue_control(frame)  # the peer's ping: echo it
            else:
                fut = self._pings.get(frame.ping_id)
                if fut is not None and not fut.done():
                    fut.set_result(None)
        elif isinstance(frame, f.GoAwayFrame):
            self.goaway_received = True
        elif isinstance(frame, f.HeadersFrame):
            s = self.streams.get(frame.stream_id)
            if s is not None:
                for k, v in frame.headers.items():
                    s.headers.setdefault(k, []).extend(v)
                if frame.flags & f.FLAG_FIN:
                    s._remote_done()
                    self._maybe_forget(s)
        elif isinstance(frame, f.WindowUpdateFrame):
            self.peer_flow_control = True
            if frame.stream_id == 0:
                self.send_window += frame.delta
            else:
                s = self.streams.get(frame.stream_id)
                if s is not None:
                    s.send_window += frame.delta
            self._window_event.set()

    def _on_syn_stream(self, frame: f.SynStreamFrame) -> None:
        sid = frame.stream_id
        peer_parity = 1 if self.server else 0
        if sid % 2 != peer_parity or sid <= self._last_peer_id:
            self._queue_control(f.RstStreamFrame(sid, f.PROTOCOL_ERROR))
            return
        self._last_peer_id = sid
        if self.goaway_sent or self._on_stream is None:
            self._queue_control(f.RstStreamFrame(sid, f.REFUSED_STREAM))
            return
        stream = SpdyStream(self, sid, frame.headers, send_window=self.peer_initial_window,
                            recv_window=self.initial_window)
        stream.replied.set_result({})
        if frame.flags & f.FLAG_UNIDIRECTIONAL:
            stream.local_closed = True
        self.streams[sid] = stream
        try:
            accepted = self._on_stream(stream)
        except Exception:
            log.exception("stream handler failed")
            accepted = False
        if not accepted:
            self.streams.pop(sid, None)
            stream.reset_status = f.REFUSED_STREAM
            stream._remote_done()
            self._queue_control(f.RstStreamFrame(sid, f.REFUSED_STREAM))
            return
        self._queue_control(f.SynReplyFrame(sid, {}))
        if frame.flags & f.FLAG_FIN:
            stream._remote_done()
            self._maybe_forget(stream)

    async def _on_data(self, frame: f.DataFrame) -> None:
        n = len(frame.data)
        if n:
            self._session_pending_update += n
            if self._session_pending_update >= f.DEFAULT_WINDOW // 4:
                self._queue_control(f.WindowUpdateFrame(0, self._session_pending_update))
                self._session_pending_update = 0
        s = self.streams.get(frame.stream_id)
        if s is None or s.remote_closed:
            return  # data for a stream we closed or reset: ignore, as the draft says
        if n:
            s._deliver(frame.data)
        if frame.fin:
            s._remote_done()
            self._maybe_forget(s)
        elif not self.peer_flow_control and not s._flag.resumed.is_set():
            # The peer ignores windows: stop reading until this stream's reader catches up.
            closer = asyncio.ensure_future(self._closed_event.wait())
            resumed = asyncio.ensure_future(s._flag.resumed.wait())
            try:
                await asyncio.wait({closer, resumed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closer.cancel()
                resumed.cancel()
