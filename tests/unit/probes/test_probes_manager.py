"""ProbeManager/worker semantics on a FakeClock with a scripted prober (no sockets, no sleeps)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from peapod.node.probes import (
    Outcome,
    ProbeManager,
    ProbeResult,
    ProbeType,
    ProbeUpdate,
    Result,
    Target,
)
from peapod.testing.clock import FakeClock

OK = ProbeResult(Outcome.SUCCESS, "ok")
FAIL500 = ProbeResult(Outcome.FAILURE, "HTTP probe failed with statuscode: 500")


class ScriptedProber:
    """Answers from ``script[(container_id, probe field)]`` (a list consumed in order; the last one
    repeats) or ``default``; records (monotonic time, container id, handler) per call."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[tuple[float, str, str]] = []
        self.script: dict[tuple[str, str], list[ProbeResult]] = {}
        self.default = OK
        self.hook: Callable[[], Any] | None = None

    async def run(self, handler: Any, *, container: Any, target: Target, timeout: float) -> ProbeResult:
        name = handler["exec"]["command"][0]  # tests put the probe field name there
        self.calls.append((self.clock.monotonic(), target.container_id, name))
        if self.hook is not None:
            await self.hook()
        seq = self.script.get((target.container_id, name))
        if not seq:
            return self.default
        return seq.pop(0) if len(seq) > 1 else seq[0]

    def times(self, field: str) -> list[float]:
        return [t for t, _, f in self.calls if f == field]


def probe(field: str, **kw: Any) -> dict[str, Any]:
    return {"exec": {"command": [field]}, **kw}


def make_pod(uid: str = "u1", **containers: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "default", "uid": uid},
        "spec": {"containers": [{"name": n, **c} for n, c in containers.items()]},
    }


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def advance(clock: FakeClock, seconds: float, step: float = 0.5) -> None:
    """Move time in small steps, letting tasks run between them."""
    await settle()
    t = 0.0
    while t < seconds - 1e-9:
        clock.advance(min(step, seconds - t))
        t += step
        await settle()


@pytest.fixture
def env() -> Any:
    clock = FakeClock()
    prober = ScriptedProber(clock)
    events: list[tuple[str, str, str]] = []
    updates: list[ProbeUpdate] = []
    paths: list[str] = []

    def record(pod: Any, t: str, r: str, m: str, *, field_path: str = "") -> None:
        events.append((t, r, m))
        paths.append(field_path)

    mgr = ProbeManager(clock=clock, prober=prober, record_event=record, on_update=updates.append)

    class Env:
        pass

    e = Env()
    e.clock, e.prober, e.events, e.updates, e.mgr, e.paths = clock, prober, events, updates, mgr, paths
    yield e


@pytest.fixture(autouse=True)
async def _cleanup(env: Any) -> Any:
    yield
    await env.mgr.close()


async def test_readiness_starts_false_then_follows_probe_after_initial_delay(env: Any) -> None:
    env.mgr.add_pod(make_pod(app={"readinessProbe": probe("readinessProbe", initialDelaySeconds=5,
                                                            periodSeconds=10)}))
    assert env.mgr.readiness("u1", "app") is False  # no instance yet
    env.mgr.container_running("u1", "app", Target("c1", pod_ip="10.0.0.5"))
    await settle()
    assert env.mgr.readiness("u1", "app") is False
    await advance(env.clock, 4.5)
    assert env.prober.calls == []
    await advance(env.clock, 0.5)
    assert env.prober.times("readinessProbe") == [1005.0]
    assert env.mgr.readiness("u1", "app") is True
    await advance(env.clock, 25)
    assert env.prober.times("readinessProbe") == [1005.0, 1015.0, 1025.0]


async def test_no_probe_means_none(env: Any) -> None:
    env.mgr.add_pod(make_pod(app={}))
    env.mgr.container_running("u1", "app", Target("c1"))
    assert env.mgr.readiness("u1", "app") is None
    assert env.mgr.started("u1", "app") is None
    assert env.mgr.restart_request("u1", "app") is None


async def test_failure_threshold_and_success_threshold(env: Any) -> None:
    env.mgr.add_pod(make_pod(app={"readinessProbe": probe("readinessProbe", periodSeconds=1,
                                                            failureThreshold=3, successThreshold=2)}))
    env.prober.script[("c1", "readinessProbe")] = [
        OK, OK, FAIL500, FAIL500, OK, FAIL500, FAIL500, FAIL500, OK, OK,
    ]
    env.mgr.container_running("u1", "app", Target("c1"))
    await settle()
    seen = []
    for _ in range(10):
        seen.append(env.mgr.readiness("u1", "app"))
        await advance(env.clock, 1)
    # seen[i] is after probe i+1: OK OK -> ready at the 2nd; FAIL FAIL (below 3) OK FAIL FAIL FAIL -> unready
    # at the 8th; OK OK -> ready again at the 10th
    assert seen == [False, True, True, True, True, True, True, False, False, True]
    await advance(env.clock, 1)
    assert env.mgr.readiness("u1", "app") is True
    ready_updates = [u.result for u in env.updates if u.probe == ProbeType.READINESS]
    assert ready_updates == [Result.FAILURE, Result.SUCCESS, Result.FAILURE, Result.SUCCESS]


