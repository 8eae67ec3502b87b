"""One probe worker: an asyncio task per (pod, container, probe type), on the injected clock.

Lifecycle of a worker (kubelet's prober worker, with exact timing instead of a free-running ticker)::

    idle --container_running(new id)--> waiting --started_at+initialDelay--> probing --period--> probing
      ^                                    |  (liveness/readiness also wait for the startup probe)  |
      +--- container stopped / on hold (liveness or startup failed past threshold; startup succeeded)
    stop(): the task ends (pod removed)

Each run's outcome is counted like kubelet's doProbe: ``successThreshold`` successes in a row (or
``failureThreshold`` failures) set the cached result; a liveness failure or any startup verdict puts
the worker on hold until the next container instance. A run that could not execute (bad port,
missing handler) is reported as "probe errored" and not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from peapod.node.probes.types import Outcome, ProbeResult, ProbeSpec, ProbeType, Result, Target

if TYPE_CHECKING:
    from peapod.node.probes.manager import ProbeManager

LATE = 1.0  # seconds

INITIAL = {
    ProbeType.READINESS: Result.FAILURE,
    ProbeType.LIVENESS: Result.SUCCESS,
    ProbeType.STARTUP: Result.UNKNOWN,
}


@dataclass
class ContainerSlot:
    """What the agent told us about a container's current instance (shared by its workers)."""

    name: str
    spec: Mapping[str, Any]
    target: Target | None = None
    started_at: float = 0.0  # clock.monotonic() of the instance's start
    running: bool = False
    seen_at_manager_start: bool = False


class Worker:
    def __init__(
        self, manager: ProbeManager, pod_uid: str, slot: ContainerSlot, probe_type: ProbeType,
        spec: ProbeSpec, jitter: Callable[[float], float] | None,
    ) -> None:
        self.m = manager
        self.pod_uid = pod_uid
        self.slot = slot
        self.type = probe_type
        self.spec = spec
        self._jitter = jitter
        self.on_hold = False
        self.stopped = False  # pod terminating (liveness/startup) -- no more probing
        self.last: Result | None = None
        self.run_length = 0
        self.next_due = float("-inf")
        self.instance: str | None = None
        self.probes_run = 0
        self._wake = asyncio.Event()
        self._sleeping: asyncio.Future | None = None
        self.task: asyncio.Task | None = None

    # -- control, called by the manager --------------------------------------------------------------
    def start(self) -> None:
        name = f"probe-{self.type}-{self.pod_uid}-{self.slot.name}"
        self.task = asyncio.create_task(self._run(), name=name)

    def wake(self) -> None:
        self._wake.set()
        if self._sleeping is not None and not self._sleeping.done():
            self._sleeping.cancel()

    def new_instance(self, container_id: str) -> None:
        self.instance = container_id
        self.on_hold = False
        self.last = None
        self.run_length = 0
        self.next_due = float("-inf")
        now = self.m.clock.monotonic()
        if self._jitter is not None and self.slot.seen_at_manager_start \
                and now - self.m._started_at < self.spec.period:
            # Agent restart: spread the first probes of already-running containers over one period.
            self.next_due = now + self._jitter(self.spec.period)
        self.m._set_result(self, container_id, INITIAL[self.type])
        self.wake()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    # -- the loop ------------------------------------------------------------------------------------
    def _can_probe(self) -> bool:
        s = self.slot
        if self.stopped or self.on_hold or not s.running or s.target is None:
            return False
        if s.target.container_id != self.instance:
            return False
        return self.type == ProbeType.STARTUP or self.m._started_ok(self.pod_uid, s.name, self.instance)

    async def _run(self) -> None:
        clock = self.m.clock
        while True:
            if not self._can_probe():
                await self._wake.wait()
                self._wake.clear()
                continue
            now = clock.monotonic()
            due = max(self.next_due, self.slot.started_at + self.spec.initial_delay)
            if due > now:
                self._wake.clear()
                self._sleeping = asyncio.ensure_future(clock.sleep(due - now))
                try:
                    await asyncio.wait([self._sleeping])
                finally:
                    self._sleeping.cancel()
                    self._sleeping = None
                continue
            # Like a ticker (no drift from timer latency): the next run is one period after this one was
            # due; a run that starts late (it was gated by the startup probe, or the loop was busy)
            # re-anchors the schedule at now.
            late = now - due > LATE
            self.next_due = (now if late else due) + self.spec.period
            await self._probe_once()

    async def _probe_once(self) -> None:
        target = self.slot.target
        assert target is not None
        instance = target.container_id
        try:
            res = await self.m.prober.run(self.spec.handler, container=self.slot.spec, target=target,
                                          timeout=self.spec.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug in a handler must not kill the worker
            res = ProbeResult(Outcome.UNKNOWN, error=f"{type(e).__name__}: {e}")
        self.probes_run += 1
        if instance != self.instance or not self.slot.running or self.stopped:
            return  # the container changed while probing: throw the result away
        await self._record(res)
        self._count(Result.SUCCESS if res.ok else Result.FAILURE, res)

    async def _record(self, res: ProbeResult) -> None:
        name = str(self.type)
        if res.error is not None:
            await self.m._event("Warning", "Unhealthy", f"{name} probe errored: {res.error}", self)
        elif res.outcome == Outcome.WARNING:
            await self.m._event("Warning", "ProbeWarning", f"{name} probe warning: {res.output}", self)
        elif res.outcome == Outcome.FAILURE:
            await self.m._event("Warning", "Unhealthy", f"{name} probe failed: {res.output}", self)

    def _count(self, result: Result, res: ProbeResult) -> None:
        if res.error is not None:
            return  # kubelet throws errored results away
        if self.last == result:
            self.run_length += 1
        else:
            self.last = result
            self.run_length = 1
        if (result == Result.FAILURE and self.run_length < self.spec.failure_threshold) or (
            result == Result.SUCCESS and self.run_length < self.spec.success_threshold
        ):
            return
        assert self.instance is not None
        self.m._set_result(self, self.instance, result)
        if (self.type == ProbeType.LIVENESS and result == Result.FAILURE) or self.type == ProbeType.STARTUP:
            self.on_hold = True
            self.run_length = 0
