"""exec/attach: the server side of kubelet's remote command protocols, over WebSocket or SPDY/3.1.

The protocol layer hands a backend a `StreamSession` (stdin reader, stdout/stderr writers, terminal
resize events) and turns what `run` returns into the final status on the error channel/stream:

- exit code 0: `{"metadata":{},"status":"Success"}`
- exit code N: Failure, reason NonZeroExitCode, cause ExitCode "N" (kubectl exits with N)
- `StreamError(message)` or any other exception: Failure, reason InternalError, code 500

WebSocket subprotocols: v5/v4 (JSON status; v5 lets the client close stdin with [255, 0]), the
pre-v4 `channel.k8s.io` (plain-text error only on failure) and their base64 variants. SPDY protocols
(X-Stream-Protocol-Version): v5 and v4 (JSON status), v3 (adds the resize stream), v2 and v1
(plain-text errors).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from peapod.node.streaming.channels import upgrade_response
from peapod.node.streaming.spdy_session import PauseFlag, SpdySession, SpdyStream
from peapod.node.streaming.wschannel import (
    CLOSE_CHANNEL,
    ChannelWebSocket,
    is_websocket_request,
    negotiate,
    offered_protocols,
)

log = logging.getLogger(__name__)

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4

WS_PROTOCOLS = ["v5.channel.k8s.io", "v5.base64.channel.k8s.io", "v4.channel.k8s.io",
                "v4.base64.channel.k8s.io", "channel.k8s.io", "base64.channel.k8s.io"]
SPDY_PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io",
                  "channel.k8s.io"]
STREAM_CREATION_TIMEOUT = 30.0
LINGER_TIMEOUT = 10.0
_STDIN_BUFFER = 64 * 1024


class StreamError(Exception):
    """Raised by a backend to end the session with an error status carrying ``message``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# ---------------------------------------------------------------- options and statuses

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def parse_bool(value: str | None, *, default: bool = False) -> bool:
    """Go's strconv.ParseBool, which is how the API decodes boolean query parameters."""
    if value is None or value == "":
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"invalid boolean value {value!r}")


@dataclass(frozen=True)
class ExecOptions:
    command: list[str]
    container: str | None
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


def parse_exec_options(query: Mapping[str, str], *, require_command: bool = True) -> ExecOptions:
    """Decode an exec/attach query (``command`` repeated). Raises ValueError with kubelet's wording.

    Like kubelet, stderr is dropped when tty is on (a terminal merges the two).
    """
    getall = getattr(query, "getall", None)
    command = list(getall("command", [])) if getall else ([query["command"]] if "command" in query else [])
    stdin = parse_bool(query.get("stdin"))
    stdout = parse_bool(query.get("stdout"))
    stderr = parse_bool(query.get("stderr"))
    tty = parse_bool(query.get("tty"))
    if tty and stderr:
        stderr = False
    if not (stdin or stdout or stderr):
        raise ValueError("you must specify at least 1 of stdin, stdout, stderr")
    if require_command and not command:
        raise ValueError("you must specify at least one command for the container")
    return ExecOptions(command, query.get("container") or None, stdin, stdout, stderr, tty)


SUCCESS_STATUS: dict[str, Any] = {"metadata": {}, "status": "Success"}


def _exit_code(code: int) -> int:
    if code < 0:  # killed by a signal, as asyncio reports it
        return min(128 - code, 255)
    return min(code, 255)


def exit_status(code: int, command: list[str] | None) -> dict[str, Any]:
    """The status kubelet sends for a command that exited (exec.CodeExitError wording)."""
    code = _exit_code(code)
    if code == 0:
        return dict(SUCCESS_STATUS)
    cmd = "[" + " ".join(command or []) + "]"
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command {cmd}, "
                       f"exit code {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def error_status(message: str) -> dict[str, Any]:
    """apierrors.NewInternalError(fmt.Errorf("error executing command in container: %v", err))."""
    inner = f"error executing command in container: {message}"
    return {"metadata": {}, "status": "Failure", "message": f"Internal error occurred: {inner}",
            "reason": "InternalError", "details": {"causes": [{"message": inner}]}, "code": 500}


def encode_status(status: dict[str, Any], *, json_status: bool) -> bytes | None:
    """v4+ protocols carry the Status as JSON; older ones only the message of a failure."""
    if json_status:
        return json.dumps(status, separators=(",", ":")).encode()
    if status.get("status") == "Success":
        return None
    return str(status.get("message", "")).encode()