async def test_liveness_failure_requests_restart_and_holds_until_new_instance(env: Any) -> None:
    env.mgr.add_pod(make_pod(app={"livenessProbe": probe("livenessProbe", periodSeconds=2, failureThreshold=2,
                                                           terminationGracePeriodSeconds=7)}))
    env.prober.default = FAIL500
    env.mgr.container_running("u1", "app", Target("c1", pod_ip="10.0.0.5"))
    await settle()
    assert env.mgr.restart_request("u1", "app") is None  # liveness starts as success
    await advance(env.clock, 2)
    assert env.mgr.restart_request("u1", "app") is not None
    req = env.mgr.restart_request("u1", "app")
    assert req is not None and req.container_id == "c1" and req.probe == ProbeType.LIVENESS
    assert req.grace_period == 7
    assert req.message() == "Container app failed liveness probe, will be restarted"
    assert req.message(False) == "Container app failed liveness probe, will not be restarted"
    assert next(u for u in env.updates if u.needs_restart).container_id == "c1"
    failed = ("Warning", "Unhealthy", "Liveness probe failed: HTTP probe failed with statuscode: 500")
    assert env.events == [failed, failed]
    n = len(env.prober.calls)
    await advance(env.clock, 10)
    assert len(env.prober.calls) == n  # on hold: no probing a container that is being killed
    env.prober.default = OK
    env.mgr.container_stopped("u1", "app")
    env.mgr.container_running("u1", "app", Target("c2", pod_ip="10.0.0.5"))
    await settle()
    assert env.mgr.restart_request("u1", "app") is None
    await advance(env.clock, 4)
    assert [c for _, c, _ in env.prober.calls[n:]] == ["c2", "c2", "c2"]
    assert env.mgr.restart_request("u1", "app") is None


async def test_startup_probe_gates_liveness_and_readiness(env: Any) -> None:
    env.mgr.add_pod(make_pod(app={
        "startupProbe": probe("startupProbe", periodSeconds=1, failureThreshold=30),
        "livenessProbe": probe("livenessProbe", periodSeconds=5),
        "readinessProbe": probe("readinessProbe", periodSeconds=5),
    }))
    env.prober.script[("c1", "startupProbe")] = [FAIL500, FAIL500, FAIL500, OK]
    env.mgr.container_running("u1", "app", Target("c1"))
    await settle()
    assert env.mgr.started("u1", "app") is False
    await advance(env.clock, 2.5)
    assert env.prober.times("livenessProbe") == [] and env.prober.times("readinessProbe") == []
    assert env.mgr.readiness("u1", "app") is False
    await advance(env.clock, 1)
    assert env.prober.times("startupProbe") == [1000.0, 1001.0, 1002.0, 1003.0]
    assert env.mgr.started("u1", "app") is True
    # liveness and readiness start right after startup succeeds, then every period
    assert env.prober.times("readinessProbe") == [1003.0]
    assert env.prober.times("livenessProbe") == [1003.0]
    assert env.mgr.readiness("u1", "app") is True
    await advance(env.clock, 10)
    assert env.prober.times("startupProbe") == [1000.0, 1001.0, 1002.0, 1003.0]  # done for this instance
    assert env.prober.times("readinessProbe") == [1003.0, 1008.0, 1013.0]


async def test_startup_failure_past_threshold_requests_restart(env: Any) -> None:
    env.mgr.add_pod(make_pod(app={
        "startupProbe": probe("startupProbe", periodSeconds=1, failureThreshold=3),
        "livenessProbe": probe("livenessProbe", periodSeconds=1),
    }))
    env.prober.default = FAIL500
    env.mgr.container_running("u1", "app", Target("c1"))
    await advance(env.clock, 3)
    req = env.mgr.restart_request("u1", "app")
    assert req is not None and req.probe == ProbeType.STARTUP
    assert req.message() == "Container app failed startup probe, will be restarted"
    assert env.prober.times("livenessProbe") == []
    assert env.events[0][2] == "Startup probe failed: HTTP probe failed with statuscode: 500"
    assert env.mgr.started("u1", "app") is False


async def test_errored_probe_is_not_counted(env: Any) -> None:
    env.mgr.add_pod(make_pod(app={"livenessProbe": probe("livenessProbe", periodSeconds=1,
                                                           failureThreshold=1)}))
    env.prober.default = ProbeResult(Outcome.UNKNOWN, error='strconv.Atoi: parsing "http": invalid syntax')
    env.mgr.container_running("u1", "app", Target("c1"))
    await advance(env.clock, 3)
    assert env.mgr.restart_request("u1", "app") is None
    assert env.events[0] == ("Warning", "Unhealthy",
                             'Liveness probe errored: strconv.Atoi: parsing "http": invalid syntax')


