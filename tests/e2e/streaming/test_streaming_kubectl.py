"""Real kubectl (1.27 speaks SPDY, 1.33 WebSocket) and the Python client against the streaming
protocols, served by a tiny fake API server (fakeapi.py) with local-process backends."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import re
import signal
import socket
import struct
import termios
from pathlib import Path

import pytest

from tests.e2e.streaming.fakeapi import FakeApi, echo_server, serve, stop

TRANSPORT = {27: "SPDY/3.1", 33: "websocket"}
MINORS = [27, 33]


@pytest.mark.parametrize("minor", MINORS)
async def test_exec_streams_and_exit_code(tmp_path: Path, minor: int) -> None:
    async with serve(tmp_path, minor) as api:
        rc, out, err = await api.kubectl("exec", "p", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
        assert rc == 3, err
        assert out == "out\n"
        assert err.startswith("err\n")
        assert "command terminated with exit code 3" in err
        assert api.record.upgrades[0][:2] == ("exec", TRANSPORT[minor])
        rc, out, err = await api.kubectl("exec", "p", "--", "sh", "-c", "seq 1 100000")
        assert rc == 0, err
        assert out == "".join(f"{i}\n" for i in range(1, 100001))


@pytest.mark.parametrize("minor", MINORS)
async def test_exec_stdin_piped(tmp_path: Path, minor: int) -> None:
    data = b"".join(b"line %d\n" % i for i in range(50000))  # ~600 KiB through stdin and back
    async with serve(tmp_path, minor) as api:
        rc, out, err = await api.kubectl("exec", "-i", "p", "--", "cat", input=data)
        assert rc == 0, err
        assert out.encode() == data
        rc, out, err = await api.kubectl("exec", "-i", "p", "--", "sh", "-c", "wc -c; exit 5", input=b"abc")
        assert rc == 5 and out.strip() == "3", err


class _Terminal:
    """kubectl on a pty we hold the master of, so `-t` is honoured and SIGWINCH can be sent."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        self.buf = b""
        self._data: asyncio.Queue[bytes] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def readable() -> None:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                loop.remove_reader(self.master)
            self._data.put_nowait(chunk)

        loop.add_reader(self.master, readable)

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    async def expect(self, pattern: bytes, timeout: float = 20) -> None:
        async def wait() -> None:
            while pattern not in self.buf:
                chunk = await self._data.get()
                if not chunk:
                    raise AssertionError(f"terminal closed before {pattern!r}; got {self.buf!r}")
                self.buf += chunk
        await asyncio.wait_for(wait(), timeout)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.mark.parametrize("minor", MINORS)
async def test_exec_tty_and_resize(tmp_path: Path, minor: int) -> None:
    async with serve(tmp_path, minor) as api:
        term = _Terminal()
        term.resize(30, 90)
        proc = await asyncio.create_subprocess_exec(
            *api.args("exec", "-it", "p", "--", "sh", "-c", "read x; stty size; read y; stty size; exit 4"),
            env=api.env(), stdin=term.slave, stdout=term.slave, stderr=term.slave, start_new_session=True)
        try:
            await asyncio.wait_for(api.record.resize_seen.wait(), 20)
            assert api.record.resizes[0] == (90, 30)
            os.write(term.master, b"go\r")
            await term.expect(b"30 90")
            api.record.resize_seen.clear()
            term.resize(50, 120)
            proc.send_signal(signal.SIGWINCH)
            await asyncio.wait_for(api.record.resize_seen.wait(), 20)
            assert api.record.resizes[-1] == (120, 50)
            os.write(term.master, b"go\r")
            await term.expect(b"50 120")
            assert await asyncio.wait_for(proc.wait(), 20) == 4
            assert api.record.upgrades[0][:2] == ("exec", TRANSPORT[minor])
        finally:
            await stop(proc)
            term.close()


