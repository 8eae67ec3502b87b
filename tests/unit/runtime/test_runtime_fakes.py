"""The fakes agent tests will lean on behave like the real boundary."""

from __future__ import annotations

import signal

import pytest

from peapod.node.network.types import NetworkError, PortMapping
from peapod.node.runtime.types import ContainerNotFound, ContainerRuntimeError, ContainerStatus
from peapod.testing.clock import FakeClock
from peapod.testing.fakes_runtime import FakePodNetwork, FakeRuntime


async def test_fake_runtime_lifecycle() -> None:
    clock = FakeClock()
    rt = FakeRuntime(clock)
    await rt.create("c1", "/b", "/l")
    assert (await rt.state("c1")).status == ContainerStatus.CREATED
    await rt.start("c1")
    clock.advance(5)
    rt.exit("c1", 0)
    st = await rt.state("c1")
    assert st.status == ContainerStatus.STOPPED and st.exit_code == 0 and st.reason == "Completed"
    assert (st.finished_at - st.started_at).total_seconds() == 5
    await rt.create("c2", "/b", "/l")
    await rt.start("c2")
    rt.exit("c2", 137, oom=True)
    assert (await rt.state("c2")).reason == "OOMKilled"
    await rt.remove("c1")
    with pytest.raises(ContainerNotFound):
        await rt.state("c1")
    assert [s.id for s in await rt.list()] == ["c2"]
    assert [c.method for c in rt.calls][:3] == ["create", "state", "start"]


async def test_fake_runtime_stop_and_failures() -> None:
    rt = FakeRuntime(FakeClock())
    for cid in ("polite", "stubborn"):
        await rt.create(cid, "/b", "/l")
        await rt.start(cid)
    rt.ignore_sigterm.add("stubborn")
    await rt.stop("polite", 30)
    await rt.stop("stubborn", 30)
    assert (await rt.state("polite")).exit_code == 128 + signal.SIGTERM
    assert (await rt.state("stubborn")).exit_code == 137
    rt.fail("create")
    with pytest.raises(ContainerRuntimeError):
        await rt.create("c3", "/b", "/l")
    await rt.create("c3", "/b", "/l")  # only once
    with pytest.raises(ContainerRuntimeError):
        await rt.create("c3", "/b", "/l")  # duplicate


async def test_fake_exec() -> None:
    rt = FakeRuntime(FakeClock())
    await rt.create("c", "/b", "/l")
    with pytest.raises(ContainerRuntimeError):
        await rt.exec("c", ["true"])
    await rt.start("c")
    rt.exec_results["c"] = (3, b"out", b"err")
    p = await rt.exec("c", ["anything"])
    out, err = await p.process.communicate()
    assert (p.process.returncode, out, err) == (3, b"out", b"err")


async def test_fake_network() -> None:
    net = FakePodNetwork("10.77.0.0/24")
    a = await net.setup("a", "/ns/a", [PortMapping(80, 8080)])
    b = await net.setup("b", "/ns/b")
    assert a.ips == ["10.77.0.2"] and b.ips == ["10.77.0.3"] and a.gateway == "10.77.0.1"
    assert await net.setup("a", "/ns/a") == a  # idempotent per pod
    await net.check("a", "/ns/a")
    await net.teardown("a", "/ns/a")
    assert net.status("a") is None
    with pytest.raises(NetworkError):
        await net.check("a", "/ns/a")
    net.fail("setup", times=2)
    for _ in range(2):
        with pytest.raises(NetworkError):
            await net.setup("c", "/ns/c")
    assert (await net.setup("c", "/ns/c")).ips
    assert len(net.called("teardown")) == 1
