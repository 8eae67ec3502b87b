"""The prober manager: probe workers per pod, and the results cache the agent reads.

The agent drives it with facts (``add_pod``, ``container_running``, ``container_stopped``,
``pod_terminating``, ``remove_pod``) and reads verdicts level-triggered (``readiness``, ``started``,
``restart_request``) when it computes a pod's status or actions. ``on_update`` is the edge trigger:
it is called (synchronously, on the loop) whenever a cached result changes, so the agent can
re-sync that pod -- e.g. restart a container whose liveness probe failed.

Kubelet semantics kept: readiness starts as failure, liveness as success, startup as unknown for
each new container instance; liveness and readiness are not probed until the startup probe has
succeeded; restartable init containers (sidecars) are probed too; once a pod is terminating its
liveness and startup probes stop (results forced to success) while readiness goes on.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from peapod.clock import Clock
from peapod.node.probes.types import ProbeResult, ProbeSpec, ProbeType, Result, Target
from peapod.node.probes.worker import ContainerSlot, Worker

Obj = Mapping[str, Any]


class ProberLike(Protocol):
    async def run(self, handler: Obj, *, container: Obj, target: Target, timeout: float) -> ProbeResult: ...


class RecordEvent(Protocol):
    """``record_event(pod, type, reason, message, field_path=...)`` -- EventRecorder.record's shape.

    ``field_path`` names the container ("spec.containers{app}") as kubelet's events do. The result
    may be an awaitable (it is awaited)."""

    def __call__(self, pod: Obj, type_: str, reason: str, message: str, *, field_path: str = "") -> Any: ...


def field_path(pod: Obj, container: str) -> str:
    """kubelet's container reference: spec.containers{name} or spec.initContainers{name}."""
    for c in (pod.get("spec") or {}).get("initContainers") or ():
        if c.get("name") == container:
            return f"spec.initContainers{{{container}}}"
    return f"spec.containers{{{container}}}"


@dataclass(frozen=True)
class ProbeUpdate:
    """A change in the results cache."""

    pod_uid: str
    container: str
    container_id: str
    probe: ProbeType
    result: Result

    @property
    def needs_restart(self) -> bool:
        """A liveness or startup failure: the agent must kill (and per restartPolicy restart) it."""
        return self.result == Result.FAILURE and self.probe in (ProbeType.LIVENESS, ProbeType.STARTUP)


@dataclass(frozen=True)
class RestartRequest:
    """Why and how to kill a container that failed its liveness or startup probe."""

    pod_uid: str
    container: str
    container_id: str
    probe: ProbeType
    grace_period: int | None  # probe-level terminationGracePeriodSeconds, overrides the pod's

    def message(self, will_restart: bool = True) -> str:
        """kubelet's Killing event text ("Container app failed liveness probe, will be restarted")."""
        kind = "liveness" if self.probe == ProbeType.LIVENESS else "startup"
        return (f"Container {self.container} failed {kind} probe, "
                f"{'will be restarted' if will_restart else 'will not be restarted'}")


def probed_containers(pod: Obj) -> list[Obj]:
    """Containers that get probe workers: regular ones and restartable init containers (sidecars)."""
    spec = pod.get("spec") or {}
    sidecars = [c for c in spec.get("initContainers") or () if c.get("restartPolicy") == "Always"]
    return [*sidecars, *(spec.get("containers") or ())]


