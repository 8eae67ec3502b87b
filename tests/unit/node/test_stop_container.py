"""Stopping a container (kubelet's killContainer) on a FakeClock: preStop first, the grace counted from
its start, at least 2 s for the signal, the image's stop signal, and a later shorter delete (or a
forced removal) cutting a stop in progress short with SIGKILL."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest

from peapod.node.runtime.types import ContainerStatus
from peapod.node.statusmanager import StatusManager
from peapod.node.sync import Deadline, NodeInfo, PodExecutor
from peapod.testing.clock import FakeClock
from peapod.testing.fakes_images import FakeImageService
from peapod.testing.fakes_node import FakeSandboxes
from peapod.testing.fakes_runtime import FakePodNetwork, FakeRuntime

UID = "0b6c6a1e-0000-4000-8000-000000000001"
CID = f"{UID}-c-0"


class StubbornRuntime(FakeRuntime):
    """``stop`` of a container in ``ignore_sigterm`` lasts until its timeout passes on the clock (then
    SIGKILL, exit 137) or until a SIGKILL is sent meanwhile."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.sigkilled: dict[str, asyncio.Event] = {}

    async def stop(self, container_id: str, timeout: float, signal: int = signal.SIGTERM) -> None:
        self._record("stop", container_id, timeout, signal)
        st = self._get(container_id)
        if st.status not in (ContainerStatus.RUNNING, ContainerStatus.CREATED):
            return
        if container_id in self.ignore_sigterm:
            ev = self.sigkilled.setdefault(container_id, asyncio.Event())
            timer = asyncio.ensure_future(self.clock.sleep(timeout))
            killed = asyncio.ensure_future(ev.wait())
            try:
                await asyncio.wait([timer, killed], return_when=asyncio.FIRST_COMPLETED)
            finally:
                timer.cancel()
                killed.cancel()
            if st.status == ContainerStatus.RUNNING:
                self.exit(container_id, 137)
        else:
            self.exit(container_id, 128 + int(signal))

    async def kill(self, container_id: str, signal: int) -> None:
        await super().kill(container_id, signal)
        if signal == 9:
            self.sigkilled.setdefault(container_id, asyncio.Event()).set()


class Env:
    def __init__(self, tmp: Path) -> None:
        self.clock = FakeClock()
        self.runtime = StubbornRuntime(self.clock)
        self.ex = PodExecutor(
            data_dir=tmp, runtime=self.runtime, sandboxes=FakeSandboxes(tmp), network=FakePodNetwork(),
            images=FakeImageService(rootfs_dir=tmp / "rootfs"), client=None,  # type: ignore[arg-type]
            status=StatusManager(None, clock=self.clock),  # type: ignore[arg-type]
            clock=self.clock, node=NodeInfo(node_name="n"),
        )

    async def running(self, *, stubborn: bool = True, stop_signal: str = "") -> None:
        self.ex._write_record(UID, {"id": CID, "name": "c", "attempt": 0, "stop_signal": stop_signal})
        await self.runtime.create(CID, "bundle", "log")
        await self.runtime.start(CID)
        if stubborn:
            self.runtime.ignore_sigterm.add(CID)

    def stops(self) -> list[tuple[Any, ...]]:
        return [c.args[1:] for c in self.runtime.called("stop")]

    def sigkills(self) -> int:
        return sum(1 for c in self.runtime.called("kill") if c.args[1] == signal.SIGKILL)


def the_pod(*, grace: int = 30, lifecycle: dict[str, Any] | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"name": "c", "image": "busybox"}
    if lifecycle:
        c["lifecycle"] = lifecycle
    return {"metadata": {"name": "p", "namespace": "ns", "uid": UID},
            "spec": {"containers": [c], "terminationGracePeriodSeconds": grace}}


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


async def test_grace_then_sigkill_with_the_image_stop_signal(env: Env) -> None:
    await env.running(stop_signal="SIGQUIT")
    task = asyncio.create_task(env.ex._stop_tracked(the_pod(), CID, "c", Deadline(env.clock, 5)))
    await settle()
    assert env.stops() == [(5.0, signal.SIGQUIT)]
    env.clock.advance(4.9)
    await settle()
    assert not task.done()
    env.clock.advance(0.2)
    await asyncio.wait_for(task, 1)
    assert env.runtime.containers[CID].exit_code == 137