async def _forward(api: FakeApi, remote: int) -> tuple[asyncio.subprocess.Process, int]:
    proc = await asyncio.create_subprocess_exec(
        *api.args("port-forward", "pod/p", f"0:{remote}", "--address", "127.0.0.1"), env=api.env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    m = re.search(r"127\.0\.0\.1:(\d+) -> (\d+)", line)
    assert m is not None, line
    assert int(m.group(2)) == remote
    return proc, int(m.group(1))


@pytest.mark.parametrize("minor", MINORS)
async def test_port_forward_round_trip(tmp_path: Path, minor: int) -> None:
    async with serve(tmp_path, minor) as api, echo_server() as echo_port:
        proc, local = await _forward(api, echo_port)
        try:
            for i in range(3):  # one SPDY stream pair per connection, on one session
                reader, writer = await asyncio.open_connection("127.0.0.1", local)
                writer.write(b"hello %d" % i)
                assert await asyncio.wait_for(reader.readexactly(7), 10) == b"hello %d" % i
                big = os.urandom(512 * 1024)
                writer.write(big)
                assert await asyncio.wait_for(reader.readexactly(len(big)), 20) == big
                writer.write_eof()  # passed on as a half-close; the echo server then closes
                assert await asyncio.wait_for(reader.read(), 10) == b""
                writer.close()
            kinds = {u[:2] for u in api.record.upgrades}
            expected = ("SPDY/3.1", "portforward.k8s.io") if minor == 27 else \
                ("websocket", "SPDY/3.1+portforward.k8s.io")
            assert ("portforward", expected[0]) in kinds
            assert api.record.upgrades[0][2] == expected[1]
        finally:
            await stop(proc)


@pytest.mark.parametrize("minor", MINORS)
async def test_attach_stdin(tmp_path: Path, minor: int) -> None:
    async with serve(tmp_path, minor) as api:
        rc, out, err = await api.kubectl("attach", "-i", "p", input=b"attached\n")
        assert rc == 0, err
        assert out == "attached\n"
        assert api.record.upgrades[0][:2] == ("attach", TRANSPORT[minor])


async def test_port_forward_refused_is_reported(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    async with serve(tmp_path, 27) as api:
        proc, local = await _forward(api, free_port)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", local)
            assert await asyncio.wait_for(reader.read(), 20) == b""
            writer.close()
        finally:
            await stop(proc)
        assert proc.stderr is not None
        err = (await proc.stderr.read()).decode()
        assert f"error forwarding port {free_port} to pod default/p" in err, err


async def test_python_client_exec_and_portforward(tmp_path: Path) -> None:
    from kubernetes import client
    from kubernetes.stream import portforward, stream

    async with serve(tmp_path, 33) as api, echo_server() as echo_port:
        cfg = client.Configuration()
        cfg.host = api.url
        core = client.CoreV1Api(client.ApiClient(cfg))

        def run() -> None:
            exec_ = core.connect_get_namespaced_pod_exec
            out = stream(exec_, "p", "default", command=["sh", "-c", "echo out; echo err >&2"], stderr=True,
                         stdin=False, stdout=True, tty=False)
            assert out == "out\nerr\n"
            ws = stream(exec_, "p", "default", command=["sh", "-c", "cat; exit 7"], stderr=True, stdin=True,
                        stdout=True, tty=False, _preload_content=False)
            ws.write_stdin("hello\n")
            ws.close_channel(0)  # v5: closes stdin, so cat ends
            ws.run_forever(timeout=20)
            assert ws.read_stdout(timeout=1) == "hello\n"
            assert ws.returncode == 7
            pf = portforward(core.connect_get_namespaced_pod_portforward, "p", "default",
                             ports=str(echo_port))
            sock = pf.socket(echo_port)
            sock.settimeout(10)
            sock.sendall(b"ping!")
            assert sock.recv(100) == b"ping!"
            sock.close()
            assert pf.error(echo_port) is None

        await asyncio.to_thread(run)
        assert {u[2] for u in api.record.upgrades} == {"v5.channel.k8s.io,v4.channel.k8s.io"}