class ProbeManager:
    def __init__(
        self,
        *,
        clock: Clock,
        prober: ProberLike,
        record_event: RecordEvent | None = None,
        on_update: Callable[[ProbeUpdate], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """``rng`` enables kubelet's start-up jitter (first probes of containers already running when
        the agent starts are spread over one period); tests leave it None."""
        self.clock = clock
        self.prober = prober
        self._record_event = record_event
        self._on_update = on_update
        self._jitter = (lambda period: rng.random() * period) if rng is not None else None
        self._started_at = clock.monotonic()
        self._pods: dict[str, Obj] = {}
        self._slots: dict[tuple[str, str], ContainerSlot] = {}
        self._workers: dict[tuple[str, str, ProbeType], Worker] = {}
        self._results: dict[tuple[str, str, ProbeType], tuple[str, Result]] = {}

    # -- facts from the agent ------------------------------------------------------------------------
    def add_pod(self, pod: Obj) -> None:
        """Start workers for the pod's probes (idempotent; a newer pod object replaces the stored one)."""
        uid = pod["metadata"]["uid"]
        self._pods[uid] = pod
        for c in probed_containers(pod):
            name = c.get("name", "")
            slot = self._slots.get((uid, name))
            if slot is None:
                slot = self._slots[(uid, name)] = ContainerSlot(name=name, spec=c)
            for ptype in ProbeType:
                probe = c.get(ptype.field)
                if not probe or (uid, name, ptype) in self._workers:
                    continue
                w = Worker(self, uid, slot, ptype, ProbeSpec.from_dict(probe), self._jitter)
                self._workers[(uid, name, ptype)] = w
                w.start()

    def update_pod(self, pod: Obj) -> None:
        """Refresh the stored pod (events use it); a deletionTimestamp means terminating."""
        uid = pod["metadata"]["uid"]
        if uid in self._pods:
            self._pods[uid] = pod
            if pod["metadata"].get("deletionTimestamp"):
                self.pod_terminating(uid)

    def container_running(
        self, pod_uid: str, container: str, target: Target, *, started_at: float | None = None,
    ) -> None:
        """A container instance runs; ``started_at`` is on ``clock.monotonic()`` (default: now).

        Repeating the call for the same container id only refreshes ``target``."""
        slot = self._slots.get((pod_uid, container))
        if slot is None:
            return
        new = slot.target is None or slot.target.container_id != target.container_id
        slot.target = target
        slot.running = True
        if not new:
            return
        now = self.clock.monotonic()
        slot.started_at = now if started_at is None else started_at
        slot.seen_at_manager_start = slot.started_at < self._started_at
        for w in self._container_workers(pod_uid, container):
            w.new_instance(target.container_id)

    def container_stopped(self, pod_uid: str, container: str) -> None:
        """The current instance exited: it is not ready; its workers idle until the next instance."""
        slot = self._slots.get((pod_uid, container))
        if slot is None or not slot.running:
            return
        slot.running = False
        w = self._workers.get((pod_uid, container, ProbeType.READINESS))
        if w is not None and w.instance is not None:
            self._set_result(w, w.instance, Result.FAILURE)
        for w in self._container_workers(pod_uid, container):
            w.wake()

    def pod_terminating(self, pod_uid: str) -> None:
        """Graceful shutdown: liveness and startup stop (set to success); readiness keeps probing."""
        for (uid, _, ptype), w in list(self._workers.items()):
            if uid != pod_uid or ptype == ProbeType.READINESS or w.stopped:
                continue
            w.stopped = True
            if w.instance is not None:
                self._set_result(w, w.instance, Result.SUCCESS)
            w.wake()

    async def remove_pod(self, pod_uid: str) -> None:
        """Stop the pod's workers and forget its results."""
        workers = [w for (uid, _, _), w in self._workers.items() if uid == pod_uid]
        for w in workers:
            await w.stop()
        for key in [k for k in self._workers if k[0] == pod_uid]:
            del self._workers[key]
        for key in [k for k in self._results if k[0] == pod_uid]:
            del self._results[key]
        for key in [k for k in self._slots if k[0] == pod_uid]:
            del self._slots[key]
        self._pods.pop(pod_uid, None)

    async def close(self) -> None:
        for uid in list(self._pods):
            await self.remove_pod(uid)

    # -- verdicts ------------------------------------------------------------------------------------
    def _current(self, pod_uid: str, container: str, ptype: ProbeType) -> Result | None:
        slot = self._slots.get((pod_uid, container))
        entry = self._results.get((pod_uid, container, ptype))
        if slot is None or slot.target is None or entry is None or entry[0] != slot.target.container_id:
            return None
        return entry[1]

    def readiness(self, pod_uid: str, container: str) -> bool | None:
        """None: no readiness probe (ready once started). Otherwise the probe's verdict."""
        if (pod_uid, container, ProbeType.READINESS) not in self._workers:
            return None
        slot = self._slots[(pod_uid, container)]
        return slot.running and self._current(pod_uid, container, ProbeType.READINESS) == Result.SUCCESS

    def started(self, pod_uid: str, container: str) -> bool | None:
        """None: no startup probe (started once running). Otherwise whether it has succeeded."""
        if (pod_uid, container, ProbeType.STARTUP) not in self._workers:
            return None
        slot = self._slots[(pod_uid, container)]
        return slot.running and self._current(pod_uid, container, ProbeType.STARTUP) == Result.SUCCESS

    def _started_ok(self, pod_uid: str, container: str, container_id: str | None) -> bool:
        if (pod_uid, container, ProbeType.STARTUP) not in self._workers:
            return True
        entry = self._results.get((pod_uid, container, ProbeType.STARTUP))
        return entry is not None and entry == (container_id, Result.SUCCESS)

    def restart_request(self, pod_uid: str, container: str) -> RestartRequest | None:
        """Set while the running instance has failed its liveness (or startup) probe."""
        slot = self._slots.get((pod_uid, container))
        if slot is None or not slot.running or slot.target is None:
            return None
        for ptype in (ProbeType.LIVENESS, ProbeType.STARTUP):
            if self._current(pod_uid, container, ptype) == Result.FAILURE:
                w = self._workers[(pod_uid, container, ptype)]
                return RestartRequest(pod_uid, container, slot.target.container_id, ptype,
                                      w.spec.termination_grace_period)
        return None

    def worker_stats(self) -> dict[str, int]:
        """Counts for debugging and benchmarks."""
        runs = sum(w.probes_run for w in self._workers.values())
        return {"workers": len(self._workers), "probes_run": runs}

    # -- internals used by workers -------------------------------------------------------------------
    def _container_workers(self, pod_uid: str, container: str) -> list[Worker]:
        return [w for p in ProbeType if (w := self._workers.get((pod_uid, container, p))) is not None]

    def _set_result(self, w: Worker, container_id: str, result: Result) -> None:
        key = (w.pod_uid, w.slot.name, w.type)
        if self._results.get(key) == (container_id, result):
            return
        self._results[key] = (container_id, result)
        if w.type == ProbeType.STARTUP and result == Result.SUCCESS:
            for other in self._container_workers(w.pod_uid, w.slot.name):
                if other is not w:
                    other.wake()
        if self._on_update is not None:
            self._on_update(ProbeUpdate(w.pod_uid, w.slot.name, container_id, w.type, result))

    async def _event(self, type_: str, reason: str, message: str, w: Worker) -> None:
        if self._record_event is None:
            return
        pod = self._pods.get(w.pod_uid)
        if pod is None:
            return
        out = self._record_event(pod, type_, reason, message, field_path=field_path(pod, w.slot.name))
        if inspect.isawaitable(out):
            await out
