"""Attach to containers for real: conmon's attach socket and ctl FIFO under runc."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from peapod.node.runtime.attach import (
    STDIN_ONCE_ANNOTATION,
    STREAM_STDERR,
    STREAM_STDOUT,
    AttachConnection,
    stream_attach,
)
from peapod.node.runtime.runc_runtime import RuncRuntime
from peapod.node.runtime.types import ContainerNotFound, ContainerRuntimeError, ContainerStatus

from .conftest import Harness


async def _read_until(conn: AttachConnection, needle: bytes, timeout: float = 20.0) -> dict[int, bytes]:
    got: dict[int, bytes] = {}

    async def loop() -> None:
        while (msg := await conn.read()) is not None:
            got[msg[0]] = got.get(msg[0], b"") + msg[1]
            if any(needle in v for v in got.values()):
                return

    await asyncio.wait_for(loop(), timeout)
    return got


async def _read_to_eof(conn: AttachConnection, timeout: float = 20.0) -> dict[int, bytes]:
    got: dict[int, bytes] = {}

    async def loop() -> None:
        while (msg := await conn.read()) is not None:
            got[msg[0]] = got.get(msg[0], b"") + msg[1]

    await asyncio.wait_for(loop(), timeout)
    return got


class _Session:
    """A StreamSession stand-in fed by the test."""

    def __init__(self, stdin: bool) -> None:
        self.stdin = asyncio.StreamReader() if stdin else None
        self.out: list[tuple[str, bytes]] = []
        self._resizes: asyncio.Queue[tuple[int, int]] = asyncio.Queue()

    async def write_stdout(self, data: bytes) -> None:
        self.out.append(("out", data))

    async def write_stderr(self, data: bytes) -> None:
        self.out.append(("err", data))

    @property
    def resize_events(self) -> AsyncIterator[tuple[int, int]]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[tuple[int, int]]:
        while True:
            yield await self._resizes.get()


async def test_attach_streams_stdout_and_stderr_live_without_stdin(harness: Harness) -> None:
    pod = await harness.pod("att-out")
    cid = await harness.run(pod, "c", ["sh", "-c", "i=0; while true; do i=$((i+1)); echo out-$i; "
                                                   "echo err-$i >&2; sleep 0.2; done"])
    conn = await harness.runtime.attach(cid)
    try:
        got = await _read_until(conn, b"err-3")
        # only lines written after attaching arrive, each on its own stream
        assert b"out-" in got[STREAM_STDOUT] and b"err-" not in got[STREAM_STDOUT]
        assert b"err-3\n" in got[STREAM_STDERR] and b"out-" not in got[STREAM_STDERR]
    finally:
        conn.close()
    # the container is unaffected by the client going away
    await asyncio.sleep(0.3)
    assert (await harness.runtime.state(cid)).status == ContainerStatus.RUNNING
    await harness.delete_pod(pod)


async def test_attach_ends_when_the_container_exits(harness: Harness) -> None:
    pod = await harness.pod("att-exit")
    cid = await harness.run(pod, "c", ["sh", "-c", "sleep 1; echo bye; exit 3"])
    conn = await harness.runtime.attach(cid)
    try:
        got = await _read_to_eof(conn)
    finally:
        conn.close()
    assert got[STREAM_STDOUT] == b"bye\n"
    st = await harness.runtime.wait(cid, 10)
    assert st.exit_code == 3
    await harness.delete_pod(pod)


async def test_stdin_without_tty_and_stdin_once_closes_on_detach(harness: Harness) -> None:
    pod = await harness.pod("att-once")
    cid = await harness.run(pod, "c", ["sh", "-c", "while read l; do echo got-$l; done; echo eof; sleep 30"],
                            stdin=True, annotations={STDIN_ONCE_ANNOTATION: "true"})
    conn = await harness.runtime.attach(cid)
    try:
        await conn.write(b"one\n")
        got = await _read_until(conn, b"got-one")
        assert got[STREAM_STDOUT] == b"got-one\n"
        conn.close_stdin()  # first client stops writing: stdin closes for good
        got = await _read_until(conn, b"eof")
        assert b"eof\n" in got[STREAM_STDOUT]
    finally:
        conn.close()
    await harness.delete_pod(pod)


async def test_stdin_stays_open_across_attaches_without_stdin_once(harness: Harness) -> None:
    pod = await harness.pod("att-open")
    cid = await harness.run(pod, "c", ["sh", "-c", "while read l; do echo got-$l; done; echo eof"], stdin=True)
    for word in (b"one", b"two"):
        conn = await harness.runtime.attach(cid)
        try:
            await conn.write(word + b"\n")
            got = await _read_until(conn, b"got-" + word)
            assert got[STREAM_STDOUT] == b"got-" + word + b"\n"
        finally:
            conn.close()
    st = await harness.runtime.state(cid)
    assert st.status == ContainerStatus.RUNNING  # stdin never reached EOF
    await harness.delete_pod(pod)


async def test_tty_attach_gets_input_output_and_resizes(harness: Harness) -> None:
    pod = await harness.pod("att-tty")
    cid = await harness.run(pod, "c", ["sh"], stdin=True, terminal=True)
    conn = await harness.runtime.attach(cid)
    try:
        conn.resize(123, 45)
        await asyncio.sleep(0.2)  # conmon applies it on its own loop
        await conn.write(b"stty size; echo hi-$((1+1))\n")
        got = await _read_until(conn, b"hi-2\r\n")
        assert set(got) == {STREAM_STDOUT}  # a terminal merges everything into stdout
        assert b"45 123" in got[STREAM_STDOUT]
        await conn.write(b"exit 4\n")
        await _read_to_eof(conn)
    finally:
        conn.close()
    st = await harness.runtime.wait(cid, 10)
    assert st.exit_code == 4
    await harness.delete_pod(pod)


async def test_tty_survives_a_detached_client_and_takes_a_second_one(harness: Harness) -> None:
    pod = await harness.pod("att-tty2")
    cid = await harness.run(pod, "c", ["sh"], stdin=True, terminal=True,
                            annotations={STDIN_ONCE_ANNOTATION: "false"})
    conn = await harness.runtime.attach(cid)
    await conn.write(b"echo first-$((1+1))\n")
    await _read_until(conn, b"first-2\r\n")
    conn.close()
    await asyncio.sleep(0.3)
    conn = await harness.runtime.attach(cid)
    try:
        await conn.write(b"echo second-$((2+1))\n")
        await _read_until(conn, b"second-3\r\n")
    finally:
        conn.close()
    await harness.delete_pod(pod)


async def test_stream_attach_pumps_a_session(harness: Harness) -> None:
    pod = await harness.pod("att-pump")
    cid = await harness.run(pod, "c", ["sh", "-c", "read l; echo got-$l; echo oops >&2; exit 0"], stdin=True)
    session = _Session(stdin=True)
    conn = await harness.runtime.attach(cid)
    assert session.stdin is not None
    session.stdin.feed_data(b"x\n")
    session.stdin.feed_eof()
    code = await asyncio.wait_for(stream_attach(conn, session, forward_stdin=True), 20)
    assert code == 0
    assert b"".join(d for k, d in session.out if k == "out") == b"got-x\n"
    assert b"".join(d for k, d in session.out if k == "err") == b"oops\n"
    await harness.delete_pod(pod)


async def test_attach_to_unknown_or_stopped_containers_fails(harness: Harness) -> None:
    with pytest.raises(ContainerNotFound):
        await harness.runtime.attach("nope")
    pod = await harness.pod("att-gone")
    cid = await harness.run(pod, "c", ["true"])
    await harness.runtime.wait(cid, 10)
    # give conmon time to exit after writing the exit file
    for _ in range(50):
        if harness.runtime._conmon_pid(cid) is None:
            break
        await asyncio.sleep(0.1)
    with pytest.raises(ContainerRuntimeError):
        await harness.runtime.attach(cid)
    assert isinstance(harness.runtime, RuncRuntime)
    await harness.delete_pod(pod)


async def test_stdin_once_input_and_eof_sent_at_once(harness: Harness) -> None:
    pod = await harness.pod("att-fast")
    cid = await harness.run(pod, "c", ["sh", "-c", "while read l; do echo got-$l; done; echo stdin-closed"],
                            stdin=True, annotations={STDIN_ONCE_ANNOTATION: "true"})
    conn = await harness.runtime.attach(cid)
    try:
        await conn.write(b"a\nb\n")
        conn.close_stdin()
        got = await _read_to_eof(conn)
    finally:
        conn.close()
    assert got[STREAM_STDOUT] == b"got-a\ngot-b\nstdin-closed\n"
    await harness.delete_pod(pod)
