"""exec and port-forward protocols end to end in-process: aiohttp server, WebSocket and SPDY clients,
fake backends (no processes, no network beyond loopback to the test server)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import MultiDict

from peapod.node.streaming import (
    StreamError,
    StreamSession,
    error_status,
    exit_status,
    handle_exec,
    handle_portforward,
    parse_bool,
    parse_exec_options,
    parse_ports,
)
from peapod.node.streaming.remotecommand import ResizeDecoder
from peapod.node.streaming.spdy_client import UpgradeRefused, connect_spdy, connect_spdy_websocket

EXEC = "/api/v1/namespaces/d/pods/p/exec"
PF = "/api/v1/namespaces/d/pods/p/portforward"


class FakeExec:
    """Writes a banner to both streams, echoes stdin upper-cased, records resizes, returns ``code``."""

    def __init__(self, code: int = 0, error: str | None = None, resizes: int = 0) -> None:
        self.code = code
        self.error = error
        self.want_resizes = resizes
        self.resizes: list[tuple[int, int]] = []
        self.sessions: list[StreamSession] = []

    async def run(self, session: StreamSession) -> int:
        self.sessions.append(session)
        if self.error:
            raise StreamError(self.error)
        await session.write_stdout(b"out:")
        await session.write_stderr(b"err:")
        if self.want_resizes:
            async for size in session.resize_events:
                self.resizes.append(size)
                if len(self.resizes) == self.want_resizes:
                    break
        if session.stdin is not None:
            while data := await session.stdin.read(65536):
                await session.write_stdout(data.upper())
        return self.code


class EchoPorts:
    """connect() gives one end of a socketpair whose other end echoes; port 1 is refused."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[None]] = []
        self.ports: list[int] = []

    async def connect(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.ports.append(port)
        if port == 1:
            raise ConnectionRefusedError("connect: connection refused")
        a, b = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=a)
        r2, w2 = await asyncio.open_connection(sock=b)

        async def echo() -> None:
            with contextlib.suppress(ConnectionError):
                while data := await r2.read(65536):
                    w2.write(data)
                    await w2.drain()
            w2.close()

        self.tasks.append(asyncio.create_task(echo()))
        return reader, writer


@contextlib.asynccontextmanager
async def server(exec_backend: Any = None, ports: Any = None, **kw: Any) -> AsyncIterator[TestServer]:
    async def exec_(request: web.Request) -> web.StreamResponse:
        opts = parse_exec_options(request.query)
        return await handle_exec(request, exec_backend, tty=opts.tty, stdin=opts.stdin, stdout=opts.stdout,
                                 stderr=opts.stderr, **kw)

    async def pf(request: web.Request) -> web.StreamResponse:
        return await handle_portforward(request, ports, pod="d/p", uid="u1")

    app = web.Application()
    for m in ("GET", "POST"):
        app.router.add_route(m, EXEC, exec_)
        app.router.add_route(m, PF, pf)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    try:
        yield srv
    finally:
        await srv.close()


async def ws_messages(ws: aiohttp.ClientWebSocketResponse) -> list[tuple[int, bytes]]:
    out = []
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.BINARY:
            out.append((msg.data[0], msg.data[1:]))
        elif msg.type == aiohttp.WSMsgType.TEXT:
            out.append((ord(msg.data[0]) - 48, base64.b64decode(msg.data[1:])))
    return out


def joined(msgs: list[tuple[int, bytes]], channel: int) -> bytes:
    return b"".join(d for c, d in msgs if c == channel)


# ------------------------------------------------------------------ options and statuses

def test_parse_exec_options_accepts_go_booleans_and_repeated_command() -> None:
    q = MultiDict([("command", "sh"), ("command", "-c"), ("command", "echo hi"), ("container", "c"),
                   ("stdin", "1"), ("stdout", "True"), ("stderr", "true"), ("tty", "false")])
    opts = parse_exec_options(q)
    assert opts.command == ["sh", "-c", "echo hi"] and opts.container == "c"
    assert (opts.stdin, opts.stdout, opts.stderr, opts.tty) == (True, True, True, False)
    tty = parse_exec_options(MultiDict([("command", "sh"), ("stdout", "1"), ("stderr", "1"), ("tty", "T")]))
    assert tty.tty and not tty.stderr  # a terminal has no separate stderr
    with pytest.raises(ValueError, match="at least 1 of stdin, stdout, stderr"):
        parse_exec_options(MultiDict([("command", "sh")]))
    with pytest.raises(ValueError, match="at least one command"):
        parse_exec_options(MultiDict([("stdout", "1")]))
    assert parse_exec_options(MultiDict([("stdout", "1")]), require_command=False).command == []
    with pytest.raises(ValueError):
        parse_bool("yes")


