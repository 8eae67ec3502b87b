"""The scheduling queue (kube's PriorityQueue, coarsely): activeQ, backoffQ, unschedulable pods.

- New pods enter activeQ, ordered by priority (high first), then arrival.
- A pod that failed waits in ``unschedulable`` until a cluster event that may help it (judged by
  the plugins that rejected it: a coarse QueueingHint) moves it to backoffQ; if an event arrived
  while it was being scheduled it goes to backoffQ at once. Pods left unschedulable for 5 minutes
  are retried anyway.
- backoffQ releases a pod when its backoff ends: 1 s after the first attempt, doubling to 10 s.
  Like kube 1.33 (SchedulerPopFromBackoffQ), an idle activeQ pops event-moved pods from backoffQ
  early; pods backing off after an error always wait.
- Pods with scheduling gates stay out of the queues until an update removes the gates.

Time comes from the injected clock, so tests drive backoff with a FakeClock.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from peapod.clock import Clock

Obj = dict[str, Any]
ALL_PLUGINS = frozenset({
    "NodeUnschedulable", "NodeName", "TaintToleration", "NodeAffinity", "NodePorts", "NodeResourcesFit",
    "PodTopologySpread", "InterPodAffinity",
})
# Cluster events and the plugins whose rejections they may resolve.
EVENT_PLUGINS: dict[str, frozenset[str]] = {
    "NodeAdd": ALL_PLUGINS,
    "NodeLabel": frozenset({"NodeAffinity", "InterPodAffinity", "PodTopologySpread"}),
    "NodeTaint": frozenset({"TaintToleration", "NodeUnschedulable", "PodTopologySpread"}),
    "NodeAllocatable": frozenset({"NodeResourcesFit"}),
    "NodeCondition": frozenset({"TaintToleration"}),
    "AssignedPodAdd": frozenset({"InterPodAffinity", "PodTopologySpread"}),
    "AssignedPodLabel": frozenset({"InterPodAffinity", "PodTopologySpread"}),
    "AssignedPodDelete": frozenset({
        "NodeResourcesFit", "NodePorts", "InterPodAffinity", "PodTopologySpread",
    }),
    "NamespaceLabel": frozenset({"InterPodAffinity"}),
}


@dataclass(eq=False)
class QueuedPod:
    key: str
    pod: Obj
    priority: int = 0
    attempts: int = 0
    timestamp: float = 0.0  # when it last entered a queue (backoff is counted from here)
    initial_timestamp: float = 0.0
    cycle: int = 0  # scheduling cycle of its last pop
    plugins: frozenset[str] = field(default_factory=frozenset)  # plugins that rejected it last
    error: bool = False  # last attempt failed with an error, not a rejection
    moved: bool = False  # in backoffQ because of a cluster event


def backoff_duration(attempts: int, initial: float, maximum: float) -> float:
    d = initial
    for _ in range(1, max(attempts, 1)):
        if d > maximum - d:
            return maximum
        d += d
    return min(d, maximum)


class SchedulingQueue:
    def __init__(
        self, *, clock: Clock, initial_backoff: float = 1.0, max_backoff: float = 10.0,
        max_unschedulable_seconds: float = 300.0, pop_from_backoff: bool = True,
    ) -> None:
        self.clock = clock
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_unschedulable = max_unschedulable_seconds
        self.pop_from_backoff = pop_from_backoff
        self._seq = itertools.count()
        self._active: list[tuple[int, int, str]] = []  # heap of (-priority, seq, key)
        self._active_pods: dict[str, QueuedPod] = {}
        self.backoff: dict[str, QueuedPod] = {}
        self.unschedulable: dict[str, QueuedPod] = {}
        self.gated: dict[str, QueuedPod] = {}
        self.in_flight: dict[str, QueuedPod] = {}
        self.scheduling_cycle = 0
        self.move_request_cycle = -1
        self._wakeup = asyncio.Event()

    # -- introspection ------------------------------------------------------------------------
    def __contains__(self, key: str) -> bool:
        return any(key in d for d in (self._active_pods, self.backoff, self.unschedulable, self.gated,
                                      self.in_flight))

    @property
    def active(self) -> list[str]:
        return [k for _, _, k in sorted(self._active) if k in self._active_pods]

    def where(self, key: str) -> str | None:
        for name, d in (("active", self._active_pods), ("backoff", self.backoff),
                        ("unschedulable", self.unschedulable), ("gated", self.gated),
                        ("in_flight", self.in_flight)):
            if key in d:
                return name
        return None

    # -- adding and updating ------------------------------------------------------------------
    def add(self, key: str, pod: Obj) -> None:
        """A new (or newly our) pending pod: straight to activeQ, or to the gated set."""
        if key in self:
            self.update(key, pod)
            return
        now = self.clock.monotonic()
        qp = QueuedPod(key, pod, _priority(pod), timestamp=now, initial_timestamp=now)
        if _gated(pod):
            self.gated[key] = qp
        else:
            self._push_active(qp)

    def update(self, key: str, pod: Obj) -> None:
        for d in (self._active_pods, self.backoff, self.in_flight):
            qp = d.get(key)
            if qp is not None:
                qp.pod = pod
                return
        qp = self.gated.get(key)
        if qp is not None:
            qp.pod = pod
            if not _gated(pod):
                del self.gated[key]
                qp.timestamp = self.clock.monotonic()
                self._push_active(qp)
            return
        qp = self.unschedulable.get(key)
        if qp is not None:
            changed = _scheduling_relevant(qp.pod) != _scheduling_relevant(pod)
            qp.pod = pod
            if changed:  # the pod itself changed in a way that may make it schedulable
                del self.unschedulable[key]
                self._to_backoff(qp, moved=True)
            return
        self.add(key, pod)

    def delete(self, key: str) -> None:
        for d in (self._active_pods, self.backoff, self.unschedulable, self.gated, self.in_flight):
            d.pop(key, None)

    def _push_active(self, qp: QueuedPod) -> None:
        self._active_pods[qp.key] = qp
        heapq.heappush(self._active, (-qp.priority, next(self._seq), qp.key))
        self._wakeup.set()

    def _to_backoff(self, qp: QueuedPod, *, moved: bool) -> None:
        qp.moved = moved
        if self.backoff_expiry(qp) <= self.clock.monotonic():
            self._push_active(qp)
        else:
            self.backoff[qp.key] = qp
            self._wakeup.set()

    def backoff_expiry(self, qp: QueuedPod) -> float:
        return qp.timestamp + backoff_duration(qp.attempts, self.initial_backoff, self.max_backoff)

    # -- results of a scheduling attempt ------------------------------------------------------
    def done(self, key: str) -> None:
        """The pod was bound (or dropped): forget it."""
        self.in_flight.pop(key, None)

    def add_unschedulable(self, qp: QueuedPod, plugins: Iterable[str] = ()) -> None:
        """The pod was rejected by ``plugins`` (empty: any cluster event may help)."""
        if self.in_flight.pop(qp.key, None) is None:
            return  # deleted (or bound elsewhere) while being scheduled
        qp.plugins = frozenset(plugins)
        qp.error = False
        qp.timestamp = self.clock.monotonic()
        if self.move_request_cycle >= qp.cycle:
            self._to_backoff(qp, moved=True)
        else:
            self.unschedulable[qp.key] = qp

    def add_error(self, qp: QueuedPod) -> None:
        """The attempt failed with an error (e.g. the binding): retry after the backoff."""
        if self.in_flight.pop(qp.key, None) is None:
            return
        qp.error = True
        qp.timestamp = self.clock.monotonic()
        self._to_backoff(qp, moved=False)

    # -- cluster events -----------------------------------------------------------------------
    def move_for_event(self, event: str) -> int:
        """Move unschedulable pods that ``event`` may help; returns how many moved."""
        plugins = EVENT_PLUGINS.get(event, ALL_PLUGINS)
        self.move_request_cycle = self.scheduling_cycle
        moving = [qp for qp in self.unschedulable.values() if not qp.plugins or qp.plugins & plugins]
        for qp in moving:
            del self.unschedulable[qp.key]
            self._to_backoff(qp, moved=True)
        return len(moving)

    # -- popping ------------------------------------------------------------------------------
    def _flush(self) -> float | None:
        """Release due pods; returns the monotonic time of the next deadline, if any."""
        now = self.clock.monotonic()
        nxt: float | None = None
        for qp in list(self.backoff.values()):
            t = self.backoff_expiry(qp)
            if t <= now:
                del self.backoff[qp.key]
                self._push_active(qp)
            else:
                nxt = t if nxt is None else min(nxt, t)
        for qp in list(self.unschedulable.values()):
            t = qp.timestamp + self.max_unschedulable
            if t <= now:
                del self.unschedulable[qp.key]
                self._to_backoff(qp, moved=True)
            else:
                nxt = t if nxt is None else min(nxt, t)
        return nxt

    def try_pop(self) -> QueuedPod | None:
        self._flush()
        while self._active:
            _, _, key = heapq.heappop(self._active)
            qp = self._active_pods.pop(key, None)
            if qp is not None:
                return self._start(qp)
        if self.pop_from_backoff:
            moved = [qp for qp in self.backoff.values() if qp.moved]
            if moved:
                qp = min(moved, key=lambda q: (-q.priority, self.backoff_expiry(q)))
                del self.backoff[qp.key]
                return self._start(qp)
        return None

    def _start(self, qp: QueuedPod) -> QueuedPod:
        self.scheduling_cycle += 1
        qp.cycle = self.scheduling_cycle
        qp.attempts += 1
        self.in_flight[qp.key] = qp
        return qp

    async def pop(self) -> QueuedPod:
        """Wait for the next pod to schedule."""
        while True:
            self._wakeup.clear()
            qp = self.try_pop()
            if qp is not None:
                return qp
            deadline = self._flush()
            waiter = asyncio.ensure_future(self._wakeup.wait())
            timer = None
            if deadline is not None:
                timer = asyncio.ensure_future(self.clock.sleep(max(deadline - self.clock.monotonic(), 0.0)))
            try:
                await asyncio.wait([t for t in (waiter, timer) if t is not None],
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                if timer is not None:
                    timer.cancel()


def _priority(pod: Obj) -> int:
    try:
        return int((pod.get("spec") or {}).get("priority") or 0)
    except (TypeError, ValueError):
        return 0


def _gated(pod: Obj) -> bool:
    return bool((pod.get("spec") or {}).get("schedulingGates"))


def _scheduling_relevant(pod: Obj) -> tuple[Any, ...]:
    """The parts of a pending pod whose change may make it schedulable (kube's isPodUpdated, roughly)."""
    md = pod.get("metadata") or {}
    spec = dict(pod.get("spec") or {})
    return (md.get("labels"), md.get("annotations"), spec)
