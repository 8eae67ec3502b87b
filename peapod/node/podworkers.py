"""Pod workers: one serial worker per pod UID (kubelet's pod_workers.go), in asyncio.

Lifecycle of a pod on this node::

        update(pod)                     deletion requested, pod removed from the API,
      -------------> SyncPod  --------  or sync says the pod is terminal
                        |              \\
                        |               v
                        |          TerminatingPod   terminate(pod, grace): stop every container
                        |               |
                        |               v
                        +----------> TerminatedPod  cleanup(pod): sandbox, network, volumes;
                                        |          once the pod is deleted: containers, final delete
                                        v
                                     forget(uid)   (the API no longer has the pod)

Transitions only go down the diagram: a terminating pod never syncs again (a new pod with the
same name has a new UID). Updates for a UID coalesce: while its worker runs, only the newest pod
object is kept and handled next. A worker with nothing left to do exits; the next update starts
a new one. Errors retry with back-off (0.5 s doubling to 10 s) on the injected clock. Others ask
``is_terminating(uid)`` instead of guessing from the pod object.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from peapod.clock import Clock

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class PodLifecycle(enum.Enum):
    SYNCING = "SyncPod"
    TERMINATING = "TerminatingPod"
    TERMINATED = "TerminatedPod"


@dataclass
class SyncResult:
    terminal: bool = False  # nothing will run again: move to TerminatingPod
    requeue_after: float | None = None  # sync again after this many seconds (back-off expiry)


SyncFn = Callable[[Obj], Awaitable[SyncResult]]
TerminateFn = Callable[[Obj, int], Awaitable[None]]
CleanupFn = Callable[[Obj, bool], Awaitable[bool]]  # (pod, removed) -> finished (can forget)


@dataclass
class _Worker:
    uid: str
    pod: Obj
    state: PodLifecycle = PodLifecycle.SYNCING
    pending: bool = True
    removed: bool = False  # the API no longer has the pod (or a kill was requested)
    grace: int | None = None  # termination grace override
    task: asyncio.Task[None] | None = None
    timer: asyncio.Task[None] | None = None
    failures: int = 0
    cleaned: bool = False  # TerminatedPod cleanup done for the current (pod, removed)
    finished: bool = False
    done_event: asyncio.Event = field(default_factory=asyncio.Event)


def _deleting(pod: Obj) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def termination_grace(pod: Obj) -> int:
    md = pod.get("metadata") or {}
    if md.get("deletionGracePeriodSeconds") is not None:
        return max(0, int(md["deletionGracePeriodSeconds"]))
    g = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
    return max(0, int(g)) if g is not None else 30


class PodWorkers:
    def __init__(self, *, sync: SyncFn, terminate: TerminateFn, cleanup: CleanupFn, clock: Clock) -> None:
        self._sync = sync
        self._terminate = terminate
        self._cleanup = cleanup
        self._clock = clock
        self._workers: dict[str, _Worker] = {}
        self._stopping = False

    # ---- queries -----------------------------------------------------------------------------

    def state(self, uid: str) -> PodLifecycle | None:
        w = self._workers.get(uid)
        return w.state if w else None

    def is_terminating(self, uid: str) -> bool:
        """True once termination was decided (TerminatingPod or TerminatedPod)."""
        w = self._workers.get(uid)
        return w is not None and w.state != PodLifecycle.SYNCING

    def is_terminated(self, uid: str) -> bool:
        w = self._workers.get(uid)
        return w is not None and w.state == PodLifecycle.TERMINATED

    def uids(self) -> list[str]:
        return list(self._workers)

    def pod(self, uid: str) -> Obj | None:
        w = self._workers.get(uid)
        return w.pod if w else None

    def busy(self, uid: str) -> bool:
        w = self._workers.get(uid)
        return w is not None and w.task is not None and not w.task.done()

    # ---- updates -----------------------------------------------------------------------------

    def update(self, pod: Obj) -> None:
        """The newest pod object from the API (or a resync request with the cached one)."""
        uid = pod["metadata"]["uid"]
        w = self._workers.get(uid)
        if w is None:
            w = self._workers[uid] = _Worker(uid, pod)
        else:
            if _deleting(pod) and not _deleting(w.pod):
                w.cleaned = False  # a terminal pod now deleted: its cleanup goes further
            w.pod = pod
        if _deleting(pod) and w.state == PodLifecycle.SYNCING:
            w.state = PodLifecycle.TERMINATING
        w.pending = True
        self._kick(w)

    def kill(self, uid: str, *, grace: int | None = None) -> None:
        """The pod is gone from the API (or must stop): terminate with ``grace`` and clean up fully."""
        w = self._workers.get(uid)
        if w is None:
            return
        w.removed = True
        w.cleaned = False
        if grace is not None:
            w.grace = grace if w.grace is None else min(w.grace, grace)
        if w.state == PodLifecycle.SYNCING:
            w.state = PodLifecycle.TERMINATING
        w.pending = True
        self._kick(w)

    def resync(self, uid: str) -> None:
        w = self._workers.get(uid)
        if w is not None and not w.finished:
            w.pending = True
            self._kick(w)

    def forget(self, uid: str) -> None:
        w = self._workers.pop(uid, None)
        if w is not None:
            for t in (w.task, w.timer):
                if t is not None and t is not asyncio.current_task():
                    t.cancel()

    def _kick(self, w: _Worker) -> None:
        if self._stopping:
            return
        if w.task is None or w.task.done():
            w.done_event.clear()
            w.task = asyncio.create_task(self._run(w), name=f"pod-worker-{w.uid}")

    def _after(self, w: _Worker, delay: float) -> None:
        if w.timer is not None and not w.timer.done():
            w.timer.cancel()

        async def later() -> None:
            await self._clock.sleep(delay)
            if self._workers.get(w.uid) is w:
                w.pending = True
                self._kick(w)

        w.timer = asyncio.create_task(later())

    # ---- the worker --------------------------------------------------------------------------

    async def _run(self, w: _Worker) -> None:
        try:
            while w.pending and not self._stopping:
                w.pending = False
                try:
                    await self._step(w)
                    w.failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # retried: a pod error never stops the agent
                    delay = min(0.5 * 2 ** w.failures, 10.0)
                    w.failures += 1
                    log.warning("pod %s (%s): %s; retrying in %.1fs", _name(w.pod), w.state.value, e, delay,
                                exc_info=log.isEnabledFor(logging.DEBUG))
                    self._after(w, delay)
        finally:
            w.done_event.set()

    async def _step(self, w: _Worker) -> None:
        if w.state == PodLifecycle.SYNCING:
            res = await self._sync(w.pod)
            if res.terminal or _deleting(w.pod) or w.removed:
                w.state = PodLifecycle.TERMINATING
                w.pending = True
            elif res.requeue_after is not None:
                self._after(w, res.requeue_after)
            return
        if w.state == PodLifecycle.TERMINATING:
            grace = termination_grace(w.pod)
            if w.grace is not None:
                grace = min(grace, w.grace)
            await self._terminate(w.pod, grace)
            w.state = PodLifecycle.TERMINATED
            w.pending = True
            return
        if not w.cleaned:
            w.cleaned = True
            try:
                finished = await self._cleanup(w.pod, w.removed)
            except BaseException:
                w.cleaned = False
                raise
            if finished:
                w.finished = True

    async def wait_idle(self, uid: str | None = None) -> None:
        """Wait until the worker(s) have nothing running (tests, shutdown)."""
        ws = [self._workers[uid]] if uid is not None and uid in self._workers else (
            list(self._workers.values()) if uid is None else [])
        for w in ws:
            if w.task is not None and not w.task.done():
                await w.done_event.wait()

    async def stop(self, timeout: float = 10.0) -> None:
        """Let in-flight steps finish (up to ``timeout``), then cancel everything."""
        self._stopping = True
        tasks = [t for w in self._workers.values() for t in (w.task,) if t is not None and not t.done()]
        timers = [w.timer for w in self._workers.values() if w.timer is not None]
        for t in timers:
            t.cancel()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=timeout)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.gather(*timers, return_exceptions=True)

    def restart(self) -> None:
        """Accept work again after :meth:`stop` (used when stop leaves pods running)."""
        self._stopping = False


def _name(pod: Obj) -> str:
    md = pod.get("metadata") or {}
    return f"{md.get('namespace', '')}/{md.get('name', '')}"
