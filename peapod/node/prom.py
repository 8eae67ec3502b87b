"""The node agent's Prometheus metrics (served on the agent's ``/metrics``), named like kubelet's.

- ``kubelet_pod_start_duration_seconds``: from the agent first seeing a pod to the pod running
  (every container started, as reported back through the API);
- ``prober_probe_total{probe_type,result,container}``: every probe run;
- ``kubelet_image_pull_bytes_total``: bytes downloaded from registries for the node's pods;
- ``kubelet_running_pods`` and ``kubelet_running_containers{container_state="running"}``.

Each agent owns its :class:`AgentMetrics` (its own CollectorRegistry): two agents in one process
(tests) never share counters.
"""

from __future__ import annotations

import inspect
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from peapod.clock import Clock

Obj = dict[str, Any]

# kubelet's pod start buckets (seconds)
POD_START_BUCKETS = (0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900,
                     1200, 1800, 2700, 3600)
_PROBE_RESULT = {"success": "successful", "warning": "successful", "failure": "failed", "unknown": "unknown"}
_PROBE_KINDS = (("startup", "startupProbe"), ("liveness", "livenessProbe"), ("readiness", "readinessProbe"))
_HANDLER_KEYS = ("exec", "httpGet", "tcpSocket", "grpc")


class AgentMetrics:
    """The agent's collectors, in a registry of their own."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.pod_start = Histogram(
            "kubelet_pod_start_duration_seconds",
            "Duration in seconds from the node agent seeing a pod for the first time to the pod running.",
            buckets=POD_START_BUCKETS, registry=r)
        self.probes = Counter("prober_probe", "Probe runs by type and result.",
                              ["probe_type", "result", "container"], registry=r)
        self.image_pull_bytes = Counter("kubelet_image_pull_bytes", "Bytes downloaded pulling images.",
                                        registry=r)
        self.running_pods = Gauge("kubelet_running_pods", "Pods with a running container.", registry=r)
        self.running_containers = Gauge("kubelet_running_containers", "Containers by state.",
                                        ["container_state"], registry=r)

    def set_running(self, pods: int, containers: int) -> None:
        self.running_pods.set(pods)
        self.running_containers.labels(container_state="running").set(containers)

    def observe_probe(self, probe_type: str, outcome: str, container: str) -> None:
        self.probes.labels(probe_type=probe_type, result=_PROBE_RESULT.get(outcome, "unknown"),
                           container=container).inc()

    def exposition(self) -> bytes:
        """The text exposition format of every collector."""
        return generate_latest(self.registry)


def probe_type_of(handler: Any, container: Obj) -> str:
    """Which of the container's probes ``handler`` belongs to (liveness/readiness/startup).

    The probe manager hands the prober only the handler; identical handlers in two probes count
    under the first of startup, liveness, readiness."""
    for name, key in _PROBE_KINDS:
        probe = container.get(key) or {}
        if probe and {k: probe[k] for k in _HANDLER_KEYS if probe.get(k) is not None} == dict(handler):
            return name
    return "unknown"


class CountingProber:
    """Wraps a prober (``peapod.node.probes.Prober``) and counts every result."""

    def __init__(self, inner: Any, metrics: AgentMetrics) -> None:
        self.inner = inner
        self.metrics = metrics

    async def run(self, handler: Obj, *, container: Obj, target: Any, timeout: float) -> Any:
        res = await self.inner.run(handler, container=container, target=target, timeout=timeout)
        if getattr(res, "error", None) is None:  # results that could not run are not counted by kubelet
            outcome = getattr(res.outcome, "value", str(res.outcome))
            self.metrics.observe_probe(probe_type_of(handler, container), outcome, str(container.get("name")))
        return res


class CountingImages:
    """Wraps an ImageService: counts bytes downloaded by ``ensure``/``pull``; all else passes through."""

    def __init__(self, inner: Any, metrics: AgentMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _progress(self) -> Any:
        seen: dict[str, int] = {}

        def progress(update: Obj) -> None:
            digest, done = update.get("digest"), update.get("downloaded")
            if not isinstance(done, int) or digest is None:
                return
            before = seen.get(digest, 0)
            if done > before:
                self._metrics.image_pull_bytes.inc(done - before)
            seen[digest] = done  # a retried blob starts again from 0

        return progress

    def _takes_progress(self, method: str) -> bool:
        try:
            return "progress" in inspect.signature(getattr(self._inner, method)).parameters
        except (TypeError, ValueError):
            return False

    def _chain(self, progress: Any) -> Any:
        mine = self._progress()

        def both(update: Obj) -> None:
            mine(update)
            if progress is not None:
                progress(update)

        return both

    async def ensure(self, ref: str, policy: Any = None, auth: Any = None, *, progress: Any = None) -> Any:
        if self._takes_progress("ensure"):
            return await self._inner.ensure(ref, policy, auth, progress=self._chain(progress))
        return await self._inner.ensure(ref, policy, auth)

    async def pull(self, ref: str, *, auth: Any = None, progress: Any = None) -> Any:
        if not self._takes_progress("pull"):
            return await self._inner.pull(ref, auth=auth)
        return await self._inner.pull(ref, auth=auth, progress=self._chain(progress))


class PodStartTracker:
    """Observes ``kubelet_pod_start_duration_seconds``: feed it the pods of this node (informer
    add/update). Pods already running when first seen (adopted after a restart) are not observed."""

    def __init__(self, metrics: AgentMetrics, clock: Clock) -> None:
        self.metrics = metrics
        self.clock = clock
        self._first_seen: dict[str, float] = {}
        self._done: set[str] = set()

    def update(self, pod: Obj) -> None:
        uid = (pod.get("metadata") or {}).get("uid")
        if not uid or uid in self._done:
            return
        running = _all_started(pod)
        if uid not in self._first_seen:
            if running:
                self._done.add(uid)
                return
            self._first_seen[uid] = self.clock.monotonic()
            return
        if running:
            self.metrics.pod_start.observe(max(0.0, self.clock.monotonic() - self._first_seen.pop(uid)))
            self._done.add(uid)

    def forget(self, pod: Obj) -> None:
        uid = (pod.get("metadata") or {}).get("uid")
        self._first_seen.pop(uid, None)
        self._done.discard(uid)


def _all_started(pod: Obj) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    names = {c.get("name") for c in (pod.get("spec") or {}).get("containers") or []}
    started = {s.get("name") for s in status.get("containerStatuses") or []
               if "running" in (s.get("state") or {}) or "terminated" in (s.get("state") or {})}
    return bool(names) and names <= started


def track_pod_starts(informer: Any, metrics: AgentMetrics, clock: Clock) -> PodStartTracker:
    """Feed a pod informer's changes to a :class:`PodStartTracker`."""
    tracker = PodStartTracker(metrics, clock)
    informer.add_handlers(on_add=tracker.update, on_update=lambda _old, new: tracker.update(new),
                          on_delete=tracker.forget)
    return tracker
