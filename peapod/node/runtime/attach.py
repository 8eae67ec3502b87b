"""Attaching to a container's main process through conmon's attach socket (CRI-O's model).

conmon listens on ``<bundle>/attach``, a SOCK_SEQPACKET unix socket reachable through the symlink
``<socket-dir>/<container id>`` (sun_path is short, so it is opened via ``/proc/self/fd``). Each
packet it sends is one read of the container's output prefixed by one byte naming the stream
(2 stdout, 3 stderr; with a terminal all output is stdout); what a client writes goes raw to the
container's stdin (the pty with a terminal). When a client stops writing (EOF or hangup) conmon
closes the container's stdin unless it runs with ``--leave-stdin-open``, which is how
``stdinOnce`` works. Terminal resizes go to the ``<bundle>/ctl`` FIFO as ``"1 HEIGHT WIDTH\\n"``.
The socket reaches EOF when conmon exits, i.e. when the container has exited and its output
was drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Protocol

STDIN_ONCE_ANNOTATION = "io.peapod.stdinOnce"
STREAM_STDOUT, STREAM_STDERR = 2, 3  # conmon's stdpipe_t: NO_PIPE, STDIN, STDOUT, STDERR
CONMON_STDIO_BUF = 8192  # conmon reads container output in chunks of this size
STDIN_CHUNK = 8192  # conmon reads one packet of stdin into a 32 KiB buffer: stay well below it
RESIZE_EVENT = 1


class AttachConnection:
    """One client connection to a container's conmon attach socket."""

    def __init__(self, sock: socket.socket, ctl_path: Path | None) -> None:
        self._sock = sock
        self._ctl_path = ctl_path
        self._closed = False
        self._stdin_closed = False

    @classmethod
    async def open(cls, socket_dir: str | os.PathLike[str]) -> AttachConnection:
        """Connect to ``socket_dir/attach``; ``ctl`` beside it takes resizes. Raises OSError."""
        path = Path(socket_dir)
        dir_fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, f"/proc/self/fd/{dir_fd}/attach")
        except BaseException:
            sock.close()
            raise
        finally:
            os.close(dir_fd)
        ctl = path / "ctl"
        return cls(sock, ctl if ctl.exists() else None)

    async def read(self) -> tuple[int, bytes] | None:
        """The next (stream, data) the container wrote; None once conmon closed the socket."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                packet = await loop.sock_recv(self._sock, CONMON_STDIO_BUF + 64)
            except (ConnectionError, OSError):
                return None
            if not packet:
                return None
            if len(packet) > 1:
                return packet[0], packet[1:]

    async def write(self, data: bytes) -> None:
        """Send bytes to the container's stdin (one packet per chunk)."""
        if self._stdin_closed:
            raise BrokenPipeError("stdin of the attach connection is closed")
        loop = asyncio.get_running_loop()
        for i in range(0, len(data), STDIN_CHUNK):
            await loop.sock_sendall(self._sock, data[i:i + STDIN_CHUNK])

    def close_stdin(self) -> None:
        """Stop writing; conmon then closes the container's stdin if it was started stdinOnce."""
        if self._stdin_closed or self._closed:
            return
        self._stdin_closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)

    def resize(self, width: int, height: int) -> None:
        """Set the terminal size (conmon ignores it for containers without a terminal)."""
        if self._ctl_path is None or width <= 0 or height <= 0:
            return
        try:
            fd = os.open(self._ctl_path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            if e.errno in (errno.ENXIO, errno.ENOENT):  # conmon is gone
                return
            raise
        try:
            os.write(fd, f"{RESIZE_EVENT} {min(height, 1000)} {min(width, 1000)}\n".encode())
        except BlockingIOError:
            pass
        finally:
            os.close(fd)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sock.close()


class AttachSession(Protocol):
    """What `stream_attach` needs of a client session (peapod.node.streaming.StreamSession)."""

    stdin: asyncio.StreamReader | None

    async def write_stdout(self, data: bytes) -> None: ...

    async def write_stderr(self, data: bytes) -> None: ...

    @property
    def resize_events(self) -> AsyncIterator[tuple[int, int]]: ...


async def stream_attach(conn: AttachConnection, session: AttachSession, *, forward_stdin: bool) -> int:
    """Pump ``conn`` <-> ``session`` until the container exits (0) or the caller cancels.

    The client's stdin goes to the container only when ``forward_stdin`` (the container was created
    with stdin); at its EOF the connection stops writing, as docker/CRI-O do, and output keeps
    flowing. Cancelling (the client went away) closes the connection, which closes a stdinOnce
    container's stdin in conmon.
    """

    async def feed() -> None:
        stdin = session.stdin
        if stdin is None:
            return
        try:
            while chunk := await stdin.read(STDIN_CHUNK):
                if forward_stdin:
                    await conn.write(chunk)
        except (ConnectionError, OSError):
            return
        if forward_stdin:
            conn.close_stdin()

    async def resizes() -> None:
        async for width, height in session.resize_events:
            with contextlib.suppress(OSError):
                conn.resize(width, height)

    side = [asyncio.create_task(feed()), asyncio.create_task(resizes())]
    try:
        while (msg := await conn.read()) is not None:
            stream, data = msg
            write: Callable[[bytes], Awaitable[None]] = (
                session.write_stderr if stream == STREAM_STDERR else session.write_stdout)
            await write(data)
        return 0
    finally:
        for t in side:
            t.cancel()
        await asyncio.gather(*side, return_exceptions=True)
        conn.close()