class ResizeDecoder:
    """Terminal sizes as client-go writes them: concatenated JSON objects {"Width":..,"Height":..}."""

    def __init__(self) -> None:
        self._buf = ""
        self._dec = json.JSONDecoder()

    def feed(self, data: bytes) -> list[tuple[int, int]]:
        self._buf += data.decode("utf-8", "replace")
        out: list[tuple[int, int]] = []
        while True:
            text = self._buf.lstrip()
            if not text:
                self._buf = ""
                return out
            try:
                obj, end = self._dec.raw_decode(text)
            except json.JSONDecodeError:
                self._buf = text
                if len(text) > 4096:  # garbage that never parses
                    self._buf = ""
                return out
            self._buf = text[end:]
            if isinstance(obj, dict):
                try:
                    out.append((int(obj.get("Width", 0)), int(obj.get("Height", 0))))
                except (TypeError, ValueError):
                    pass


# ---------------------------------------------------------------- the session handed to backends

class _Writer(Protocol):
    async def __call__(self, data: bytes) -> None: ...


class StreamSession:
    """What a backend sees of one exec/attach connection.

    - ``stdin``: a StreamReader (EOF when the client closes stdin or goes away), None if not requested.
    - ``write_stdout``/``write_stderr``: await them; data for a stream the client did not ask for is
      dropped, except stderr in tty mode, which goes to stdout. Writes after the client left are dropped.
    - ``resize_events``: async iterator of (width, height), ending with the connection.
    - ``closed``: set when the client connection is gone (the backend's `run` is also cancelled then).
    """

    def __init__(self, *, tty: bool, stdin: asyncio.StreamReader | None, stdout: _Writer | None,
                 stderr: _Writer | None) -> None:
        self.tty = tty
        self.stdin = stdin
        self._stdout = stdout
        self._stderr = stderr
        self._resizes: asyncio.Queue[tuple[int, int] | None] = asyncio.Queue()
        self.closed = asyncio.Event()

    @property
    def stdout_requested(self) -> bool:
        return self._stdout is not None

    @property
    def stderr_requested(self) -> bool:
        return self._stderr is not None

    async def write_stdout(self, data: bytes) -> None:
        await self._write(self._stdout, data)

    async def write_stderr(self, data: bytes) -> None:
        target = self._stderr if self._stderr is not None else (self._stdout if self.tty else None)
        await self._write(target, data)

    async def _write(self, writer: _Writer | None, data: bytes) -> None:
        if writer is None or not data or self.closed.is_set():
            return
        try:
            await writer(data)
        except (ConnectionError, OSError, RuntimeError):
            pass

    def push_resize(self, size: tuple[int, int] | None) -> None:
        self._resizes.put_nowait(size)

    @property
    def resize_events(self) -> AsyncIterator[tuple[int, int]]:
        return self._iter_resizes()

    async def _iter_resizes(self) -> AsyncIterator[tuple[int, int]]:
        while True:
            item = await self._resizes.get()
            if item is None:
                self._resizes.put_nowait(None)
                return
            yield item

    def _finish(self) -> None:
        self.closed.set()
        self.push_resize(None)
        if self.stdin is not None and not self.stdin.at_eof():
            self.stdin.feed_eof()


class ExecBackend(Protocol):
    async def run(self, session: StreamSession) -> int:
        """Run the command/attach with ``session``'s streams; return its exit code."""
        ...


def paused_reader(limit: int = _STDIN_BUFFER) -> tuple[asyncio.StreamReader, PauseFlag]:
    """A StreamReader whose PauseFlag clears while its buffer is over 2*limit (backpressure)."""
    reader = asyncio.StreamReader(limit=limit)
    flag = PauseFlag()
    reader.set_transport(flag)  # type: ignore[arg-type]
    return reader, flag


