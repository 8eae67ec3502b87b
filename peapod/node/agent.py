"""The node agent (peapod's kubelet): runs the pods bound to this node, reports through the API only.

Wiring: an informer lists+watches pods with ``fieldSelector=spec.nodeName=<node>`` and hands
every change to the pod workers (one serial worker per pod UID); each worker runs
plan -> act (:mod:`peapod.node.sync`) and gives the computed status to the status manager, the
only writer of pod status. A relist loop (kubelet's PLEG) notices container state changes and
wakes the pod's worker; a periodic resync retries what is backing off. The probe manager runs
liveness/readiness/startup probes of the containers the executor reports running; a changed
verdict wakes the pod's worker (readiness goes into the status, a liveness or startup failure
restarts the container). A later delete with a shorter grace period (or the pod's removal from
the API: a forced delete) shortens a termination in progress. The node reporter
registers the Node, renews its Lease and reports status. The HTTPS server serves logs, exec,
attach and port-forward to the API server.

Start re-adopts what runs (containers live under conmon, sandboxes and network records are on
disk): nothing is restarted and restart counts come from the records. Pods this node holds that
the API no longer binds to it are stopped and removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import re
import shutil
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peapod.api.resources import resource
from peapod.client.events import EventRecorder
from peapod.client.informer import Informer
from peapod.client.rest import ApiClient
from peapod.clock import Clock, RealClock
from peapod.node.imageapi import serve_image_api
from peapod.node.imagegc import run_image_gc
from peapod.node.images.service import ImageService, OciImageService
from peapod.node.network.types import PodNetwork
from peapod.node.nodestatus import NodeFacts, NodeStatusReporter, capacity, gather_facts
from peapod.node.podworkers import PodLifecycle, PodWorkers, SyncResult, termination_grace
from peapod.node.probes import ProbeManager, Prober, ProbeUpdate
from peapod.node.prom import AgentMetrics, CountingImages, CountingProber, track_pod_starts
from peapod.node.runtime.cgroups import CgroupManager
from peapod.node.runtime.types import ContainerRuntime, ContainerRuntimeError
from peapod.node.stats import StatsSampler, agent_sampler
from peapod.node.statusmanager import StatusManager
from peapod.node.sync import ApiVolumeSources, NodeInfo, PodExecutor, SandboxService
from peapod.node.volumerefresh import VolumeRefresher
from peapod.node.volumes import Mounter

log = logging.getLogger(__name__)

PODS = resource("", "v1", "pods")
Obj = dict[str, Any]
UID_LEN = 36  # Kubernetes UIDs are RFC 4122 strings; container ids start with them
_POD_CONTAINER_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-.+-[0-9]+$")


CONTAINER_LOG_MAX_SIZE = 10 * 1024 * 1024


def cgroup_parent_for(data_dir: Path) -> str:
    """A cgroup parent unique to a data dir, so two agents on one machine never share one."""
    return "peapod-" + hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:8]


@dataclass
class AgentConfig:
    """Everything the agent needs. ``AgentConfig.for_data_dir`` builds the real components."""

    node_name: str
    data_dir: Path
    client: ApiClient
    runtime: ContainerRuntime
    network: PodNetwork
    images: ImageService
    sandboxes: SandboxService
    clock: Clock = field(default_factory=RealClock)
    cgroups: CgroupManager | None = None
    mounter: Mounter | None = None  # volumes' mounter (None: the real one)
    node_ips: list[str] | None = None  # InternalIP(s); None: the host's global IPv4 addresses
    # the agent's HTTPS endpoint (logs/exec/attach/portforward); port 0 picks a free one
    serve: bool = True
    bind: str = "0.0.0.0"
    port: int = 10250
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None  # client certificates must chain to this CA
    allowed_client_names: tuple[str, ...] = ()  # accepted client cert CNs; empty: any from client_ca
    insecure_http: bool = False  # plain HTTP without client auth (tests only)
    keep_pods: bool = False  # default of stop(): leave pods running
    pod_cidr: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    cluster_dns: list[str] = field(default_factory=list)
    cluster_domain: str = "cluster.local"
    relist_interval: float = 1.0
    resync_interval: float = 10.0
    # configMap/secret/downwardAPI/projected volumes of running pods are re-rendered (and service
    # account tokens renewed) this often (kubelet's --sync-frequency); 0 turns it off
    volume_refresh_period: float = 60.0
    stop_grace_max: int = 10  # Ctrl-C of ``peapod up``: cap on each pod's termination grace
    record_events: bool = True
    runc: str = "/usr/bin/runc"

    @classmethod
    def for_data_dir(cls, *, node_name: str, data_dir: Path, client: ApiClient, pod_cidr: str | None = None,
                     bridge: str = "peapod0", registry_config: Any = None, **kw: Any) -> AgentConfig:
        """The real runtime (runc + conmon), sandboxes, CNI bridge network and image service under
        ``data_dir`` (layout: runtime/ sandboxes/ cni/ images/ pods/)."""
        parts = node_components(Path(data_dir), pod_cidr=pod_cidr, bridge=bridge, registry_config=registry_config)
        return cls(node_name=node_name, data_dir=Path(data_dir), client=client, pod_cidr=pod_cidr,
                   runtime=parts["runtime"], network=parts["network"], images=parts["images"],
                   sandboxes=parts["sandboxes"], cgroups=parts["cgroups"], **kw)


def node_components(data_dir: Path, *, pod_cidr: str | None = None, bridge: str = "peapod0",
                    registry_config: Any = None) -> dict[str, Any]:
    from peapod.node.images import OciImageService
    from peapod.node.network.cni import DEFAULT_POD_CIDR, CniConfig, CniNetwork
    from peapod.node.runtime.runc_runtime import RuncRuntime
    from peapod.node.runtime.sandbox import SandboxManager

    data_dir = Path(data_dir)
    cgroups = CgroupManager(cgroup_parent_for(data_dir))
    return {
        # conmon caps each container log at 10 MiB (kubelet's containerLogMaxSize default).
        "runtime": RuncRuntime(data_dir / "runtime", log_size_max=CONTAINER_LOG_MAX_SIZE),
        "sandboxes": SandboxManager(data_dir, cgroups=cgroups),
        "network": CniNetwork(CniConfig(data_dir=str(data_dir / "cni"), bridge=bridge,
                                        subnet=pod_cidr or DEFAULT_POD_CIDR)),
        "images": OciImageService(data_dir / "images", registry_config=registry_config),
        "cgroups": cgroups,
    }


def _uid_of(container_id: str) -> str:
    return container_id[:UID_LEN]


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.clock = config.clock
        self.client = config.client
        self.data_dir = Path(config.data_dir)
        self.facts: NodeFacts | None = None
        self.status: StatusManager | None = None
        self.executor: PodExecutor | None = None
        self.workers: PodWorkers | None = None
        self.probes: ProbeManager | None = None
        self.informer: Informer | None = None
        self.reporter: NodeStatusReporter | None = None
        self.server: Any = None
        self.port = config.port
        self._tasks: list[asyncio.Task[None]] = []
        self._last_states: dict[str, tuple[str, int | None]] = {}
        self._started = False
        self.image_api: Any = None
        self.recorder: EventRecorder | None = None
        self.metrics = AgentMetrics()  # served on /metrics
        self.stats: StatsSampler | None = None  # served on /stats/summary
        self.volume_refresher: VolumeRefresher | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.facts = await asyncio.to_thread(gather_facts, self.data_dir, runc=cfg.runc,
                                             addresses=cfg.node_ips)
        _cap, alloc = capacity(self.facts)
        informer = Informer(self.client, PODS, clock=self.clock,
                            field_selector=f"spec.nodeName={cfg.node_name}")
        self.informer = informer

        def api_status(uid: str) -> Obj | None:
            assert self.workers is not None
            pod = self.workers.pod(uid)
            if pod is None:
                return None
            cur = informer.get(f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}")
            if cur is None or cur["metadata"].get("uid") != uid:
                return None
            return cur.get("status") or {}

        self.status = StatusManager(self.client, clock=self.clock, api_status=api_status)
        # Events go out in the background: a pod's start never waits for its events to be written.
        recorder = EventRecorder(self.client, component="kubelet", clock=self.clock, host=cfg.node_name,
                                 asynchronous=True) if cfg.record_events else None
        self.recorder = recorder
        self.executor = PodExecutor(
            data_dir=self.data_dir, runtime=cfg.runtime, sandboxes=cfg.sandboxes, network=cfg.network,
            images=CountingImages(cfg.images, self.metrics), client=self.client, status=self.status,
            clock=self.clock,
            node=NodeInfo(node_name=cfg.node_name, host_ips=list(self.facts.addresses),
                          cluster_dns=cfg.cluster_dns,
                          cluster_domain=cfg.cluster_domain, allocatable=alloc,
                          memory_capacity=self.facts.memory),
            cgroups=cfg.cgroups, mounter=cfg.mounter, recorder=recorder,
        )
        self.probes = ProbeManager(clock=self.clock, prober=CountingProber(Prober(runtime=cfg.runtime), self.metrics),
                                   record_event=self.executor.record_event if recorder else None,
                                   on_update=self._on_probe_update, rng=random.Random())
        self.executor.probes = self.probes
        self.workers = PodWorkers(sync=self._sync, terminate=self.executor.terminate_pod,
                                  cleanup=self._cleanup,
                                  clock=self.clock)
        if isinstance(cfg.images, OciImageService):
            # `peapod images` talks to this agent through a root-only unix socket (like crictl);
            # unused images are collected when the image filesystem fills up (kubelet's GC).
            self.image_api = await serve_image_api(cfg.images, self.data_dir / "images.sock",
                                                   in_use=self._images_in_use)
            self._spawn(run_image_gc(cfg.images, in_use=self._images_in_use, clock=self.clock,
                                     data_dir=self.data_dir / "images"), "image-gc")
        if cfg.serve:
            from peapod.node.server import AgentServer

            self.server = AgentServer(self)
            self.port = await self.server.start()
        self.reporter = NodeStatusReporter(
            client=self.client, node_name=cfg.node_name, facts=self.facts, clock=self.clock, port=self.port,
            labels=cfg.labels, pod_cidr=cfg.pod_cidr, images=self._image_list)
        await self.reporter.register()
        informer.add_handlers(on_add=self._on_pod, on_update=lambda _old, new: self._on_pod(new),
                              on_delete=self._on_pod_deleted)
        track_pod_starts(informer, self.metrics, self.clock)
        self._spawn(informer.run(), "pod-informer")
        self._spawn(self.status.run(), "status-manager")
        await informer.synced.wait()
        await self._adopt()
        self._spawn(self.reporter.run(), "node-heartbeat")
        self._spawn(self._relist_loop(), "relist")
        self._spawn(self._resync_loop(), "resync")
        if cfg.volume_refresh_period > 0:
            self.volume_refresher = self._volume_refresher(cfg.volume_refresh_period)
            self._spawn(self.volume_refresher.run(), "volume-refresh")
        self.stats = agent_sampler(self)
        if self.stats is not None:
            self._spawn(self.stats.run(), "stats")
        self._started = True
        log.info("node agent %s started (port %s)", cfg.node_name, self.port)

    def _volume_refresher(self, period: float) -> VolumeRefresher:
        """Periodic re-rendering of API-data volumes, beside the pod workers (never inside one)."""
        workers, ex = self.workers, self.executor
        assert workers is not None and ex is not None
        return VolumeRefresher(
            clock=self.clock, period=period,
            pods=lambda: [workers.pod(uid) for uid in workers.uids()],
            syncing=lambda uid: workers.state(uid) is PodLifecycle.SYNCING,
            pod_dir=ex.pod_dir,
            sources=lambda pod: ApiVolumeSources(self.client, pod, ex._downward(pod["metadata"]["uid"], pod)),
            mounter=self.config.mounter,
            on_error=lambda pod, err: ex.record_event(pod, "Warning", "FailedMount", str(err)))

    def _images_in_use(self) -> set[str]:
        """Images of the pods this agent runs (mounted rootfs are protected by the image service)."""
        refs: set[str] = set()
        for uid in self.workers.uids() if self.workers else []:
            spec = (self.workers.pod(uid) or {}).get("spec") or {}
            for key in ("initContainers", "containers", "ephemeralContainers"):
                refs.update(c["image"] for c in spec.get(key) or [] if c.get("image"))
        return refs

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def run(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def stop(self, *, stop_pods: bool | None = None) -> None:
        """Stop the agent. ``stop_pods``: also stop and remove every pod (``peapod up`` Ctrl-C);
        otherwise pods keep running under conmon for the next agent to adopt (upgrade)."""
        if stop_pods is None:
            stop_pods = not self.config.keep_pods
        for t in self._tasks:
            if t.get_name() != "status-manager":
                t.cancel()
        await asyncio.gather(*(t for t in self._tasks if t.get_name() != "status-manager"),
                             return_exceptions=True)
        if self.image_api is not None:
            await self.image_api.close()
            self.image_api = None
        if self.workers is not None:
            await self.workers.stop()
        if self.probes is not None:
            await self.probes.close()
        if stop_pods and self.executor is not None:
            await self._stop_all_pods()
            # No pod is left on the bridge: remove it too, so a stopped `peapod up` leaves nothing.
            remove_bridge = getattr(self.config.network, "remove_bridge", None)
            if remove_bridge is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(remove_bridge)
            if self.config.cgroups is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.config.cgroups.remove_parent_if_empty)
        if self.recorder is not None:
            await self.recorder.close(timeout=2.0)
        if self.status is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.status.flush(), 5)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.server is not None:
            await self.server.stop()
            self.server = None

    async def _stop_all_pods(self) -> None:
        ex = self.executor
        assert ex is not None

        async def stop_one(pod: Obj) -> None:
            uid = pod["metadata"]["uid"]
            grace = min(self.config.stop_grace_max, _grace(pod))
            try:
                await ex.terminate_pod(pod, grace)
                await ex.cleanup_pod(pod, True)
            except Exception as e:
                log.warning("stopping pod %s: %s", uid, e)
                with contextlib.suppress(Exception):
                    await ex.remove_orphan(uid)

        # all pods' grace periods run at once: stopping takes the longest one, not their sum
        await asyncio.gather(*(stop_one(pod) for pod in ex.saved_pods()))
        await self._remove_strays(set())

    # ---- pod events --------------------------------------------------------------------------

    def _on_pod(self, pod: Obj) -> None:
        if self.workers is None or (pod.get("spec") or {}).get("nodeName") != self.config.node_name:
            return
        uid = pod["metadata"]["uid"]
        if self.probes is not None:
            self.probes.update_pod(pod)
        if (pod.get("metadata") or {}).get("deletionTimestamp") and self.executor is not None:
            self.executor.shorten_grace(uid, termination_grace(pod))
        self.workers.update(pod)

    def _on_pod_deleted(self, pod: Obj) -> None:
        if self.workers is None:
            return
        uid = pod["metadata"]["uid"]
        if self.workers.state(uid) is None:
            return
        w = self.workers._workers.get(uid)
        if w is not None and w.finished:
            self.workers.forget(uid)
            return
        # Gone from the API before this node finished it: a forced delete. Stop at once.
        if self.executor is not None:
            self.executor.shorten_grace(uid, 0)
        self.workers.kill(uid, grace=0)

    def _on_probe_update(self, update: ProbeUpdate) -> None:
        """A probe verdict changed: the pod's worker writes it into the status (or restarts)."""
        if self.workers is not None:
            self.workers.resync(update.pod_uid)

    async def _sync(self, pod: Obj) -> SyncResult:
        assert self.executor is not None
        return await self.executor.sync_pod(pod)

    async def _cleanup(self, pod: Obj, removed: bool) -> bool:
        assert self.executor is not None and self.workers is not None
        finished = await self.executor.cleanup_pod(pod, removed)
        if finished and removed:
            self.workers.forget(pod["metadata"]["uid"])
        return finished

    def _image_list(self) -> list[Obj]:
        out = []
        with contextlib.suppress(Exception):
            for img in self.config.images.list()[:50]:
                if img.names:
                    out.append({"names": img.names, "sizeBytes": img.size})
        return out

    # ---- adoption and garbage ----------------------------------------------------------------

    async def _adopt(self) -> None:
        """Match what this node holds with the pods the API binds to it."""
        assert self.informer is not None and self.workers is not None and self.executor is not None
        api = {p["metadata"]["uid"]: p for p in self.informer.list()}
        for pod in api.values():
            self.workers.update(pod)
        for pod in self.executor.saved_pods():
            uid = pod["metadata"]["uid"]
            if uid not in api:
                log.info("pod %s/%s (%s) is no longer bound here: removing it",
                         pod["metadata"].get("namespace"),
                         pod["metadata"].get("name"), uid)
                self.workers.update(pod)
                self.workers.kill(uid, grace=min(_grace(pod), self.config.stop_grace_max))
        await self._remove_strays(set(api) | set(self.executor.local_uids()))

    async def _remove_strays(self, keep: set[str]) -> None:
        """Containers, sandboxes and network records of pods nobody knows."""
        ex = self.executor
        assert ex is not None
        cfg = self.config
        with contextlib.suppress(ContainerRuntimeError):
            for st in await cfg.runtime.list():
                if _uid_of(st.id) not in keep:
                    log.info("removing stray container %s", st.id)
                    with contextlib.suppress(ContainerRuntimeError):
                        await cfg.runtime.remove(st.id)
                    with contextlib.suppress(Exception):
                        await cfg.images.release_rootfs(st.id)
        for cid in getattr(cfg.images, "rootfs_ids", list)():
            # pods' containers only (``<uid>-<name>-<attempt>``): `peapod build` mounts others
            if _POD_CONTAINER_ID.match(cid) and _uid_of(cid) not in keep:
                log.info("removing stray rootfs %s", cid)
                with contextlib.suppress(Exception):
                    await cfg.images.release_rootfs(cid)
        recorded = getattr(cfg.network, "recorded_pods", lambda: [])()
        for uid in set(cfg.sandboxes.list_uids()) | set(recorded):
            if uid not in keep:
                log.info("removing stray sandbox/network of pod %s", uid)
                with contextlib.suppress(Exception):
                    await ex.remove_orphan(uid)

    # ---- loops -------------------------------------------------------------------------------

    async def _relist_loop(self) -> None:
        """kubelet's PLEG: wake a pod's worker when one of its containers changed state."""
        while True:
            await self.clock.sleep(self.config.relist_interval)
            try:
                await self.relist()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.info("relist: %s", e)

    async def relist(self) -> None:
        assert self.workers is not None
        states = {st.id: (str(st.status), st.exit_code) for st in await self.config.runtime.list()}
        changed = {cid for cid in states.keys() | self._last_states.keys()
                   if states.get(cid) != self._last_states.get(cid)}
        self._last_states = states
        for uid in {_uid_of(c) for c in changed}:
            self.workers.resync(uid)

    async def _resync_loop(self) -> None:
        while True:
            await self.clock.sleep(self.config.resync_interval)
            assert self.workers is not None
            for uid in self.workers.uids():
                if not self.workers.is_terminating(uid):
                    self.workers.resync(uid)


