"""postStart / preStop hooks: handlers, kubelet's messages and events, the preStop deadline."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from peapod.node.hooks import run_handler, run_post_start, run_pre_stop
from peapod.node.probes import Target
from peapod.testing.clock import FakeClock
from peapod.testing.fakes_runtime import FakeRuntime
from tests.unit.probes.servers import free_port, http_server, response

POD = {"metadata": {"name": "web", "namespace": "default", "uid": "u-1"}}
TARGET = Target("c1", pod_ip="127.0.0.1", netns_path=None)


@pytest.fixture
async def rt() -> FakeRuntime:
    r = FakeRuntime(FakeClock())
    await r.create("c1", "/b", "/l")
    await r.start("c1")
    return r


def container(**lifecycle: Any) -> dict[str, Any]:
    return {"name": "app", "ports": [{"name": "web", "containerPort": 1}], "lifecycle": lifecycle}


class Events(list):
    def __call__(self, pod: Any, type_: str, reason: str, message: str, *, field_path: str = "") -> None:
        self.append((type_, reason, message))
        self.paths.append(field_path)

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []


async def test_post_start_exec_success_and_failure(rt: FakeRuntime) -> None:
    ev, clock = Events(), FakeClock()
    c = container(postStart={"exec": {"command": ["sh", "-c", "exit 1"]}})
    rt.exec_results["c1"] = (0, b"", b"")
    res = await run_post_start(pod=POD, container=c, target=TARGET, runtime=rt, clock=clock, record_event=ev)
    assert res.ok and ev == []
    rt.exec_results["c1"] = (1, b"some output", b"boom")
    res = await run_post_start(pod=POD, container=c, target=TARGET, runtime=rt, clock=clock, record_event=ev)
    msg = ('Exec lifecycle hook ([sh -c exit 1]) for Container "app" in Pod "web_default(u-1)" failed - '
           "error: command 'sh -c exit 1' exited with 1: boom, message: \"some outputboom\"")
    assert not res.ok and res.message == msg
    assert ev == [("Warning", "FailedPostStartHook", msg)]
    assert ev.paths == ["spec.containers{app}"]


async def test_no_hook_is_ok(rt: FakeRuntime) -> None:
    res = await run_post_start(pod=POD, container={"name": "app"}, target=TARGET, runtime=rt,
                               clock=FakeClock())
    assert res.ok
    res = await run_pre_stop(pod=POD, container={"name": "app"}, target=TARGET, runtime=rt, clock=FakeClock(),
                             deadline=0)
    assert res.ok and res.completed


async def test_http_hook_ignores_status_but_fails_on_connection_errors(rt: FakeRuntime) -> None:
    async with http_server(lambda r: response(500)) as srv:
        c = container(postStart={"httpGet": {"path": "/start", "port": srv.port,
                                             "httpHeaders": [{"name": "X-A", "value": "1"}]}})
        res = await run_post_start(pod=POD, container=c, target=TARGET, runtime=rt, clock=FakeClock())
        assert res.ok  # kubelet does not look at the status code of a hook's response
        (req,) = srv.requests
        assert req.target == "/start" and req.header("User-Agent") == "kube-lifecycle/1.33"
        assert req.header("X-A") == "1"
    port = free_port()
    ev = Events()
    c = container(postStart={"httpGet": {"path": "/start", "port": port}})
    res = await run_post_start(pod=POD, container=c, target=TARGET, runtime=rt, clock=FakeClock(),
                               record_event=ev)
    msg = ('HTTP lifecycle hook (/start) for Container "app" in Pod "web_default(u-1)" failed - error: '
           f'Get "http://127.0.0.1:{port}/start": dial tcp 127.0.0.1:{port}: connect: connection refused')
    assert res.message == msg and ev == [("Warning", "FailedPostStartHook", msg)]


async def test_https_hook_answered_in_http_falls_back(rt: FakeRuntime) -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(4096)
        if data.startswith(b"GET"):
            seen.append(data)
            writer.write(response(200))
        else:
            writer.write(response(400))
        await writer.drain()
        writer.close()

    seen: list[bytes] = []
    srv = await asyncio.start_server(plain, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        ev = Events()
        c = container(postStart={"httpGet": {"path": "/x", "port": port, "scheme": "HTTPS",
                                             "httpHeaders": [{"name": "Authorization", "value": "secret"}]}})
        res = await run_post_start(pod=POD, container=c, target=TARGET, runtime=rt, clock=FakeClock(),
                                   record_event=ev)
        assert res.ok
        assert ev == [("Warning", "LifecycleHTTPFallback",
                       f"request to HTTPS lifecycle hook 127.0.0.1:{port} got HTTP response, retry with HTTP "
                       "succeeded")]
        assert b"secret" not in seen[0]
    finally:
        srv.close()
        await srv.wait_closed()


async def test_tcp_socket_hook_fails_like_kubelet(rt: FakeRuntime) -> None:
    res = await run_handler({"tcpSocket": {"port": 8080}}, pod=POD, container=container(), target=TARGET,
                            runtime=rt, clock=FakeClock())
    assert not res.ok
    assert res.message == ("Cannot run handler: invalid handler: &LifecycleHandler{Exec:nil,HTTPGet:nil,"
                           "TCPSocket:&TCPSocketAction{Port:{0 8080 },Host:,},Sleep:nil,}")


async def test_pre_stop_sleep_within_and_past_deadline(rt: FakeRuntime) -> None:
    clock = FakeClock()
    c = container(preStop={"sleep": {"seconds": 5}})
    task = asyncio.create_task(run_pre_stop(pod=POD, container=c, target=TARGET, runtime=rt, clock=clock,
                                            deadline=clock.monotonic() + 30))
    for _ in range(10):
        await asyncio.sleep(0)
    clock.advance(5)
    res = await task
    assert res.ok and res.completed and res.elapsed == 5

    ev = Events()
    c = container(preStop={"sleep": {"seconds": 60}})
    task = asyncio.create_task(run_pre_stop(pod=POD, container=c, target=TARGET, runtime=rt, clock=clock,
                                            deadline=clock.monotonic() + 30, record_event=ev))
    for _ in range(10):
        await asyncio.sleep(0)
    clock.advance(30)
    res = await task
    assert not res.completed and res.elapsed == 30 and ev == []
    assert clock.sleepers == 0


async def test_pre_stop_failure_event_hides_details(rt: FakeRuntime) -> None:
    ev = Events()
    rt.exec_results["c1"] = (2, b"", b"token=secret")
    c = container(preStop={"exec": {"command": ["/stop"]}})
    clock = FakeClock()
    res = await run_pre_stop(pod=POD, container=c, target=TARGET, runtime=rt, clock=clock,
                             deadline=clock.monotonic() + 30, record_event=ev)
    assert not res.ok and res.completed and "exited with 2" in res.message
    assert ev == [("Warning", "FailedPreStopHook", "PreStopHook failed")]