async def test_shorter_delete_shortens_a_stop_in_progress(env: Env) -> None:
    await env.running()
    task = asyncio.create_task(env.ex._stop_tracked(the_pod(), CID, "c", Deadline(env.clock, 30)))
    await settle()
    env.clock.advance(1)
    env.ex.shorten_grace(UID, 5)  # e.g. kubectl delete --grace-period=5 while stopping with 30
    await settle()
    env.clock.advance(4.9)
    await settle()
    assert not task.done() and env.sigkills() == 0
    env.clock.advance(0.2)
    await asyncio.wait_for(task, 1)
    assert env.sigkills() == 1
    env.ex.shorten_grace(UID, 0)  # nothing in progress any more: no effect, no error


async def test_forced_removal_kills_at_once(env: Env) -> None:
    await env.running()
    task = asyncio.create_task(env.ex._stop_tracked(the_pod(), CID, "c", Deadline(env.clock, 120)))
    await settle()
    env.ex.shorten_grace(UID, 0)
    await asyncio.wait_for(task, 1)
    assert env.sigkills() == 1
    assert env.runtime.containers[CID].status == ContainerStatus.STOPPED


async def test_longer_grace_never_lengthens(env: Env) -> None:
    await env.running()
    task = asyncio.create_task(env.ex._stop_tracked(the_pod(), CID, "c", Deadline(env.clock, 3)))
    await settle()
    env.ex.shorten_grace(UID, 60)
    env.clock.advance(3.1)
    await asyncio.wait_for(task, 1)


async def test_pre_stop_runs_first_and_grace_counts_from_its_start(env: Env) -> None:
    await env.running()
    pod = the_pod(lifecycle={"preStop": {"sleep": {"seconds": 3}}})
    task = asyncio.create_task(env.ex._stop_tracked(pod, CID, "c", Deadline(env.clock, 10)))
    await settle()
    assert env.stops() == []  # the hook is running
    env.clock.advance(3)
    await settle()
    assert env.stops() == [(7.0, signal.SIGTERM)]
    env.clock.advance(7.1)
    await asyncio.wait_for(task, 1)


async def test_pre_stop_cut_at_the_deadline_keeps_two_seconds_for_the_signal(env: Env) -> None:
    await env.running()
    pod = the_pod(lifecycle={"preStop": {"sleep": {"seconds": 60}}})
    task = asyncio.create_task(env.ex._stop_tracked(pod, CID, "c", Deadline(env.clock, 4)))
    await settle()
    env.clock.advance(4)
    await settle()
    assert env.stops() == [(2.0, signal.SIGTERM)]  # kubelet's minimum after a long preStop
    env.clock.advance(2.1)
    await asyncio.wait_for(task, 1)


async def test_pre_stop_exec_runs_in_the_container_before_the_signal(env: Env) -> None:
    await env.running(stubborn=False)
    pod = the_pod(lifecycle={"preStop": {"exec": {"command": ["/bin/save-state"]}}})
    await asyncio.wait_for(env.ex._stop_tracked(pod, CID, "c", Deadline(env.clock, 10)), 10)
    methods = [c.method for c in env.runtime.calls if c.method in ("exec", "stop")]
    assert methods == ["exec", "stop"]
    assert env.runtime.called("exec")[0].args == (CID, ("/bin/save-state",))
    assert env.runtime.containers[CID].exit_code == 143


async def test_forced_stop_skips_pre_stop(env: Env) -> None:
    await env.running(stubborn=False)
    pod = the_pod(lifecycle={"preStop": {"exec": {"command": ["/bin/save-state"]}}})
    await asyncio.wait_for(env.ex._stop_tracked(pod, CID, "c", Deadline(env.clock, 0)), 5)
    assert env.runtime.called("exec") == []
    assert env.stops() == [(0.0, signal.SIGTERM)]


async def test_stopped_container_is_left_alone(env: Env) -> None:
    await env.running(stubborn=False)
    env.runtime.exit(CID, 0)
    await env.ex._stop_tracked(the_pod(), CID, "c", Deadline(env.clock, 5))
    assert env.stops() == [] and env.runtime.containers[CID].exit_code == 0