def test_parse_ports() -> None:
    assert parse_ports(MultiDict([("ports", "80,443"), ("port", "8080")])) == [80, 443, 8080]
    for bad in ([], [("ports", "")], [("ports", "0")], [("ports", "x")], [("ports", "70000")]):
        with pytest.raises(ValueError):
            parse_ports(MultiDict(bad))


def test_statuses_match_kubelet() -> None:
    assert exit_status(0, ["true"]) == {"metadata": {}, "status": "Success"}
    assert exit_status(3, ["sh", "-c", "exit 3"]) == {
        "metadata": {}, "status": "Failure",
        "message": "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3",
        "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}
    assert exit_status(-9, ["x"])["details"]["causes"][0]["message"] == "137"  # killed by SIGKILL
    err = error_status("no such container")
    assert err["reason"] == "InternalError" and err["code"] == 500
    assert err["message"] == "Internal error occurred: error executing command in container: no such container"


def test_resize_decoder_handles_concatenated_and_split_json() -> None:
    d = ResizeDecoder()
    assert d.feed(b'{"Width":80,"Height":24}\n{"Width":100,') == [(80, 24)]
    assert d.feed(b'"Height":30}\n') == [(100, 30)]


# ------------------------------------------------------------------ exec over WebSocket

async def test_ws_v5_exec_with_stdin_close_and_resize() -> None:
    backend = FakeExec(code=3, resizes=2)
    async with server(backend) as srv, aiohttp.ClientSession() as http:
        url = srv.make_url(EXEC).with_query([("command", "sh"), ("command", "-c"), ("command", "exit 3"),
                                              ("stdin", "true"), ("stdout", "true"), ("stderr", "true")])
        async with http.ws_connect(url, protocols=["v5.channel.k8s.io", "v4.channel.k8s.io"]) as ws:
            assert ws.protocol == "v5.channel.k8s.io"
            await ws.send_bytes(b"\x04" + json.dumps({"Width": 80, "Height": 24}).encode())
            await ws.send_bytes(b"\x04" + json.dumps({"Width": 81, "Height": 25}).encode())
            await ws.send_bytes(b"\x00hello ")
            await ws.send_bytes(b"\x00world")
            await ws.send_bytes(bytes([255, 0]))  # v5: close stdin
            msgs = await ws_messages(ws)
    assert msgs[0] == (1, b"")  # kubelet's "connected" message
    assert joined(msgs, 1) == b"out:HELLO WORLD"
    assert joined(msgs, 2) == b"err:"
    status = json.loads(joined(msgs, 3))
    assert status["reason"] == "NonZeroExitCode" and status["details"]["causes"][0]["message"] == "3"
    assert "[sh -c exit 3], exit code 3" in status["message"]
    assert backend.resizes == [(80, 24), (81, 25)]


async def test_ws_v4_base64_success_and_stream_error() -> None:
    async with server(FakeExec()) as srv, aiohttp.ClientSession() as http:
        url = srv.make_url(EXEC).with_query([("command", "ls"), ("stdout", "1")])
        async with http.ws_connect(url, protocols=["v4.base64.channel.k8s.io"]) as ws:
            msgs = await ws_messages(ws)
    assert joined(msgs, 1) == b"out:" and joined(msgs, 2) == b""  # stderr was not asked for
    assert json.loads(joined(msgs, 3)) == {"metadata": {}, "status": "Success"}
    async with server(FakeExec(error="container gone")) as srv, aiohttp.ClientSession() as http:
        url = srv.make_url(EXEC).with_query([("command", "ls"), ("stdout", "1")])
        async with http.ws_connect(url, protocols=["v4.channel.k8s.io"]) as ws:
            msgs = await ws_messages(ws)
    assert json.loads(joined(msgs, 3))["message"].endswith("error executing command in container: container gone")


async def test_ws_pre_v4_sends_only_failure_text_and_unknown_protocols_are_refused() -> None:
    async with server(FakeExec(code=2)) as srv, aiohttp.ClientSession() as http:
        url = srv.make_url(EXEC).with_query([("command", "false"), ("stdout", "1")])
        async with http.ws_connect(url, protocols=["channel.k8s.io"]) as ws:
            msgs = await ws_messages(ws)
        assert joined(msgs, 3).startswith(b"command terminated with non-zero exit code")
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await http.ws_connect(url, protocols=["v9.channel.k8s.io"])
        assert e.value.status == 400


async def test_ws_client_leaving_cancels_the_backend() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    class Hang:
        async def run(self, session: StreamSession) -> int:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                assert session.closed.is_set()
                cancelled.set()
                raise
            return 0

    async with server(Hang()) as srv, aiohttp.ClientSession() as http:
        url = srv.make_url(EXEC).with_query([("command", "sleep"), ("stdout", "1")])
        ws = await http.ws_connect(url, protocols=["v5.channel.k8s.io"])
        await asyncio.wait_for(started.wait(), 5)
        await ws.close()
        await asyncio.wait_for(cancelled.wait(), 5)


# ------------------------------------------------------------------ exec over SPDY

async def spdy_exec(srv: TestServer, query: list[tuple[str, str]], protocols: list[str],
                    kinds: list[str]) -> tuple[Any, str, dict[str, Any]]:
    path = str(srv.make_url(EXEC).with_query(query).relative())
    spdy, proto = await connect_spdy("127.0.0.1", srv.port or 0, path, protocols=protocols)
    streams = {}
    for kind in kinds:  # client-go's order: error first
        streams[kind] = await spdy.open_stream({"streamType": kind})
    return spdy, proto, streams


async def test_spdy_v4_exec_streams_status_and_resize() -> None:
    backend = FakeExec(code=0, resizes=1)
    async with server(backend) as srv:
        q = [("command", "cat"), ("stdin", "1"), ("stdout", "1"), ("tty", "1")]
        spdy, proto, s = await spdy_exec(srv, q, ["v5.channel.k8s.io", "v4.channel.k8s.io"],
                                         ["error", "stdin", "stdout", "resize"])
        assert proto == "v5.channel.k8s.io"
        await s["resize"].write(b'{"Width":120,"Height":40}\n')
        await s["stdin"].write(b"abc" * 50_000)  # larger than one window: flow control at work
        await s["stdin"].close()
        out = await s["stdout"].reader.read()
        status = await s["error"].reader.read()
        await spdy.close()
    assert out == b"out:err:" + b"ABC" * 50_000  # tty: stderr goes to stdout
    assert json.loads(status) == {"metadata": {}, "status": "Success"}
    assert backend.resizes == [(120, 40)]


async def test_spdy_v2_reports_failures_as_text() -> None:
    async with server(FakeExec(code=1)) as srv:
        q = [("command", "false"), ("stdout", "1"), ("stderr", "1")]
        spdy, proto, s = await spdy_exec(srv, q, ["v2.channel.k8s.io"], ["error", "stdout", "stderr"])
        assert proto == "v2.channel.k8s.io"
        assert await s["stderr"].reader.read() == b"err:"
        text = await s["error"].reader.read()
        await spdy.close()
    assert text.startswith(b"command terminated with non-zero exit code")


async def test_spdy_negotiation_failure_is_403_with_accepted_versions() -> None:
    async with server(FakeExec()) as srv:
        path = EXEC + "?command=ls&stdout=1"
        with pytest.raises(UpgradeRefused) as e:
            await connect_spdy("127.0.0.1", srv.port or 0, path, protocols=["v9.channel.k8s.io"])
    assert e.value.status == 403
    accepted = [v for k, v in e.value.headers if k.lower() == "x-accepted-stream-protocol-versions"]
    assert "v4.channel.k8s.io" in accepted


async def test_spdy_missing_streams_time_out() -> None:
    backend = FakeExec()
    async with server(backend, stream_timeout=0.05) as srv:
        spdy, _, _ = await spdy_exec(srv, [("command", "ls"), ("stdout", "1")], ["v4.channel.k8s.io"],
                                     ["error"])
        await asyncio.wait_for(spdy.wait_closed(), 5)
    assert backend.sessions == []


# ------------------------------------------------------------------ port-forward

async def spdy_pair(spdy: Any, port: int, request_id: int) -> tuple[Any, Any]:
    hdr = {"port": str(port), "requestID": str(request_id)}
    err = await spdy.open_stream({"streamType": "error", **hdr})
    await err.close()  # kubectl half-closes the error stream at once
    data = await spdy.open_stream({"streamType": "data", **hdr})
    return err, data


async def exercise_port_forward(spdy: Any) -> None:
    (e1, d1), (e2, d2) = await asyncio.gather(spdy_pair(spdy, 8080, 0), spdy_pair(spdy, 9090, 1))
    blob = bytes(range(256)) * 1024
    await d1.write(b"one")
    await d2.write(blob)
    assert await d1.reader.readexactly(3) == b"one"
    assert await d2.reader.readexactly(len(blob)) == blob
    await d1.close()  # half-close reaches the target, which closes: FIN comes back
    assert await d1.reader.read() == b""
    assert await e1.reader.read() == b""  # no error for a clean connection
    e3, d3 = await spdy_pair(spdy, 1, 2)
    assert await e3.reader.read() == b"error forwarding port 1 to pod d/p, uid u1: connect: connection refused"
    assert await d3.reader.read() == b""
    await d2.close()
    assert await d2.reader.read() == b""
    assert await e2.reader.read() == b""


async def test_spdy_port_forward_pairs_streams_by_request_id() -> None:
    ports = EchoPorts()
    async with server(ports=ports) as srv:
        spdy, proto = await connect_spdy("127.0.0.1", srv.port or 0, PF, protocols=["portforward.k8s.io"])
        assert proto == "portforward.k8s.io"
        await exercise_port_forward(spdy)
        await spdy.close()
    assert sorted(ports.ports) == [1, 8080, 9090]


async def test_spdy_port_forward_tunnelled_in_websocket() -> None:
    ports = EchoPorts()
    async with server(ports=ports) as srv, aiohttp.ClientSession() as http:
        spdy, ws = await connect_spdy_websocket(http, str(srv.make_url(PF)))
        assert ws.protocol == "SPDY/3.1+portforward.k8s.io"
        await exercise_port_forward(spdy)
        await spdy.close()


async def test_spdy_port_forward_pairs_old_clients_by_stream_id() -> None:
    async with server(ports=EchoPorts()) as srv:
        spdy, _ = await connect_spdy("127.0.0.1", srv.port or 0, PF, protocols=["portforward.k8s.io"])
        await spdy.open_stream({"streamType": "error", "port": "7"})
        data = await spdy.open_stream({"streamType": "data", "port": "7"})
        await data.write(b"x")
        assert await data.reader.readexactly(1) == b"x"
        await spdy.close()


async def test_ws_channel_port_forward() -> None:
    async with server(ports=EchoPorts()) as srv, aiohttp.ClientSession() as http:
        url = srv.make_url(PF).with_query(ports="8080,1")
        async with http.ws_connect(url, protocols=["v5.channel.k8s.io", "v4.channel.k8s.io"]) as ws:
            assert ws.protocol == "v4.channel.k8s.io"
            heads = [await ws.receive_bytes() for _ in range(4)]
            assert sorted(heads) == sorted([b"\x00" + struct.pack("<H", 8080), b"\x01" + struct.pack("<H", 8080),
                                            b"\x02" + struct.pack("<H", 1), b"\x03" + struct.pack("<H", 1)])
            await ws.send_bytes(b"\x00hi")
            got: dict[int, bytes] = {}
            while got.get(0) != b"hi" or 3 not in got:
                m = await asyncio.wait_for(ws.receive_bytes(), 5)
                got[m[0]] = got.get(m[0], b"") + m[1:]
            assert got[3].startswith(b"error forwarding port 1 to pod d/p")
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(srv.make_url(PF), protocols=["v4.channel.k8s.io"])  # no ports