async def test_warning_counts_as_success_with_event(env: Any) -> None:
    env.mgr.add_pod(make_pod(app={"readinessProbe": probe("readinessProbe")}))
    env.prober.default = ProbeResult(Outcome.WARNING, "Probe terminated redirects, Response body: moved")
    env.mgr.container_running("u1", "app", Target("c1"))
    await settle()
    assert env.mgr.readiness("u1", "app") is True
    assert env.events == [("Warning", "ProbeWarning",
                           "Readiness probe warning: Probe terminated redirects, Response body: moved")]


async def test_container_stopped_makes_unready_and_idles(env: Any) -> None:
    env.mgr.add_pod(make_pod(app={"readinessProbe": probe("readinessProbe", periodSeconds=1)}))
    env.mgr.container_running("u1", "app", Target("c1"))
    await settle()
    assert env.mgr.readiness("u1", "app") is True
    env.mgr.container_stopped("u1", "app")
    assert env.mgr.readiness("u1", "app") is False
    n = len(env.prober.calls)
    await advance(env.clock, 5)
    assert len(env.prober.calls) == n


async def test_pod_terminating_stops_liveness_keeps_readiness(env: Any) -> None:
    env.mgr.add_pod(make_pod(app={"livenessProbe": probe("livenessProbe", periodSeconds=1,
                                                           failureThreshold=5),
                                  "readinessProbe": probe("readinessProbe", periodSeconds=1)}))
    env.prober.default = FAIL500
    env.mgr.container_running("u1", "app", Target("c1"))
    await advance(env.clock, 2)
    pod = make_pod(app={})
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    env.mgr.update_pod(pod)
    n_live = len(env.prober.times("livenessProbe"))
    n_ready = len(env.prober.times("readinessProbe"))
    await advance(env.clock, 10)
    assert len(env.prober.times("livenessProbe")) == n_live
    assert len(env.prober.times("readinessProbe")) > n_ready
    assert env.mgr.restart_request("u1", "app") is None


async def test_result_discarded_when_container_changes_mid_probe(env: Any) -> None:
    env.mgr.add_pod(make_pod(app={"readinessProbe": probe("readinessProbe", periodSeconds=10)}))
    gate = asyncio.Event()

    async def hold() -> None:
        await gate.wait()

    env.prober.hook = hold
    env.prober.script[("c2", "readinessProbe")] = [FAIL500]
    env.mgr.container_running("u1", "app", Target("c1"))
    await settle()
    assert len(env.prober.calls) == 1  # in flight for c1
    env.mgr.container_stopped("u1", "app")
    env.mgr.container_running("u1", "app", Target("c2"))
    env.prober.hook = None
    gate.set()
    await settle()
    assert env.mgr.readiness("u1", "app") is False  # c1's success must not mark c2 ready
    assert [c for _, c, _ in env.prober.calls] == ["c1", "c2"]
    env.prober.script[("c2", "readinessProbe")] = [OK]
    await advance(env.clock, 10)
    assert env.mgr.readiness("u1", "app") is True


async def test_sidecar_init_containers_are_probed_and_remove_pod_stops_workers(env: Any) -> None:
    pod = make_pod(app={"readinessProbe": probe("readinessProbe")})
    pod["spec"]["initContainers"] = [
        {"name": "side", "restartPolicy": "Always", "readinessProbe": probe("readinessProbe")},
        {"name": "init", "readinessProbe": probe("readinessProbe")},  # not a sidecar: never probed
    ]
    env.mgr.add_pod(pod)
    env.mgr.add_pod(pod)  # idempotent
    assert env.mgr.worker_stats()["workers"] == 2
    env.prober.default = FAIL500
    env.mgr.container_running("u1", "side", Target("s1"))
    env.mgr.container_running("u1", "app", Target("a1"))
    await settle()
    assert env.paths == ["spec.initContainers{side}", "spec.containers{app}"]
    env.prober.default = OK
    await advance(env.clock, 10)
    assert env.mgr.readiness("u1", "side") is True
    assert env.mgr.readiness("u1", "init") is None
    await env.mgr.remove_pod("u1")
    assert env.mgr.worker_stats()["workers"] == 0
    assert env.clock.sleepers == 0
    assert env.mgr.readiness("u1", "side") is None


async def test_same_container_id_again_is_a_refresh(env: Any) -> None:
    env.mgr.add_pod(make_pod(app={"readinessProbe": probe("readinessProbe", periodSeconds=10)}))
    env.mgr.container_running("u1", "app", Target("c1"))
    await settle()
    env.mgr.container_running("u1", "app", Target("c1", pod_ip="10.0.0.9"))
    await settle()
    assert len(env.prober.calls) == 1
    assert env.mgr.readiness("u1", "app") is True


async def test_jitter_on_agent_restart_spreads_first_probes() -> None:
    import random

    clock = FakeClock()
    prober = ScriptedProber(clock)
    mgr = ProbeManager(clock=clock, prober=prober, rng=random.Random(4))
    try:
        mgr.add_pod(make_pod(app={"readinessProbe": probe("readinessProbe", periodSeconds=10)}))
        # the container has been running since before the agent (re)started
        mgr.container_running("u1", "app", Target("c1"), started_at=clock.monotonic() - 100)
        await advance(clock, 10)
        (t,) = prober.times("readinessProbe")
        assert 1000.0 < t < 1010.0
    finally:
        await mgr.close()