def _grace(pod: Obj) -> int:
    md = pod.get("metadata") or {}
    if md.get("deletionGracePeriodSeconds") is not None:
        return int(md["deletionGracePeriodSeconds"])
    g = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
    return 30 if g is None else int(g)


def default_node_name() -> str:
    return socket.gethostname().lower()


def server_ssl_context(cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        ctx.load_verify_locations(cafile=str(client_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def cleanup_data_dir(data_dir: Path, *, bridge: str | None = "peapod0") -> list[str]:
    """``peapod down``: remove everything a data dir's pods hold, without the API: containers and
    their conmons, rootfs mounts, volumes, sandboxes (namespaces, /dev/shm), CNI allocations, pod
    cgroups, the bridge (when ``bridge`` is given). Returns what it removed, for the user."""
    from peapod.node.network.cni import CniConfig, CniNetwork
    from peapod.node.volumes import teardown_volumes

    data_dir = Path(data_dir)
    done: list[str] = []
    parts = node_components(data_dir, bridge=bridge or "peapod0")
    runtime, sandboxes = parts["runtime"], parts["sandboxes"]
    network, images = parts["network"], parts["images"]
    cgroups: CgroupManager = parts["cgroups"]
    for st in await runtime.list():
        with contextlib.suppress(ContainerRuntimeError):
            await runtime.remove(st.id)
            done.append(f"container {st.id}")
    for cid in list(images.rootfs.in_use()):
        with contextlib.suppress(Exception):
            await images.release_rootfs(cid)
            done.append(f"rootfs {cid}")
    pods_dir = data_dir / "pods"
    if pods_dir.is_dir():
        for d in sorted(pods_dir.iterdir()):
            with contextlib.suppress(Exception):
                await asyncio.to_thread(teardown_volumes, d.name, d)
                shutil.rmtree(d, ignore_errors=True)
                done.append(f"pod dir {d.name}")
    for uid in set(sandboxes.list_uids()) | set(network.recorded_pods()):
        sb = sandboxes.get(uid)
        with contextlib.suppress(Exception):
            await network.teardown(uid, sb.netns_path if sb else None)
        with contextlib.suppress(Exception):
            await sandboxes.teardown(uid)
        done.append(f"sandbox {uid}")
    with contextlib.suppress(Exception):
        await images.close()
    with contextlib.suppress(OSError):
        await asyncio.to_thread(cgroups.remove, cgroups.parent)
    if bridge:
        CniNetwork(CniConfig(data_dir=str(data_dir / "cni"), bridge=bridge)).remove_bridge()
        done.append(f"bridge {bridge}")
    return done
