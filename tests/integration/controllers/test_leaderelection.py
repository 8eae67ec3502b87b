"""Leader election over Leases on the real API server, time moved by a FakeClock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from peapod.client.rest import ApiClient
from peapod.controlplane import manager
from peapod.controlplane.leaderelection import LEASES, LeaderElector
from peapod.testing.clock import FakeClock
from tests.integration.controllers.cluster import eventually, running


def elector(api: ApiClient, clock: FakeClock, identity: str, **kw: object) -> LeaderElector:
    return LeaderElector(
        api,
        name="test-lock",
        identity=identity,
        lease_duration=15,
        renew_deadline=10,
        retry_period=2,
        clock=clock,
        **kw,
    )  # type: ignore[arg-type]


async def tick(clock: FakeClock, seconds: float, step: float = 1.0) -> None:
    """Advance fake time in steps, letting the electors' HTTP round trips happen in between."""
    for _ in range(int(seconds / step)):
        clock.advance(step)
        await asyncio.sleep(0.03)


async def lease(api: ApiClient) -> dict:
    return (await api.get(LEASES, "test-lock", "kube-system"))["spec"]


def test_timing_validation() -> None:
    with pytest.raises(ValueError):
        LeaderElector(
            None,
            name="x",
            identity="a",
            lease_duration=10,
            renew_deadline=10,  # type: ignore[arg-type]
            clock=FakeClock(),
        )
    with pytest.raises(ValueError):
        LeaderElector(
            None,
            name="x",
            identity="a",
            lease_duration=15,
            renew_deadline=2,  # type: ignore[arg-type]
            retry_period=2,
            clock=FakeClock(),
        )


async def test_one_leads_the_other_takes_over_after_lease_duration(api: ApiClient) -> None:
    clock = FakeClock(datetime.now(UTC))
    leading: list[str] = []
    stopped: list[str] = []

    def work(name: str):
        async def lead() -> None:
            leading.append(name)
            await asyncio.Event().wait()

        return lead

    a = elector(api, clock, "a", release_on_cancel=False)  # a crash: no release
    b = elector(api, clock, "b")
    task_a = asyncio.ensure_future(a.run(work("a"), lambda: stopped.append("a")))
    await eventually(lambda: asyncio.sleep(0, leading == ["a"]), what="a leads")
    spec = await lease(api)
    assert spec["holderIdentity"] == "a" and spec["leaseDurationSeconds"] == 15
    assert spec.get("leaseTransitions", 0) == 0
    async with running(b.run(work("b"), lambda: stopped.append("b"))):
        await tick(clock, 20)  # a keeps renewing: b never gets in
        assert leading == ["a"] and (await lease(api))["holderIdentity"] == "a"
        renewed = (await lease(api))["renewTime"]
        assert renewed > spec["renewTime"]
        task_a.cancel()
        await asyncio.gather(task_a, return_exceptions=True)
        assert stopped == ["a"]
        await tick(clock, 10)
        assert leading == ["a"], "b took over before the lease expired"
        await tick(clock, 10)  # 20 s after a's last renewal: expired
        await eventually(lambda: asyncio.sleep(0, leading == ["a", "b"]), what="b leads")
        spec = await lease(api)
        assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
    # b stopped gracefully: the lease is released at once.
    spec = await lease(api)
    assert not spec.get("holderIdentity") and spec["leaseDurationSeconds"] == 1
    assert stopped == ["a", "b"]


async def test_leader_that_cannot_renew_stops_leading(api: ApiClient) -> None:
    clock = FakeClock(datetime.now(UTC))
    a = elector(api, clock, "a")
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def lead() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = asyncio.ensure_future(a.run(lead))
    await asyncio.wait_for(started.wait(), 10)
    # Someone else overwrites the lease (as after a partition): a notices and stops.
    obj = await api.get(LEASES, "test-lock", "kube-system")
    obj["spec"]["holderIdentity"] = "intruder"
    await api.update(LEASES, obj)
    await tick(clock, 4)
    await asyncio.wait_for(task, 10)  # run() returns when leadership is lost
    assert cancelled.is_set() and not a.is_leader()


async def test_run_controllers_only_while_leading(api: ApiClient) -> None:
    clock = FakeClock(datetime.now(UTC))
    runs: list[str] = []

    def factory(name: str):
        async def run() -> None:
            runs.append(f"{name} start")
            try:
                await asyncio.Event().wait()
            finally:
                runs.append(f"{name} stop")

        return run

    first = manager.run_controllers(api, clock=clock, identity="one", factories={"c": factory("one")})
    async with running(first) as (t1,):
        await eventually(lambda: asyncio.sleep(0, runs == ["one start"]), what="one leads")
        lease_obj = (await api.get(LEASES, manager.LEASE_NAME, manager.LEASE_NAMESPACE))["spec"]
        assert lease_obj["holderIdentity"] == "one"
        second = manager.run_controllers(api, clock=clock, identity="two", factories={"c": factory("two")})
        async with running(second):
            await tick(clock, 6)
            assert runs == ["one start"]
            t1.cancel()  # graceful stop of the first manager: released
            await asyncio.gather(t1, return_exceptions=True)
            assert runs[-1] == "one stop"
            await tick(clock, 4)
            await eventually(lambda: asyncio.sleep(0, runs[-1] == "two start"), what="two leads")