async def _run_backend(backend: ExecBackend, session: StreamSession, gone: asyncio.Event,
                       command: list[str] | None) -> dict[str, Any] | None:
    """Run the backend; the status to send, or None if the client went away first."""
    task = asyncio.create_task(backend.run(session))
    waiter = asyncio.create_task(gone.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():  # the client left, or aiohttp cancelled this handler on disconnect
            session._finish()
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
    if task.cancelled():
        return None
    try:
        return exit_status(int(task.result()), command)
    except StreamError as e:
        return error_status(e.message)
    except asyncio.CancelledError:
        raise
    except Exception as e:
        log.exception("exec backend failed")
        return error_status(str(e) or type(e).__name__)


# ---------------------------------------------------------------- entry point

async def handle_exec(request: web.Request, backend: ExecBackend, *, tty: bool, stdin: bool, stdout: bool,
                      stderr: bool, command: list[str] | None = None,
                      stream_timeout: float = STREAM_CREATION_TIMEOUT) -> web.StreamResponse:
    """Serve an exec or attach request: WebSocket when asked for, else SPDY/3.1 upgrade.

    ``command`` only shapes the non-zero exit message; by default it is read from the query.
    Pass the flags from `parse_exec_options` (stderr is ignored with tty, as kubelet does).
    """
    if tty:
        stderr = False
    if command is None:
        command = list(request.query.getall("command", []))
    if is_websocket_request(request):
        return await _serve_websocket(request, backend, tty=tty, stdin=stdin, stdout=stdout, stderr=stderr,
                                      command=command)
    return await _serve_spdy(request, backend, tty=tty, stdin=stdin, stdout=stdout, stderr=stderr,
                             command=command, stream_timeout=stream_timeout)


async def _serve_websocket(request: web.Request, backend: ExecBackend, *, tty: bool, stdin: bool,
                           stdout: bool, stderr: bool, command: list[str]) -> web.StreamResponse:
    offered = offered_protocols(request)
    proto = negotiate(offered, WS_PROTOCOLS)
    if proto is None:
        return web.Response(status=400, text=f"requested protocol(s) are not supported: {offered}; "
                                             f"supports {WS_PROTOCOLS}")
    ws = web.WebSocketResponse(protocols=[proto] if proto else (), compress=False, timeout=2.0,
                               max_msg_size=16 * 1024 * 1024)
    await ws.prepare(request)
    conn = ChannelWebSocket(ws, base64_mode="base64" in proto)
    v5 = proto.startswith("v5.")
    json_status = proto.startswith(("v4.", "v5."))

    stdin_reader, stdin_flag = paused_reader() if stdin else (None, None)

    def writer(channel: int) -> _Writer:
        async def write(data: bytes) -> None:
            await conn.send(channel, data)
        return write

    session = StreamSession(tty=tty, stdin=stdin_reader, stdout=writer(STDOUT) if stdout else None,
                            stderr=writer(STDERR) if stderr else None)
    gone = asyncio.Event()
    with contextlib.suppress(ConnectionError, RuntimeError):
        # kubelet announces the connection with an empty message on the lowest writable channel.
        await conn.send(STDOUT if stdout else STDERR if stderr else ERROR, b"")

    async def receive() -> None:
        try:
            while (m := await conn.receive()) is not None:
                if m.channel == CLOSE_CHANNEL and v5:
                    if m.data[:1] == bytes([STDIN]) and stdin_reader is not None:
                        stdin_reader.feed_eof()
                elif m.channel == STDIN and stdin_reader is not None and stdin_flag is not None:
                    if m.data and not stdin_reader.at_eof():
                        stdin_reader.feed_data(m.data)
                        await stdin_flag.resumed.wait()
                elif m.channel == RESIZE:
                    for size in ResizeDecoder().feed(m.data):
                        session.push_resize(size)
        finally:
            gone.set()
            session._finish()

    receiver = asyncio.create_task(receive())
    try:
        status = await _run_backend(backend, session, gone, command)
        if status is not None and not ws.closed:
            payload = encode_status(status, json_status=json_status)
            with contextlib.suppress(ConnectionError, RuntimeError):
                if payload is not None:
                    await conn.send(ERROR, payload)
        session._finish()
        await conn.close()
    finally:
        receiver.cancel()
        with contextlib.suppress(BaseException):
            await receiver
    return ws


def _offered_stream_protocols(request: web.BaseRequest) -> list[str]:
    out: list[str] = []
    for value in request.headers.getall("X-Stream-Protocol-Version", []):
        out += [p.strip() for p in value.split(",") if p.strip()]
    return out


def is_spdy_request(request: web.BaseRequest) -> bool:
    return ("upgrade" in request.headers.get("Connection", "").lower()
            and "spdy/3.1" in request.headers.get("Upgrade", "").lower())


async def spdy_handshake(request: web.Request, supported: list[str],
                         *, default: str | None = "") -> tuple[str, web.StreamResponse | None]:
    """Negotiate X-Stream-Protocol-Version (httpstream.Handshake); (protocol, refusal or None)."""
    if not is_spdy_request(request):
        return "", web.Response(status=400, text="unable to upgrade: missing upgrade headers in request")
    offered = _offered_stream_protocols(request)
    if not offered:
        if default is None:
            return "", web.Response(status=400,
                                    text="unable to upgrade: X-Stream-Protocol-Version is required")
        return default, None
    for p in offered:
        if p in supported:
            return p, None
    resp = web.Response(status=403, text=f"unable to upgrade: unable to negotiate protocol: client supports "
                                         f"{offered}, server accepts {supported}")
    for p in supported:
        resp.headers.add("X-Accepted-Stream-Protocol-Versions", p)
    return "", resp


async def spdy_accept(
    request: web.Request, protocol: str, *, on_stream: Callable[[SpdyStream], bool] | None = None,
) -> tuple[web.StreamResponse, SpdySession, list[SpdyStream], asyncio.Event]:
    """Answer 101 and start a server session. Streams go to ``on_stream`` if given, else they are
    accepted and collected in the returned list (the event is set on each arrival)."""
    headers = {"Connection": "Upgrade", "Upgrade": "SPDY/3.1"}
    if protocol:
        headers["X-Stream-Protocol-Version"] = protocol
    resp, channel = await upgrade_response(request, headers)
    streams: list[SpdyStream] = []
    arrived = asyncio.Event()

    def collect(s: SpdyStream) -> bool:
        streams.append(s)
        arrived.set()
        return True

    session = SpdySession(channel, server=True, on_stream=on_stream or collect)
    session.start()
    return resp, session, streams, arrived


async def _serve_spdy(request: web.Request, backend: ExecBackend, *, tty: bool, stdin: bool, stdout: bool,
                      stderr: bool, command: list[str], stream_timeout: float) -> web.StreamResponse:
    proto, refusal = await spdy_handshake(request, SPDY_PROTOCOLS)
    if refusal is not None:
        return refusal
    resp, spdy, streams, arrived = await spdy_accept(request, proto)
    resize_supported = proto in ("v3.channel.k8s.io", "v4.channel.k8s.io", "v5.channel.k8s.io")
    json_status = proto in ("v4.channel.k8s.io", "v5.channel.k8s.io")
    expected = 1 + stdin + stdout + stderr + (1 if tty and resize_supported else 0)
    by_type: dict[str, SpdyStream] = {}

    async def collect() -> None:
        while True:
            for s in streams:
                kind = (s.header("streamtype") or "").lower()
                if kind in ("error", "stdin", "stdout", "stderr", "resize"):
                    by_type.setdefault(kind, s)
                else:
                    s.reset()
            streams.clear()
            if len(by_type) >= expected:
                return
            arrived.clear()
            await arrived.wait()

    try:
        waiters = {asyncio.create_task(collect()), asyncio.create_task(spdy.wait_closed())}
        await asyncio.wait(waiters, timeout=stream_timeout, return_when=asyncio.FIRST_COMPLETED)
        for t in waiters:
            t.cancel()
        if spdy.closed or len(by_type) < expected:
            log.info("exec: client created %d of %d streams", len(by_type), expected)
            await spdy.close()
            return resp

        def writer(s: SpdyStream | None) -> _Writer | None:
            return s.write if s is not None else None

        session = StreamSession(tty=tty, stdin=by_type["stdin"].reader if "stdin" in by_type else None,
                                stdout=writer(by_type.get("stdout")), stderr=writer(by_type.get("stderr")))
        gone = asyncio.Event()

        async def watch_close() -> None:
            await spdy.wait_closed()
            gone.set()
            session._finish()

        async def read_resizes(s: SpdyStream) -> None:
            decoder = ResizeDecoder()
            while data := await s.read():
                for size in decoder.feed(data):
                    session.push_resize(size)

        helpers = [asyncio.create_task(watch_close())]
        if "resize" in by_type:
            helpers.append(asyncio.create_task(read_resizes(by_type["resize"])))
        try:
            status = await _run_backend(backend, session, gone, command)
            if status is not None:
                for kind in ("stdout", "stderr"):
                    if kind in by_type:
                        with contextlib.suppress(ConnectionError):
                            await by_type[kind].close()
                payload = encode_status(status, json_status=json_status)
                err = by_type["error"]
                with contextlib.suppress(ConnectionError):
                    if payload:
                        await err.write(payload)
                    await err.close()
                for kind in ("stdin", "resize"):
                    if kind in by_type:
                        with contextlib.suppress(ConnectionError):
                            await by_type[kind].close()
                await spdy.flush()
                # The client closes the connection once it has read the status; closing first could
                # lose the status in spdystream's queues. Wait for it, within reason.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(spdy.wait_closed(), LINGER_TIMEOUT)
            session._finish()
        finally:
            for t in helpers:
                t.cancel()
    finally:
        await spdy.close()
    return resp
