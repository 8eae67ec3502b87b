"""Probe handlers against real loopback servers (agent's own netns): HTTP codes, redirects, named
ports, headers, body cap, TLS, timeouts, TCP, exec through the fake runtime, gRPC against grpcio."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from peapod.node.probes import Outcome, Prober, Target
from peapod.node.probes.handlers import expand_command, http_probe, tcp_probe
from peapod.node.probes.httpclient import canonical_header, format_url
from peapod.node.probes.util import ProbeError, resolve_port
from peapod.node.runtime.types import ExecProcess
from peapod.testing.clock import FakeClock
from peapod.testing.fakes_runtime import FakeRuntime
from tests.unit.probes.servers import (
    Request,
    free_port,
    full_backlog,
    http_server,
    response,
    self_signed_tls,
)

LOCAL = Target("c1", pod_ip="127.0.0.1", netns_path=None)
CONTAINER = {"name": "app", "ports": [{"name": "http", "containerPort": 0}]}


def action(port: Any, path: str = "/healthz", **kw: Any) -> dict[str, Any]:
    return {"port": port, "path": path, **kw}


@pytest.mark.parametrize(("status", "ok"),
                         [(200, True), (204, True), (399, False), (400, False), (500, False)])
async def test_http_status_codes(status: int, ok: bool) -> None:
    async with http_server(lambda r: response(status, b"body")) as srv:
        res = await http_probe(action(srv.port), CONTAINER, LOCAL, 2)
    if status == 399:  # 3xx without Location: not followed, success with a warning
        assert res.outcome == Outcome.WARNING and res.ok
        assert res.output == "Probe terminated redirects, Response body: body"
    elif ok:
        assert res.outcome == Outcome.SUCCESS and res.output == ("" if status == 204 else "body")
    else:
        assert res.outcome == Outcome.FAILURE
        assert res.output == f"HTTP probe failed with statuscode: {status}"


async def test_http_request_shape_headers_and_host() -> None:
    async with http_server(lambda r: response(200)) as srv:
        hdrs = [{"name": "x-custom", "value": "a"}, {"name": "X-Custom", "value": "b"},
                {"name": "Host", "value": "example.test"}]
        res = await http_probe(action(srv.port, "healthz?full=1", httpHeaders=hdrs), CONTAINER, LOCAL, 2)
        assert res.ok
        (req,) = srv.requests
        assert req.method == "GET" and req.target == "/healthz?full=1"
        assert req.header("Host") == "example.test"
        assert req.header("User-Agent") == "kube-probe/1.33"
        assert req.header("Accept") == "*/*"
        assert [v for k, v in req.headers if k == "X-Custom"] == ["a", "b"]
        assert req.header("Connection") == "close"
        # default Host is host:port; a given User-Agent wins; an empty Accept is dropped
        srv.requests.clear()
        hdrs = [{"name": "user-agent", "value": "mine"}, {"name": "Accept", "value": ""}]
        assert (await http_probe(action(srv.port, "", httpHeaders=hdrs), CONTAINER, LOCAL, 2)).ok
        (req,) = srv.requests
        assert req.target == "/" and req.header("Host") == f"127.0.0.1:{srv.port}"
        assert req.header("User-Agent") == "mine" and req.header("Accept") is None


async def test_named_port_and_port_errors() -> None:
    async with http_server(lambda r: response(200)) as srv:
        container = {"name": "app", "ports": [{"name": "http", "containerPort": srv.port}]}
        assert (await http_probe(action("http"), container, LOCAL, 2)).ok
        assert (await http_probe(action(str(srv.port)), container, LOCAL, 2)).ok
    res = await http_probe(action("nope"), container, LOCAL, 2)
    assert res.error == 'strconv.Atoi: parsing "nope": invalid syntax' and not res.ok
    assert resolve_port(8080, {}) == 8080
    with pytest.raises(ProbeError, match="invalid port number: 70000"):
        resolve_port(70000, {})


async def test_redirects_same_host_followed_other_host_not() -> None:
    def respond(r: Request) -> bytes:
        if r.target == "/healthz":
            return response(302, b"", {"Location": "/real"})
        if r.target == "/real":
            return response(200, b"real")
        if r.target == "/away":
            return response(301, b"gone", {"Location": "http://localhost:1/x"})
        return response(404)

    async with http_server(respond) as srv:
        res = await http_probe(action(srv.port), CONTAINER, LOCAL, 2)
        assert res.outcome == Outcome.SUCCESS and res.output == "real"
        assert [r.target for r in srv.requests] == ["/healthz", "/real"]
        res = await http_probe(action(srv.port, "/away"), CONTAINER, LOCAL, 2)
        assert res.outcome == Outcome.WARNING
        assert res.output == "Probe terminated redirects, Response body: gone"


async def test_redirect_loop_stops_after_10() -> None:
    def respond(r: Request) -> bytes:
        n = int(r.target.strip("/") or 0)
        return response(302, b"", {"Location": f"/{n + 1}"})

    async with http_server(respond) as srv:
        res = await http_probe(action(srv.port, "/0"), CONTAINER, LOCAL, 2)
        assert res.outcome == Outcome.FAILURE
        assert res.output == f'Get "http://127.0.0.1:{srv.port}/10": stopped after 10 redirects'
        assert len(srv.requests) == 10


async def test_body_is_capped_at_10k() -> None:
    async with http_server(lambda r: response(200, b"x" * 1_000_000)) as srv:
        res = await http_probe(action(srv.port), CONTAINER, LOCAL, 2)
    assert res.ok and len(res.output) == 10 * 1024


async def test_connection_refused_and_timeouts() -> None:
    port = free_port()
    res = await http_probe(action(port), CONTAINER, LOCAL, 1)
    assert res.outcome == Outcome.FAILURE
    assert res.output == f'Get "http://127.0.0.1:{port}/healthz": dial tcp 127.0.0.1:{port}: connect: ' \
                         "connection refused"

    async def never(r: Request) -> bytes:
        await asyncio.sleep(10)
        return b""

    async with http_server(never) as srv:
        t0 = time.monotonic()
        res = await http_probe(action(srv.port), CONTAINER, LOCAL, 0.3)
        assert time.monotonic() - t0 < 2
    assert res.output == (f'Get "http://127.0.0.1:{srv.port}/healthz": context deadline exceeded '
                          "(Client.Timeout exceeded while awaiting headers)")
    with full_backlog() as port:
        res = await tcp_probe("127.0.0.1", port, 0.3, netns_path=None)
        assert res.output == f"dial tcp 127.0.0.1:{port}: i/o timeout"


async def test_server_closing_without_answer_is_eof() -> None:
    async with http_server(lambda r: b"") as srv:
        res = await http_probe(action(srv.port), CONTAINER, LOCAL, 2)
    assert res.output == f'Get "http://127.0.0.1:{srv.port}/healthz": EOF'


async def test_https_without_verification_and_http_answer(tmp_path: Path) -> None:
    async with http_server(lambda r: response(200, b"secure"), tls=self_signed_tls(tmp_path)) as srv:
        res = await http_probe(action(srv.port, scheme="HTTPS"), CONTAINER, LOCAL, 2)
        assert res.outcome == Outcome.SUCCESS and res.output == "secure"
    # A plain HTTP server answers the TLS ClientHello with a 400, as real ones do.
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(response(400))
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(plain, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        res = await http_probe(action(port, scheme="HTTPS"), CONTAINER, LOCAL, 2)
        assert res.output == (f'Get "https://127.0.0.1:{port}/healthz": '
                              "http: server gave HTTP response to HTTPS client")
    finally:
        srv.close()
        await srv.wait_closed()


async def test_tcp_probe() -> None:
    async with http_server(lambda r: b"") as srv:
        prober = Prober()
        res = await prober.run({"tcpSocket": {"port": "http"}},
                               container={"ports": [{"name": "http", "containerPort": srv.port}]},
                               target=LOCAL, timeout=1)
        assert res.ok and res.output == ""
    port = free_port()
    res = await tcp_probe("127.0.0.1", port, 1, netns_path=None)
    assert res.output == f"dial tcp 127.0.0.1:{port}: connect: connection refused"


class SlowExecRuntime(FakeRuntime):
    """exec runs a real host process (sleep) so timeouts are real."""

    async def exec(self, container_id: str, argv: Any, **kw: Any) -> ExecProcess:
        self._record("exec", container_id, tuple(argv))
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", "echo started; exec sleep 30", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
        )
        self.procs.append(proc)
        return ExecProcess(proc)


async def test_exec_probe_exit_codes_output_and_timeout() -> None:
    rt = FakeRuntime(FakeClock())
    await rt.create("c1", "/b", "/l")
    await rt.start("c1")
    prober = Prober(runtime=rt)
    handler = {"exec": {"command": ["cat", "/tmp/healthy"]}}
    rt.exec_results["c1"] = (0, b"fine\n", b"")
    res = await prober.run(handler, container={}, target=LOCAL, timeout=1)
    assert res.outcome == Outcome.SUCCESS and res.output == "fine\n"
    rt.exec_results["c1"] = (1, b"out ", b"cat: can't open '/tmp/healthy'")
    res = await prober.run(handler, container={}, target=LOCAL, timeout=1)
    assert res.outcome == Outcome.FAILURE and res.output == "out cat: can't open '/tmp/healthy'"
    assert rt.called("exec")[-1].args == ("c1", ("cat", "/tmp/healthy"))
    rt.exit("c1", 0)
    res = await prober.run(handler, container={}, target=LOCAL, timeout=1)
    assert res.error is not None and "not running" in res.error

    slow = SlowExecRuntime(FakeClock())
    slow.procs = []
    t0 = time.monotonic()
    res = await Prober(runtime=slow).run({"exec": {"command": ["sh", "-c", "sleep 30"]}}, container={},
                                         target=LOCAL, timeout=0.3)
    assert time.monotonic() - t0 < 2
    assert res.outcome == Outcome.FAILURE and res.output == 'command "sh -c sleep 30" timed out'
    (proc,) = slow.procs
    await asyncio.wait_for(proc.wait(), 5)  # the timed-out process is stopped, not leaked
    assert proc.returncode is not None


def test_expand_command_static_env_only() -> None:
    c = {"env": [{"name": "PORT", "value": "8080"}, {"name": "S", "valueFrom": {"secretKeyRef": {}}}]}
    assert expand_command(["check", "$(PORT)", "$(S)", "$(NOPE)", "$$(PORT)"], c) == \
        ["check", "8080", "", "$(NOPE)", "$(PORT)"]


def test_url_and_header_helpers() -> None:
    assert format_url("http", "10.0.0.5", 80, "healthz") == "http://10.0.0.5:80/healthz"
    assert format_url("https", "fd00::1", 443, "") == "https://[fd00::1]:443"
    assert canonical_header("x-forwarded-for") == "X-Forwarded-For"


# -- gRPC against the real grpcio health service ----------------------------------------------------
async def test_grpc_probe_against_grpcio_health_service() -> None:
    grpc = pytest.importorskip("grpc")  # test-only dependency: a real gRPC server to probe
    health = pytest.importorskip("grpc_health.v1.health")
    health_pb2 = pytest.importorskip("grpc_health.v1.health_pb2")
    health_pb2_grpc = pytest.importorskip("grpc_health.v1.health_pb2_grpc")
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    bare = grpc.aio.server()  # no health service at all
    bare_port = bare.add_insecure_port("127.0.0.1:0")
    await bare.start()
    try:
        prober = Prober()

        async def run(service: str = "", p: int = port) -> Any:
            return await prober.run({"grpc": {"port": p, "service": service}}, container={}, target=LOCAL,
                                    timeout=2)

        await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        await servicer.set("db", health_pb2.HealthCheckResponse.NOT_SERVING)
        res = await run()
        assert res.outcome == Outcome.SUCCESS and res.output == "service healthy"
        res = await run("db")
        assert res.outcome == Outcome.FAILURE
        assert res.output == 'service unhealthy (responded with "NOT_SERVING")'
        res = await run("other")
        assert res.output == "error: health rpc probe failed: rpc error: code = NotFound desc = "
        res = await run(p=bare_port)
        assert res.output.startswith("error: this server does not implement the grpc health protocol "
                                     "(grpc.health.v1.Health)")
        refused = free_port()
        res = await run(p=refused)
        assert res.output == (f'error: failed to connect service at "127.0.0.1:{refused}": '
                              f"dial tcp 127.0.0.1:{refused}: connect: connection refused")
    finally:
        await server.stop(None)
        await bare.stop(None)
