"""The scheduler loop: informers -> queue -> schedule one pod -> assume -> bind (pods/binding).

Only the API is used. Pods, nodes and namespaces are list+watched into a :class:`Snapshot`; pods
bound by this scheduler are *assumed* on their node at once, so the next cycle counts them
before the watch confirms the binding. Bindings, status patches and events run as background
tasks (like kube's binding cycle) so the next pod is scheduled meanwhile; :meth:`flush` waits
for them. On failure the pod gets PodScheduled=False/Unschedulable with kube's message, a
FailedScheduling event, and waits in the queue for a cluster event that may help.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Any

from peapod.api.errors import ApiError
from peapod.api.resources import api_path, resource
from peapod.client.events import EventRecorder
from peapod.client.rest import ApiClient
from peapod.client.sharedinformer import InformerFactory
from peapod.clock import Clock, rfc3339
from peapod.controlplane.scheduler.core import FitError, NoNodesAvailable, SchedulerCore
from peapod.controlplane.scheduler.model import PodInfo, pod_info, pod_key
from peapod.controlplane.scheduler.queue import QueuedPod, SchedulingQueue
from peapod.controlplane.scheduler.snapshot import Snapshot

log = logging.getLogger(__name__)

PODS = resource("", "v1", "pods")
NODES = resource("", "v1", "nodes")
NAMESPACES = resource("", "v1", "namespaces")
DEFAULT_SCHEDULER = "default-scheduler"
TERMINAL_PHASES = ("Succeeded", "Failed")
Obj = dict[str, Any]


@dataclass
class Outcome:
    """What one scheduling cycle did: ``node`` when assumed/bound, else the failure ``message``."""

    key: str
    node: str | None = None
    message: str = ""


def _same_for_scheduling(old: Obj, new: Obj) -> bool:
    """Whether ``new`` differs from ``old`` only where PodInfo does not look (status, most metadata)."""
    om, nm = old.get("metadata") or {}, new.get("metadata") or {}
    return (om.get("uid") == nm.get("uid") and om.get("labels") == nm.get("labels")
            and om.get("deletionTimestamp") == nm.get("deletionTimestamp") and old.get("spec") == new.get("spec"))


def _assigned(pod: Obj) -> bool:
    return bool((pod.get("spec") or {}).get("nodeName"))


def _terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in TERMINAL_PHASES


class Scheduler:
    def __init__(
        self, client: ApiClient, *, clock: Clock, rng: random.Random | None = None,
        name: str = DEFAULT_SCHEDULER, percentage_of_nodes_to_score: int = 0, max_in_flight: int = 32,
        queue: SchedulingQueue | None = None, factory: InformerFactory | None = None,
    ) -> None:
        self.client = client
        self.clock = clock
        self.name = name
        self.scheduler_names = {name, "peapod"} if name == DEFAULT_SCHEDULER else {name}
        self.snapshot = Snapshot()
        self.core = SchedulerCore(
            self.snapshot, rng=rng, percentage_of_nodes_to_score=percentage_of_nodes_to_score,
        )
        self.queue = queue or SchedulingQueue(clock=clock)
        self.recorder = EventRecorder(client, component=name, clock=clock, asynchronous=True)
        informers = factory or InformerFactory(client, clock=clock)
        self.pods = informers.informer(PODS)
        self.nodes = informers.informer(NODES)
        self.namespaces = informers.informer(NAMESPACES)
        self.assumed: dict[str, PodInfo] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max_in_flight)
        self.pods.add_handlers(self._pod_added, self._pod_updated, self._pod_deleted)
        self.nodes.add_handlers(self._node_added, self._node_updated, self._node_deleted)
        self.namespaces.add_handlers(self._ns_changed, lambda _o, n: self._ns_changed(n), self._ns_deleted)

    def responsible_for(self, pod: Obj) -> bool:
        return ((pod.get("spec") or {}).get("schedulerName") or DEFAULT_SCHEDULER) in self.scheduler_names

    # -- the loop -----------------------------------------------------------------------------
    async def run(self) -> None:
        informers = [asyncio.create_task(i.run()) for i in (self.namespaces, self.nodes, self.pods)]
        try:
            await asyncio.gather(*(i.synced.wait() for i in (self.namespaces, self.nodes, self.pods)))
            while True:
                await self.schedule_one()
        finally:
            for t in informers + list(self._tasks):
                t.cancel()
            await asyncio.gather(*informers, *self._tasks, return_exceptions=True)
            await self.recorder.close(timeout=1.0)

    async def schedule_one(self) -> Outcome | None:
        """Take the next pod from the queue and schedule it (the binding continues in the background)."""
        qp = await self.queue.pop()
        try:
            return self.schedule_queued(qp)
        except Exception:  # a bug must not stop scheduling: retry the pod after its backoff
            log.exception("scheduling %s failed", qp.key)
            self._forget(qp.key)
            self.queue.add_error(qp)
            return None

    def schedule_queued(self, qp: QueuedPod) -> Outcome | None:
        obj = self.pods.get(qp.key) or qp.pod
        md = obj.get("metadata") or {}
        if self.pods.get(qp.key) is None or _assigned(obj) or md.get("deletionTimestamp") or \
                qp.key in self.assumed or not self.responsible_for(obj):
            self.queue.done(qp.key)
            return None
        pod = pod_info(obj)
        try:
            placement = self.core.schedule(pod)
        except FitError as e:
            self.queue.add_unschedulable(qp, e.plugins)
            self._spawn(self._record_failure(obj, "Unschedulable", e.message))
            return Outcome(qp.key, message=e.message)
        except NoNodesAvailable as e:
            self.queue.add_unschedulable(qp, ())
            self._spawn(self._record_failure(obj, "Unschedulable", str(e)))
            return Outcome(qp.key, message=str(e))
        self.core.assume(pod, placement.node)
        self.assumed[pod.key] = pod
        self._spawn(self._bind(qp, obj, pod, placement.node))
        return Outcome(qp.key, node=placement.node)

    async def flush(self) -> None:
        """Wait for in-flight bindings, status patches and events."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        async def guarded() -> None:
            async with self._slots:
                try:
                    await coro
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("scheduler background task failed")

        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- binding cycle ------------------------------------------------------------------------
    async def _bind(self, qp: QueuedPod, obj: Obj, pod: PodInfo, node: str) -> None:
        md = obj["metadata"]
        binding = {
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": md.get("uid")},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        try:
            path = api_path(PODS, pod.namespace, pod.name, "binding")
            await self.client.request("POST", path, body=binding)
        except (TimeoutError, ApiError, OSError) as e:
            self._forget(pod.key)
            if isinstance(e, ApiError) and e.code in (404, 409):
                # Gone, being deleted or already bound: the watch settles what happens next.
                self.queue.done(qp.key)
                log.info("binding %s to %s not done: %s", pod.key, node, e.message)
                return
            self.queue.add_error(qp)
            message = f"Binding rejected: {getattr(e, 'message', str(e))}"
            await self._record_failure(obj, "SchedulerError", message)
            return
        self.queue.done(qp.key)
        await self.recorder.record(
            obj, "Normal", "Scheduled", f"Successfully assigned {pod.namespace}/{pod.name} to {node}",
        )

    def _forget(self, key: str) -> None:
        pod = self.assumed.pop(key, None)
        if pod is not None:
            cached = self.snapshot.pods.get(key)
            if cached is pod:
                self.core.forget(key)

    async def _record_failure(self, obj: Obj, reason: str, message: str) -> None:
        await self.recorder.record(obj, "Warning", "FailedScheduling", message)
        current = self.pods.get(pod_key(obj)) or obj
        for c in (current.get("status") or {}).get("conditions") or []:
            if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == reason \
                    and c.get("message") == message:
                return
        cond = {"type": "PodScheduled", "status": "False", "reason": reason, "message": message,
                "lastProbeTime": None, "lastTransitionTime": rfc3339(self.clock.now())}
        md = obj["metadata"]
        try:
            await self.client.patch(PODS, md["name"], {"status": {"conditions": [cond]}},
                                    md.get("namespace") or "default", patch_type="strategic",
                                    subresource="status")
        except ApiError as e:
            if e.code != 404:
                log.info("pod %s condition not updated: %s", pod_key(obj), e.message)

    # -- pod events ---------------------------------------------------------------------------
    def _pod_added(self, pod: Obj) -> None:
        key = pod_key(pod)
        if _assigned(pod):
            if not _terminal(pod):
                self._cache_pod(key, pod)
                self.queue.move_for_event("AssignedPodAdd")
            return
        if self.responsible_for(pod) and not (pod.get("metadata") or {}).get("deletionTimestamp"):
            self.queue.add(key, pod)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        key = pod_key(new)
        if _assigned(new):
            if not _assigned(old):
                self.queue.delete(key)
            if _terminal(new):
                if self._uncache_pod(key):
                    self.queue.move_for_event("AssignedPodDelete")
                return
            cached = self.snapshot.pods.get(key)
            if cached is not None and key not in self.assumed and _same_for_scheduling(old, new):
                cached.obj = new  # a status write (most updates): nothing the scheduler accounts changed
                return
            self._cache_pod(key, new)
            if not _assigned(old):
                self.queue.move_for_event("AssignedPodAdd")
            elif (old.get("metadata") or {}).get("labels") != (new.get("metadata") or {}).get("labels"):
                self.queue.move_for_event("AssignedPodLabel")
            return
        if key in self.assumed:
            return  # our binding is in flight
        if not self.responsible_for(new) or (new.get("metadata") or {}).get("deletionTimestamp"):
            self.queue.delete(key)
            return
        self.queue.update(key, new)

    def _pod_deleted(self, pod: Obj) -> None:
        key = pod_key(pod)
        self.queue.delete(key)
        self.assumed.pop(key, None)
        if self._uncache_pod(key):
            self.queue.move_for_event("AssignedPodDelete")

    def _cache_pod(self, key: str, pod: Obj) -> None:
        self.assumed.pop(key, None)  # confirmed by the watch
        self.snapshot.add_pod(pod_info(pod))

    def _uncache_pod(self, key: str) -> bool:
        self.assumed.pop(key, None)
        return self.snapshot.remove_pod(key) is not None

    # -- node and namespace events ------------------------------------------------------------
    def _node_added(self, node: Obj) -> None:
        self.snapshot.set_node(node)
        self.queue.move_for_event("NodeAdd")

    def _node_updated(self, old: Obj, new: Obj) -> None:
        self.snapshot.set_node(new)
        for event in node_update_events(old, new):
            self.queue.move_for_event(event)

    def _node_deleted(self, node: Obj) -> None:
        self.snapshot.remove_node(node["metadata"]["name"])

    def _ns_changed(self, ns: Obj) -> None:
        md = ns.get("metadata") or {}
        labels = dict(md.get("labels") or {})
        name = md.get("name")
        if self.snapshot.namespace_labels.get(name) != labels:
            self.snapshot.namespace_labels[name] = labels
            self.queue.move_for_event("NamespaceLabel")

    def _ns_deleted(self, ns: Obj) -> None:
        self.snapshot.namespace_labels.pop((ns.get("metadata") or {}).get("name"), None)


def node_update_events(old: Obj, new: Obj) -> list[str]:
    """Which scheduling-relevant parts of a node changed (heartbeats produce none)."""
    events = []
    if (old.get("metadata") or {}).get("labels") != (new.get("metadata") or {}).get("labels"):
        events.append("NodeLabel")
    os_, ns_ = old.get("spec") or {}, new.get("spec") or {}
    if os_.get("taints") != ns_.get("taints") or \
            bool(os_.get("unschedulable")) != bool(ns_.get("unschedulable")):
        events.append("NodeTaint")
    ost, nst = old.get("status") or {}, new.get("status") or {}
    if ost.get("allocatable") != nst.get("allocatable"):
        events.append("NodeAllocatable")

    def conds(st: Obj) -> dict[str, str]:
        return {c.get("type"): c.get("status") for c in st.get("conditions") or [] if isinstance(c, dict)}

    if conds(ost) != conds(nst):
        events.append("NodeCondition")
    return events


async def run_scheduler(
    client: ApiClient, *, clock: Clock, rng: random.Random | None = None, name: str = DEFAULT_SCHEDULER,
    factory: InformerFactory | None = None,
) -> None:
    """Run a scheduler until cancelled (for the control plane to start)."""
    await Scheduler(client, clock=clock, rng=rng, name=name, factory=factory).run()
