"""The executor: carries out :func:`peapod.node.plan.plan` with the runtime, network, images and volumes.

Per pod, under ``<data>/pods/<uid>/``::

    pod.json                      the last pod object (cleanup after a restart needs no API)
    records/<container id>.json   what the agent knows of each container instance (attempt = restart
                                  count, spec hash, back-off streak, image, stop signal)
    bundles/<container id>/       OCI bundles
    logs/<container>/<n>.log      CRI log of the n-th run (``kubectl logs``, ``--previous``)
    volumes/ volume-subpaths/ containers/   owned by peapod.node.volumes

Container ids are ``<pod uid>-<container name>-<attempt>``.

Stopping a container (:meth:`PodExecutor._stop_container`) is kubelet's killContainer: the preStop
hook runs first, then the image's STOPSIGNAL (or SIGTERM), then SIGKILL once the grace period --
counted from the start of preStop, with at least 2 s left for the signal -- runs out. Every stop
holds a :class:`Deadline`; a later, shorter delete (``shorten_grace``) moves it earlier, and a
forced removal kills at once. A container that could not be started at all (a missing
executable) is kept as an exited instance with reason ContainerCannotRun, so it counts as a
restart and backs off like a crash.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import ipaddress
import json
import logging
import os
import shutil
import signal as _signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from peapod.api.errors import ApiError
from peapod.api.resources import resource
from peapod.client.events import EventRecorder
from peapod.client.rest import ApiClient
from peapod.clock import Clock
from peapod.node.containerconfig import (
    CPU_PERIOD,
    ConfigError,
    ContainerInputs,
    PodFiles,
    build_container_config,
    forbidden_sysctl,
    localhost_profile_path,
    oom_score_floor,
    pod_resources,
    read_localhost_profile,
)
from peapod.node.envvars import EnvError, EnvSources, build_env, referenced_objects
from peapod.node.hooks import MIN_GRACE_AFTER_HOOK, format_pod, run_post_start, run_pre_stop
from peapod.node.images.errors import (
    ImageError,
    ImageNeverPullError,
    InvalidReferenceError,
)
from peapod.node.images.service import ImageService, default_pull_policy
from peapod.node.network.hostfiles import (
    node_file,
    parse_resolv_conf,
    render_hosts,
    render_resolv_conf,
    write_pod_file,
)
from peapod.node.network.types import NetworkError, PodNetwork, PortMapping
from peapod.node.plan import (
    Actions,
    ContainerRecord,
    Observed,
    RestartWanted,
    StartContainer,
    container_hash,
    is_sidecar,
    plan,
)
from peapod.node.podstatus import StatusInputs, compute_status
from peapod.node.podworkers import SyncResult
from peapod.node.probes import ProbeManager, Target, probed_containers
from peapod.node.runtime.bundle import build_spec, current_capabilities, write_bundle
from peapod.node.runtime.cgroups import CgroupManager
from peapod.node.runtime.logs import LogOptions, read_logs
from peapod.node.runtime.sandbox import Sandbox, SandboxConfig
from peapod.node.runtime.types import (
    ContainerNotFound,
    ContainerRuntime,
    ContainerRuntimeError,
    ContainerStatus,
)
from peapod.node.statusmanager import StatusManager
from peapod.node.volumes import (
    DownwardValues,
    Mounter,
    VolumeError,
    VolumesNotReady,
    container_mounts,
    create_termination_log,
    discover_volumes,
    prepare_volumes,
    read_termination_message,
    teardown_volumes,
)

log = logging.getLogger(__name__)
Obj = dict[str, Any]

CONFIGMAPS = resource("", "v1", "configmaps")
SECRETS = resource("", "v1", "secrets")
SERVICEACCOUNTS = resource("", "v1", "serviceaccounts")

DEFAULT_POD_PIDS_LIMIT = 4096  # kubelet --pod-max-pids; a fork bomb stays inside its pod
IMAGE_BACKOFF_INITIAL = 10.0
IMAGE_BACKOFF_MAX = 300.0
ANNOTATION_PREFIX = "io.peapod."
CANNOT_RUN_EXIT_CODE = 128  # what containerd reports for a process that could not be started
# runc's words for "the container's process could not be started" (e.g. a missing executable)
_CANNOT_RUN_MARKERS = ("unable to start container process", "executable file not found")


class SandboxService(Protocol):
    """What the executor needs of pod sandboxes (SandboxManager, or the fake)."""

    def get(self, pod_uid: str) -> Sandbox | None: ...

    def healthy(self, sb: Sandbox) -> bool: ...

    async def create(self, cfg: SandboxConfig) -> Sandbox: ...

    async def teardown(self, pod_uid: str) -> None: ...

    def list_uids(self) -> list[str]: ...


@dataclass
class NodeInfo:
    """What pods learn about the node they run on."""

    node_name: str
    host_ips: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    cluster_dns: list[str] = field(default_factory=list)
    cluster_domain: str = "cluster.local"
    allocatable: dict[str, str] = field(default_factory=dict)
    memory_capacity: int = 0
    resolv_conf: str = "/etc/resolv.conf"
    hosts_file: str = "/etc/hosts"
    pod_pids_limit: int | None = DEFAULT_POD_PIDS_LIMIT  # pids.max of each pod's cgroup (None: unlimited)


@dataclass
class _Backoff:
    key: str
    failures: int
    until: float  # clock.monotonic()
    waiting: tuple[str, str]


class Deadline:
    """When a stopping container must be dead (``clock.monotonic()``); only ever moves earlier.

    ``forced``: the pod is gone from the API (a forced delete): no preStop, no minimum grace."""

    def __init__(self, clock: Clock, grace: float) -> None:
        self.clock = clock
        self.at = clock.monotonic() + max(0.0, grace)
        self.forced = grace <= 0
        self.changed = asyncio.Event()

    def shorten(self, grace: float) -> None:
        at = self.clock.monotonic() + max(0.0, grace)
        if at < self.at:
            self.at = at
        if grace <= 0:
            self.forced = True
        self.changed.set()

    def left(self) -> float:
        return self.at - self.clock.monotonic()


def _cannot_run(message: str) -> bool:
    return any(m in message for m in _CANNOT_RUN_MARKERS)


@dataclass
class _PodState:
    backoff: dict[str, _Backoff] = field(default_factory=dict)  # container name -> pull/create back-off


def parse_signal(text: str | int | None) -> int:
    """An image StopSignal ("SIGQUIT", "QUIT", "3") as a number; SIGTERM when unset or unknown."""
    if text is None or text == "":
        return int(_signal.SIGTERM)
    if isinstance(text, int) or str(text).isdigit():
        return int(text)
    name = str(text).upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(_signal.Signals[name])
    except KeyError:
        return int(_signal.SIGTERM)


def _read_in_root(root: str, rel: str) -> str:
    """A file of a container rootfs, only if it resolves inside the rootfs."""
    try:
        base = os.path.realpath(root)
        p = os.path.realpath(os.path.join(base, rel))
        if not p.startswith(base + os.sep):
            return ""
        with open(p, encoding="utf-8", errors="replace") as f:
            return f.read(1 << 20)
    except OSError:
        return ""


class ApiVolumeSources:
    """VolumeSources for one pod, reading ConfigMaps and Secrets through the API."""

    def __init__(self, client: ApiClient, pod: Obj, downward: DownwardValues) -> None:
        self.client = client
        self.pod = pod
        self.downward = downward

    async def _get(self, info: Any, namespace: str, name: str) -> Obj | None:
        try:
            return await self.client.get(info, name, namespace)
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    async def get_configmap(self, namespace: str, name: str) -> Obj | None:
        return await self._get(CONFIGMAPS, namespace, name)

    async def get_secret(self, namespace: str, name: str) -> Obj | None:
        return await self._get(SECRETS, namespace, name)

    async def request_token(self, audience: str | None, expiration: int) -> str:
        md = self.pod["metadata"]
        sa = (self.pod.get("spec") or {}).get("serviceAccountName") or "default"
        body: Obj = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {
            "expirationSeconds": expiration,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": md["name"], "uid": md["uid"]}}}
        if audience:
            body["spec"]["audiences"] = [audience]
        got = await self.client.request(
            "POST", f"/api/v1/namespaces/{md.get('namespace', 'default')}/serviceaccounts/{sa}/token",
            body=body)
        return got["status"]["token"]


class PodExecutor:
    def __init__(
        self,
        *,
        data_dir: Path,
        runtime: ContainerRuntime,
        sandboxes: SandboxService,
        network: PodNetwork,
        images: ImageService,
        client: ApiClient,
        status: StatusManager,
        clock: Clock,
        node: NodeInfo,
        cgroups: CgroupManager | None = None,
        mounter: Mounter | None = None,
        recorder: EventRecorder | None = None,
        probes: ProbeManager | None = None,
    ) -> None:
        self.pods_dir = Path(data_dir) / "pods"
        self.seccomp_dir = Path(data_dir) / "seccomp"  # Localhost seccomp profiles (kubelet's seccomp root)
        own_status = _read_in_root("/proc", "self/status")
        self.min_oom_score_adj = oom_score_floor(own_status, _read_in_root("/proc", "self/oom_score_adj"))
        self.available_caps = current_capabilities(own_status)  # privileged = all of these
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        self.runtime = runtime
        self.sandboxes = sandboxes
        self.network = network
        self.images = images
        self.client = client
        self.status = status
        self.clock = clock
        self.node = node
        self.cgroups = cgroups
        self.mounter = mounter
        self.recorder = recorder
        self.probes = probes
        self._state: dict[str, _PodState] = {}
        self._deadlines: dict[str, set[Deadline]] = {}  # pod uid -> stops in progress

    # ---- paths and records -------------------------------------------------------------------

    def pod_dir(self, uid: str) -> Path:
        if not uid or "/" in uid or uid.startswith("."):
            raise ValueError(f"invalid pod uid {uid!r}")
        return self.pods_dir / uid

    def log_path(self, uid: str, name: str, attempt: int) -> Path:
        return self.pod_dir(uid) / "logs" / name / f"{attempt}.log"

    @staticmethod
    def container_id(uid: str, name: str, attempt: int) -> str:
        return f"{uid}-{name}-{attempt}"

    def records(self, uid: str) -> list[Obj]:
        d = self.pod_dir(uid) / "records"
        out = []
        if d.is_dir():
            for p in sorted(d.glob("*.json")):
                with contextlib.suppress(OSError, json.JSONDecodeError):
                    out.append(json.loads(p.read_text()))
        return out

    def _write_record(self, uid: str, rec: Obj) -> None:
        d = self.pod_dir(uid) / "records"
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f"{rec['id']}.json.tmp"
        tmp.write_text(json.dumps(rec))
        os.replace(tmp, d / f"{rec['id']}.json")

    def _drop_record(self, uid: str, cid: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.pod_dir(uid) / "records" / f"{cid}.json").unlink()
        shutil.rmtree(self.pod_dir(uid) / "bundles" / cid, ignore_errors=True)

    def save_pod(self, pod: Obj) -> None:
        d = self.pod_dir(pod["metadata"]["uid"])
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / "pod.json.tmp"
        tmp.write_text(json.dumps(pod))
        os.replace(tmp, d / "pod.json")

    def saved_pods(self) -> list[Obj]:
        out = []
        for d in sorted(self.pods_dir.iterdir()) if self.pods_dir.is_dir() else []:
            with contextlib.suppress(OSError, json.JSONDecodeError):
                out.append(json.loads((d / "pod.json").read_text()))
        return out

    def local_uids(self) -> list[str]:
        return sorted(d.name for d in self.pods_dir.iterdir() if d.is_dir()) if self.pods_dir.is_dir() else []

    def find_container(self, uid: str, name: str, *, previous: bool = False) -> Obj | None:
        """The record of container ``name``'s newest (or, ``previous``, second newest) instance."""
        recs = sorted((r for r in self.records(uid) if r.get("name") == name),
                      key=lambda r: -int(r["attempt"]))
        idx = 1 if previous else 0
        return recs[idx] if len(recs) > idx else None

    # ---- observation -------------------------------------------------------------------------

    async def observe(self, pod: Obj) -> Observed:
        uid = pod["metadata"]["uid"]
        spec = pod.get("spec") or {}
        sb = self.sandboxes.get(uid)
        ready = False
        if sb is not None and self.sandboxes.healthy(sb):
            ready = bool(spec.get("hostNetwork")) or self.network.status(uid) is not None
        out = []
        for r in self.records(uid):
            out.append(await self._observe_one(pod, r))
        return Observed(sandbox_ready=ready, sandbox_exists=sb is not None, containers=tuple(out))

    async def _observe_one(self, pod: Obj, r: Obj) -> ContainerRecord:
        base = {
            "id": r["id"], "name": r["name"], "attempt": int(r["attempt"]), "hash": r.get("hash", ""),
            "backoff": int(r.get("backoff", 0)), "image": r.get("image", ""),
            "image_id": r.get("image_id", ""),
            "stop_signal": r.get("stop_signal", ""),
        }
        if r.get("cannot_run") is not None:
            at = _parse_time(r.get("failed_at"))
            return ContainerRecord(**base, state="exited", exit_code=CANNOT_RUN_EXIT_CODE,
                                   reason="ContainerCannotRun", message=str(r["cannot_run"]),
                                   created_at=at, started_at=at, finished_at=at)
        try:
            st = await self.runtime.state(r["id"])
        except ContainerNotFound:
            return ContainerRecord(**base, state="exited", exit_code=137, reason="ContainerStatusUnknown",
                                   message="The container could not be located when the pod was terminated")
        state = {ContainerStatus.RUNNING: "running", ContainerStatus.CREATED: "created",
                 ContainerStatus.STOPPED: "exited"}.get(st.status, "unknown")
        message = ""
        if state == "exited":
            message = self._termination_message(pod, r, st.exit_code)
        return ContainerRecord(
            **base, state=state, exit_code=st.exit_code, reason=st.reason, message=message,  # type: ignore[arg-type]
            created_at=st.created_at, started_at=st.started_at, finished_at=st.finished_at,
        )

    def _termination_message(self, pod: Obj, r: Obj, exit_code: int | None) -> str:
        msg = read_termination_message(Path(r["termination_log"])) if r.get("termination_log") else ""
        c = _container_spec(pod, r["name"]) or {}
        fallback = c.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        if not msg and exit_code not in (0, None) and fallback:
            text = read_logs(r.get("log_path", ""), LogOptions(tail=80)).decode(errors="replace")
            msg = text[-2048:]
        return msg

    # ---- probes ------------------------------------------------------------------------------

    def _target(self, pod: Obj, container_id: str) -> Target:
        """Where probes and hooks reach a container instance: pod IP, network namespace."""
        ips = self.pod_ips(pod)
        sb = self.sandboxes.get(pod["metadata"]["uid"])
        netns = None if (pod.get("spec") or {}).get("hostNetwork") or sb is None else sb.netns_path
        return Target(container_id, ips[0] if ips else None, netns)

    def _monotonic(self, at: datetime | None) -> float | None:
        if at is None:
            return None
        return self.clock.monotonic() - (self.clock.now() - at).total_seconds()

    def _with_probes(self, pod: Obj, obs: Observed) -> Observed:
        """Tell the probe manager which instances run; add its verdicts (started, restart wanted)."""
        if self.probes is None:
            return obs
        uid = pod["metadata"]["uid"]
        self.probes.add_pod(pod)
        restarts: dict[str, RestartWanted] = {}
        started: dict[str, bool | None] = {}
        for c in probed_containers(pod):
            name = c.get("name", "")
            rec = obs.latest(name)
            if rec is None or rec.state != "running":
                self.probes.container_stopped(uid, name)
                continue
            self.probes.container_running(uid, name, self._target(pod, rec.id),
                                          started_at=self._monotonic(rec.started_at))
            started[rec.id] = self.probes.started(uid, name)
            req = self.probes.restart_request(uid, name)
            if req is not None and req.container_id == rec.id:
                restarts[rec.id] = RestartWanted(req.message(True), req.message(False), req.grace_period)
        containers = tuple(dataclasses.replace(r, started=started[r.id]) if r.id in started else r
                           for r in obs.containers)
        return dataclasses.replace(obs, containers=containers, restarts=restarts)

    def _probe_verdicts(self, pod: Obj) -> tuple[dict[str, bool], dict[str, bool]]:
        """(readiness, started) of the containers that have such probes."""
        ready: dict[str, bool] = {}
        started: dict[str, bool] = {}
        if self.probes is None:
            return ready, started
        uid = pod["metadata"]["uid"]
        for c in probed_containers(pod):
            name = c.get("name", "")
            r = self.probes.readiness(uid, name)
            if r is not None:
                ready[name] = r
            st = self.probes.started(uid, name)
            if st is not None:
                started[name] = st
        return ready, started

    async def record_event(self, pod: Obj, type_: str, reason: str, message: str, *,
                            field_path: str = "") -> None:
        """The probe manager's and hooks' ``record_event``."""
        await self._event(dict(pod), type_, reason, message, field_path)

    # ---- sync --------------------------------------------------------------------------------

    def _pod_state(self, uid: str) -> _PodState:
        return self._state.setdefault(uid, _PodState())

    def _downward(self, uid: str, pod: Obj) -> DownwardValues:
        net = self.network.status(uid)
        ips = list(net.ips) if net else []
        if (pod.get("spec") or {}).get("hostNetwork"):
            ips = list(self.node.host_ips)
        host_ip = self.node.host_ips[0] if self.node.host_ips else ""
        return DownwardValues(node_name=self.node.node_name, host_ip=host_ip,
                              host_ips=list(self.node.host_ips), pod_ip=ips[0] if ips else "", pod_ips=ips,
                              node_allocatable=dict(self.node.allocatable))

    def pod_ips(self, pod: Obj) -> list[str]:
        if (pod.get("spec") or {}).get("hostNetwork"):
            return list(self.node.host_ips)
        net = self.network.status(pod["metadata"]["uid"])
        return list(net.ips) if net else []

    def _with_status(self, pod: Obj) -> Obj:
        """The pod with the status this agent last computed (newer than the informer's copy)."""
        latest = self.status.get(pod["metadata"]["uid"])
        if latest is None:
            return pod
        return {**pod, "status": {**(pod.get("status") or {}), **latest}}

    async def sync_pod(self, pod: Obj) -> SyncResult:
        uid = pod["metadata"]["uid"]
        self.save_pod(pod)
        ps = self._pod_state(uid)
        obs = self._with_probes(pod, await self.observe(pod))
        rejected = self._admit(pod, obs)
        if rejected is not None:
            reason, message = rejected
            await self._event(pod, "Warning", reason, message)
            self._set_status(pod, obs, {}, failed=(reason, "Pod was rejected: " + message), terminal=True)
            return SyncResult(terminal=True)
        act = plan(self._with_status(pod), obs, self.clock.now())
        if act.failed is not None:
            reason, message = act.failed
            await self._event(pod, "Normal", reason, message)
            self._set_status(pod, obs, {}, failed=act.failed)
        await self._kill(pod, act)
        for cid in act.remove:
            await self._remove_container(uid, cid)
        for name, (reason, _msg) in act.waiting.items():
            if reason == "CrashLoopBackOff":
                await self._event(pod, "Warning", "BackOff", f"Back-off restarting failed container {name} in "
                                  f"pod {format_pod(pod)}", _field_path(pod, name))
        if act.terminal:
            if act.kill:
                self._set_status(pod, await self.observe(pod), {})
            return SyncResult(terminal=True)
        requeue = act.requeue_after
        if act.create_sandbox:
            if act.kill_sandbox:
                await self._teardown_sandbox(pod)
            try:
                await self._create_sandbox(pod)
            except (OSError, NetworkError, RuntimeError, ValueError) as e:
                await self._event(pod, "Warning", "FailedCreatePodSandBox",
                                  f"Failed to create pod sandbox: {e}")
                self._set_status(pod, await self.observe(pod), dict(act.waiting))
                raise
        waiting = dict(act.waiting)
        if act.start:
            prepared = await self._volumes(pod)
            if prepared is None:
                self._set_status(pod, await self.observe(pod), waiting)
                return SyncResult(requeue_after=2.0)
            for group in self._start_groups(pod, act.start):
                if len(group) == 1:
                    oks = [await self._start(pod, group[0], prepared, waiting, ps)]
                else:
                    oks = await asyncio.gather(*(self._start(pod, s, prepared, waiting, ps) for s in group))
                for s, ok in zip(group, oks, strict=True):
                    if not ok and s.name not in waiting:
                        requeue = 0.0  # it could not run (a new exited instance): plan again now
                if any(not ok and s.kind != "app" for s, ok in zip(group, oks, strict=True)):
                    break  # init containers and sidecars start in order
            for b in ps.backoff.values():
                left = b.until - self.clock.monotonic()
                if left > 0:
                    requeue = left if requeue is None else min(requeue, left)
        self._set_status(pod, await self.observe(pod), waiting)
        return SyncResult(requeue_after=requeue)

    def _start_groups(self, pod: Obj, starts: Sequence[StartContainer]) -> list[list[StartContainer]]:
        """Containers to start together. Init containers and sidecars go one at a time, in order; app
        containers whose image is already here are created side by side (runc's work for one does not
        wait for another's), but one with a postStart hook ends its group: as in kubelet, the next
        container starts only once that hook completed. A container that may pull starts alone."""
        groups: list[list[StartContainer]] = []
        batch: list[StartContainer] = []
        for s in starts:
            c = _container_spec(pod, s.name) or {}
            ref = c.get("image", "")
            try:
                local = (c.get("imagePullPolicy") or default_pull_policy(ref)) != "Always" and \
                    self.images.get(ref) is not None
            except Exception:  # an invalid reference: _start reports it
                local = False
            if s.kind != "app" or not local:
                if batch:
                    groups.append(batch)
                    batch = []
                groups.append([s])
                continue
            batch.append(s)
            if (c.get("lifecycle") or {}).get("postStart"):
                groups.append(batch)
                batch = []
        if batch:
            groups.append(batch)
        return groups

    @staticmethod
    def _admit(pod: Obj, obs: Observed) -> tuple[str, str] | None:
        """kubelet's admission of a new pod (reason, message) when refused: sysctls outside the safe
        set. Only a pod that never ran is refused (what already runs was admitted)."""
        if obs.containers or obs.sandbox_exists or (pod.get("metadata") or {}).get("deletionTimestamp"):
            return None
        message = forbidden_sysctl(pod)
        return ("SysctlForbidden", message) if message else None

    def _set_status(self, pod: Obj, obs: Observed, waiting: Mapping[str, tuple[str, str]], *,
                    terminal: bool = False, sandbox_ready: bool | None = None,
                    failed: tuple[str, str] | None = None) -> None:
        readiness, started = self._probe_verdicts(pod)
        status = compute_status(self._with_status(pod), StatusInputs(
            observed=obs, waiting=waiting, pod_ips=self.pod_ips(pod), host_ips=self.node.host_ips,
            start_time=self.clock.now(), terminal=terminal, sandbox_ready=sandbox_ready,
            readiness=readiness, started=started, failed=failed), self.clock.now())
        self.status.set_status(pod, status)

    async def _event(self, pod: Obj, type_: str, reason: str, message: str, field_path: str = "") -> None:
        if self.recorder is not None:
            await self.recorder.record({"kind": "Pod", "apiVersion": "v1", **pod}, type_, reason, message,
                                       field_path=field_path)

    # ---- sandbox -----------------------------------------------------------------------------

    def _sandbox_config(self, pod: Obj) -> SandboxConfig:
        md, spec = pod["metadata"], pod.get("spec") or {}
        res = pod_resources(pod, pids_limit=self.node.pod_pids_limit)
        return SandboxConfig(
            pod_uid=md["uid"], name=md["name"], namespace=md.get("namespace", "default"),
            hostname=spec.get("hostname"), host_network=bool(spec.get("hostNetwork")),
            host_ipc=bool(spec.get("hostIPC")), host_pid=bool(spec.get("hostPID")),
            share_process_namespace=bool(spec.get("shareProcessNamespace")),
            memory_limit=res.memory_limit, cpu_shares=res.cpu_shares, cpu_quota=res.cpu_quota,
            cpu_period=res.cpu_period or CPU_PERIOD, pids_limit=res.pids_limit,
        )

    async def _create_sandbox(self, pod: Obj) -> Sandbox:
        md, spec = pod["metadata"], pod.get("spec") or {}
        uid = md["uid"]
        sb = await self.sandboxes.create(self._sandbox_config(pod))
        ips: list[str] = []
        if not spec.get("hostNetwork"):
            assert sb.netns_path is not None
            ports = [PortMapping(host_port=int(p["hostPort"]), container_port=int(p["containerPort"]),
                                 protocol=(p.get("protocol") or "TCP").lower(), host_ip=p.get("hostIP") or "")
                     for c in spec.get("containers") or [] for p in c.get("ports") or [] if p.get("hostPort")]
            try:
                net = await self.network.setup(uid, sb.netns_path, ports, pod_name=md["name"],
                                               pod_namespace=md.get("namespace", "default"))
            except BaseException:
                with contextlib.suppress(Exception):
                    await self.sandboxes.teardown(uid)
                raise
            ips = list(net.ips)
        else:
            ips = list(self.node.host_ips)
        await asyncio.to_thread(self._write_host_files, pod, sb, ips)
        return sb

    def _node_resolv(self) -> str:
        text = node_file(self.node.resolv_conf)
        rc = parse_resolv_conf(text)
        if rc.nameservers and all(_is_loopback(ns) for ns in rc.nameservers):
            alt = node_file("/run/systemd/resolve/resolv.conf")
            if alt:
                return alt
        return text

    def _write_host_files(self, pod: Obj, sb: Sandbox, ips: Sequence[str]) -> None:
        md, spec = pod["metadata"], pod.get("spec") or {}
        host_net = bool(spec.get("hostNetwork"))
        write_pod_file(sb.hosts_path, render_hosts(
            pod_ips=ips, hostname=sb.hostname, subdomain=spec.get("subdomain"),
            namespace=md.get("namespace", "default"), cluster_domain=self.node.cluster_domain,
            host_aliases=spec.get("hostAliases") or [], host_network=host_net,
            node_hosts=node_file(self.node.hosts_file) if host_net else ""))
        write_pod_file(sb.resolv_conf_path, render_resolv_conf(
            dns_policy=spec.get("dnsPolicy") or "ClusterFirst", node_resolv=self._node_resolv(),
            cluster_dns=self.node.cluster_dns, cluster_domain=self.node.cluster_domain,
            namespace=md.get("namespace", "default"), dns_config=spec.get("dnsConfig"),
            host_network=host_net))

    async def _teardown_sandbox(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        sb = self.sandboxes.get(uid)
        if not (pod.get("spec") or {}).get("hostNetwork") or self.network.status(uid) is not None:
            await self.network.teardown(uid, sb.netns_path if sb else None)
        await self.sandboxes.teardown(uid)

    # ---- volumes -----------------------------------------------------------------------------

    async def _volumes(self, pod: Obj) -> dict[str, Any] | None:
        uid = pod["metadata"]["uid"]
        sources = ApiVolumeSources(self.client, pod, self._downward(uid, pod))
        try:
            return await prepare_volumes(pod, self.pod_dir(uid), sources=sources, mounter=self.mounter,
                                         clock=self.clock)
        except VolumesNotReady as e:
            for err in e.errors:
                await self._event(pod, "Warning", "FailedMount", str(err))
            return None

    # ---- containers --------------------------------------------------------------------------

    async def _pull_auth(self, pod: Obj) -> list[Obj] | None:
        ns = pod["metadata"].get("namespace", "default")
        out = []
        for ref in (pod.get("spec") or {}).get("imagePullSecrets") or []:
            try:
                s = await self.client.get(SECRETS, ref.get("name", ""), ns)
            except ApiError:
                continue
            data = s.get("data") or {}
            for key in (".dockerconfigjson", ".dockercfg"):
                if key in data:
                    with contextlib.suppress(ValueError):
                        out.append(json.loads(base64.b64decode(data[key])))
        return out or None

    async def _env_sources(self, pod: Obj, c: Obj) -> EnvSources:
        ns = pod["metadata"].get("namespace", "default")
        cm_names, secret_names = referenced_objects(c)
        src = ApiVolumeSources(self.client, pod, self._downward(pod["metadata"]["uid"], pod))
        cms = {n: await src.get_configmap(ns, n) for n in cm_names}
        secrets = {n: await src.get_secret(ns, n) for n in secret_names}
        return EnvSources(configmaps=cms, secrets=secrets, downward=src.downward)

    def _image_backoff(self, ps: _PodState, name: str, ref: str, reason: str, message: str) -> None:
        b = ps.backoff.get(name)
        failures = b.failures + 1 if b is not None and b.key == ref else 1
        delay = min(IMAGE_BACKOFF_INITIAL * 2 ** (failures - 1), IMAGE_BACKOFF_MAX)
        ps.backoff[name] = _Backoff(ref, failures, self.clock.monotonic() + delay, (reason, message))

    async def _start(self, pod: Obj, s: StartContainer, prepared: dict[str, Any],
                     waiting: dict[str, tuple[str, str]], ps: _PodState) -> bool:
        md = pod["metadata"]
        uid = md["uid"]
        c = _container_spec(pod, s.name)
        assert c is not None
        fp = _field_path(pod, s.name)
        ref = c.get("image", "")
        b = ps.backoff.get(s.name)
        if b is not None and b.key == ref and self.clock.monotonic() < b.until:
            waiting[s.name] = ("ImagePullBackOff", f'Back-off pulling image "{ref}"') \
                if b.waiting[0] in ("ErrImagePull", "ImagePullBackOff") else b.waiting
            return False
        policy = c.get("imagePullPolicy") or default_pull_policy(ref)
        try:
            if policy != "Always" and self.images.get(ref) is not None:
                image = self.images.get(ref)
                assert image is not None
            else:
                await self._event(pod, "Normal", "Pulling", f'Pulling image "{ref}"', fp)
                image = await self.images.ensure(ref, policy, await self._pull_auth(pod))
                await self._event(pod, "Normal", "Pulled", f'Successfully pulled image "{ref}"', fp)
        except ImageNeverPullError as e:
            waiting[s.name] = ("ErrImageNeverPull", str(e))
            return False
        except InvalidReferenceError as e:
            waiting[s.name] = ("InvalidImageName", f'Failed to apply default image tag "{ref}": {e}')
            return False
        except ImageError as e:
            waiting[s.name] = ("ErrImagePull", str(e))
            self._image_backoff(ps, s.name, ref, "ErrImagePull", str(e))
            await self._event(pod, "Warning", "Failed", f"Failed to pull image \"{ref}\": {e}", fp)
            return False
        ps.backoff.pop(s.name, None)
        cid = self.container_id(uid, s.name, s.attempt)
        with contextlib.suppress(ContainerNotFound):
            await self.runtime.remove(cid)  # leftovers of a failed earlier try
        pod_dir = self.pod_dir(uid)
        try:
            env = build_env(pod, c, await self._env_sources(pod, c))
            mounts = await asyncio.to_thread(container_mounts, pod, c, prepared, env=dict(env),
                                             mounter=self.mounter)
        except (EnvError, VolumeError) as e:
            waiting[s.name] = (getattr(e, "reason", "CreateContainerConfigError"), str(e))
            await self._event(pod, "Warning", "Failed", f"Error: {e}", fp)
            return False
        rootfs = await self.images.prepare_rootfs(image, cid)
        sb = self.sandboxes.get(uid)
        assert sb is not None
        term_log = await asyncio.to_thread(create_termination_log, pod_dir, s.name)
        log_path = self.log_path(uid, s.name, s.attempt)
        annotations = {
            "io.kubernetes.pod.uid": uid, "io.kubernetes.pod.name": md["name"],
            "io.kubernetes.pod.namespace": md.get("namespace", "default"),
            "io.kubernetes.container.name": s.name,
            "io.kubernetes.container.restartCount": str(s.attempt),
            "io.kubernetes.container.hash": container_hash(c),
            ANNOTATION_PREFIX + "backoff": str(s.backoff), ANNOTATION_PREFIX + "kind": s.kind,
        }
        try:
            passwd = await asyncio.to_thread(_read_in_root, str(rootfs), "etc/passwd")
            group = await asyncio.to_thread(_read_in_root, str(rootfs), "etc/group")
            hostname = sb.hostname if not sb.host_network else os.uname().nodename
            profile_rel = localhost_profile_path(pod, c)
            localhost = None if profile_rel is None or (c.get("securityContext") or {}).get("privileged") \
                else await asyncio.to_thread(read_localhost_profile, self.seccomp_dir, profile_rel)
            cfg = build_container_config(ContainerInputs(
                pod=pod, container=c, image=image.config, rootfs=str(rootfs), env=env, mounts=mounts,
                files=PodFiles(namespaces=sb.namespaces(), hostname=hostname, shm_path=sb.shm_path,
                               hosts_path=sb.hosts_path, resolv_conf_path=sb.resolv_conf_path,
                               hostname_path=sb.hostname_path),
                cgroups_path=self.cgroups.container_relpath(uid, cid) if self.cgroups else None,
                termination_log_path=str(term_log), passwd=passwd, group=group, annotations=annotations,
                node_memory=self.node.memory_capacity,
                host_devices=_host_devices() if (c.get("securityContext") or {}).get("privileged") else (),
                localhost_seccomp=localhost, min_oom_score_adj=self.min_oom_score_adj,
            ))
        except ConfigError as e:
            waiting[s.name] = (e.reason, str(e))
            await self.images.release_rootfs(cid)
            await self._event(pod, "Warning", "Failed", f"Error: {e}", fp)
            return False
        bundle = await asyncio.to_thread(write_bundle, pod_dir / "bundles" / cid,
                                       build_spec(cfg, available_caps=self.available_caps))
        image_id = image.repo_digests[0] if image.repo_digests else image.id
        self._write_record(uid, {
            "id": cid, "name": s.name, "attempt": s.attempt, "kind": s.kind, "hash": container_hash(c),
            "backoff": s.backoff, "image": ref, "image_id": image_id, "image_local_id": image.id,
            "stop_signal": image.config.stop_signal, "log_path": str(log_path),
            "termination_log": str(term_log), "bundle": str(bundle),
        })
        created = False
        try:
            await self.runtime.create(cid, str(bundle), str(log_path))
            created = True
            await self._event(pod, "Normal", "Created", f"Created container {s.name}", fp)
            await self.runtime.start(cid)
        except ContainerRuntimeError as e:
            reason = "RunContainerError" if created else "CreateContainerError"
            await self._event(pod, "Warning", "Failed", f"Error: {e}", fp)
            if _cannot_run(str(e)):
                await self._cannot_start(uid, cid, str(e))
                return False
            await self._abandon(uid, cid)
            waiting[s.name] = (reason, str(e))
            self._image_backoff(ps, s.name, ref, reason, str(e))
            return False
        await self._event(pod, "Normal", "Started", f"Started container {s.name}", fp)
        target = self._target(pod, cid)
        # postStart blocks (kubelet: the container counts as running only once it completed)
        if (c.get("lifecycle") or {}).get("postStart"):
            res = await run_post_start(pod=pod, container=c, target=target, runtime=self.runtime,
                                       clock=self.clock, record_event=self.record_event)
            if not res.ok:
                # kubelet: kill it (its preStop runs too); it then restarts per the restart policy
                await self._event(pod, "Normal", "Killing", "FailedPostStartHook", fp)
                dl = Deadline(self.clock, self._kill_grace(pod, None))
                await self._stop_tracked(pod, cid, s.name, dl)
                policy = (pod.get("spec") or {}).get("restartPolicy") or "Always"
                if s.kind == "sidecar" or policy != "Never":
                    # it will be restarted: waiting, with kubelet's reason (its reasonCache)
                    waiting[s.name] = ("PostStartHookError", res.message)
                return False
        if self.probes is not None:
            self.probes.container_running(uid, s.name, target)
        return True

    async def _cannot_start(self, uid: str, cid: str, message: str) -> None:
        """Keep the instance as one that exited at once (ContainerCannotRun), without its container."""
        with contextlib.suppress(ContainerRuntimeError):
            await self.runtime.remove(cid)
        with contextlib.suppress(Exception):
            await self.images.release_rootfs(cid)
        rec = next((r for r in self.records(uid) if r["id"] == cid), None)
        if rec is not None:
            rec = {**rec, "cannot_run": message, "failed_at": self.clock.now().isoformat()}
            self._write_record(uid, rec)

    async def _abandon(self, uid: str, cid: str) -> None:
        with contextlib.suppress(ContainerRuntimeError):
            await self.runtime.remove(cid)
        with contextlib.suppress(Exception):
            await self.images.release_rootfs(cid)
        self._drop_record(uid, cid)

    async def _remove_container(self, uid: str, cid: str) -> None:
        with contextlib.suppress(ContainerNotFound):
            await self.runtime.remove(cid)
        await self.images.release_rootfs(cid)
        rec = next((r for r in self.records(uid) if r["id"] == cid), None)
        if rec is not None:
            for key in ("log_path", "termination_log"):
                if rec.get(key):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(rec[key])
        self._drop_record(uid, cid)

    def _kill_grace(self, pod: Obj, override: int | None) -> int:
        """kubelet's setTerminationGracePeriod: the deletion's, else the probe's, else the pod's."""
        md, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        if md.get("deletionGracePeriodSeconds") is not None:
            return max(0, int(md["deletionGracePeriodSeconds"]))
        if override is not None:
            return max(0, int(override))
        g = spec.get("terminationGracePeriodSeconds")
        return 30 if g is None else max(0, int(g))

    def shorten_grace(self, uid: str, grace: int) -> None:
        """A later delete asked for less time (0: the pod is gone from the API): stops in progress
        end earlier (SIGKILL at the new deadline)."""
        for dl in list(self._deadlines.get(uid, ())):
            dl.shorten(grace)

    async def _stop_tracked(self, pod: Obj, cid: str, name: str, dl: Deadline) -> None:
        uid = pod["metadata"]["uid"]
        self._deadlines.setdefault(uid, set()).add(dl)
        try:
            await self._stop_container(pod, cid, name, dl)
        finally:
            dls = self._deadlines.get(uid)
            if dls is not None:
                dls.discard(dl)
                if not dls:
                    self._deadlines.pop(uid, None)

    async def _until(self, dl: Deadline, aw: Any) -> bool:
        """Await ``aw`` until it ends or the deadline passes; True if it ended. A shortened deadline
        is noticed at once. What has not ended is cancelled."""
        task = asyncio.ensure_future(aw)
        try:
            while not task.done():
                left = dl.at - self.clock.monotonic()
                if left <= 0:
                    break
                dl.changed.clear()
                waiter = asyncio.ensure_future(dl.changed.wait())
                timer = asyncio.ensure_future(self.clock.sleep(left))
                try:
                    await asyncio.wait([task, waiter, timer], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                    timer.cancel()
            return task.done()
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _stop_container(self, pod: Obj, cid: str, name: str, dl: Deadline) -> None:
        """kubelet's killContainer: preStop, then the stop signal, then SIGKILL at the deadline."""
        uid = pod["metadata"]["uid"]
        rec = next((r for r in self.records(uid) if r["id"] == cid), {})
        try:
            st = await self.runtime.state(cid)
        except ContainerNotFound:
            return
        if st.status not in (ContainerStatus.RUNNING, ContainerStatus.CREATED):
            return
        c = _container_spec(pod, name) or {}
        if st.status == ContainerStatus.RUNNING and (c.get("lifecycle") or {}).get("preStop") \
                and not dl.forced and dl.left() > 0:
            await self._until(dl, run_pre_stop(
                pod=pod, container=c, target=self._target(pod, cid), runtime=self.runtime, clock=self.clock,
                deadline=dl.at, record_event=self.record_event))
        left = max(0.0, dl.left())
        if not dl.forced:
            left = max(left, float(MIN_GRACE_AFTER_HOOK))  # always a minimal window for the signal
        kill_at = self.clock.monotonic() + left
        base = dl.at
        stop = asyncio.ensure_future(self.runtime.stop(cid, left, parse_signal(rec.get("stop_signal"))))
        try:
            # The runtime SIGKILLs at its own timeout; this loop covers a deadline shortened meanwhile.
            while not stop.done():
                dl.changed.clear()
                end = kill_at if dl.at >= base else min(kill_at, dl.at)
                wait = end - self.clock.monotonic()
                if wait <= 0:
                    with contextlib.suppress(ContainerRuntimeError):
                        await self.runtime.kill(cid, _signal.SIGKILL)
                    break
                waiter = asyncio.ensure_future(dl.changed.wait())
                timer = asyncio.ensure_future(self.clock.sleep(wait))
                try:
                    await asyncio.wait([stop, waiter, timer], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                    timer.cancel()
            await stop
        except ContainerNotFound:
            pass
        except ContainerRuntimeError as e:
            log.warning("stopping container %s: %s", cid, e)
        finally:
            if not stop.done():
                stop.cancel()

    async def _kill(self, pod: Obj, act: Actions) -> None:
        if not act.kill:
            return
        for k in act.kill:
            await self._event(pod, "Normal", "Killing", k.message or f"Stopping container {k.name}",
                              _field_path(pod, k.name))
        await asyncio.gather(*(self._stop_tracked(pod, k.id, k.name,
                                                  Deadline(self.clock, self._kill_grace(pod, k.grace)))
                               for k in act.kill))

    # ---- termination -------------------------------------------------------------------------

    async def terminate_pod(self, pod: Obj, grace: int) -> None:
        """Stop every container: app (and regular init) containers together, then the sidecars in
        reverse order, all within one ``grace`` counted from now (a later shorter delete shortens it)."""
        if self.probes is not None:
            self.probes.pod_terminating(pod["metadata"]["uid"])
        obs = await self.observe(pod)
        alive = [r for r in obs.containers if r.state in ("running", "created")]
        inits = [c for c in (pod.get("spec") or {}).get("initContainers") or [] if is_sidecar(c)]
        sidecar_names = [c["name"] for c in inits]
        first = [r for r in alive if r.name not in sidecar_names]
        dl = Deadline(self.clock, grace)
        for r in alive:
            await self._event(pod, "Normal", "Killing", f"Stopping container {r.name}",
                              _field_path(pod, r.name))
        await asyncio.gather(*(self._stop_tracked(pod, r.id, r.name, dl) for r in first))
        for name in reversed(sidecar_names):
            await asyncio.gather(*(self._stop_tracked(pod, r.id, r.name, dl) for r in alive if r.name == name))
        self._set_status(pod, await self.observe(pod), {}, terminal=True)

    async def cleanup_pod(self, pod: Obj, removed: bool) -> bool:
        """Release the pod's sandbox, network and volumes. When the pod is deleted (or gone from the
        API) also remove its containers and files, and send the final delete. True when done for good."""
        uid = pod["metadata"]["uid"]
        full = removed or bool((pod.get("metadata") or {}).get("deletionTimestamp"))
        # stop anything still running (a container started while termination was decided)
        for r in self.records(uid):
            await self._stop_tracked(pod, r["id"], r["name"], Deadline(self.clock, 0))
        if self.probes is not None:
            await self.probes.remove_pod(uid)
        obs = await self.observe(pod)
        await self._teardown_sandbox(pod)
        pod_dir = self.pod_dir(uid)
        await asyncio.to_thread(teardown_volumes, uid, pod_dir, mounter=self.mounter)
        await self._release_rootfs_of(uid)
        if not full:
            self._set_status(pod, obs, {}, terminal=True, sandbox_ready=False)
            return False
        for r in self.records(uid):
            await self._remove_container(uid, r["id"])
        if not removed:
            self._set_status(pod, obs, {}, terminal=True, sandbox_ready=False)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.status.flush(), 10)
            await self.status.delete_pod(pod)
        shutil.rmtree(pod_dir, ignore_errors=True)
        self._state.pop(uid, None)
        self.status.forget(uid)
        return True

    async def _release_rootfs_of(self, uid: str) -> None:
        """Release every rootfs of pod ``uid``: those its records name, and any a crash left without
        a record (the agent died between mounting a rootfs and recording its container)."""
        ids = {r["id"] for r in self.records(uid)}
        listed = getattr(self.images, "rootfs_ids", None)
        if listed is not None:
            ids |= {cid for cid in listed() if cid.startswith(uid + "-")}
        for cid in sorted(ids):
            await self.images.release_rootfs(cid)

    async def remove_orphan(self, uid: str) -> None:
        """Remove whatever this node holds of pod ``uid`` (no API object any more)."""
        if self.probes is not None:
            await self.probes.remove_pod(uid)
        for r in self.records(uid):
            with contextlib.suppress(ContainerRuntimeError):
                await self.runtime.remove(r["id"])
        with contextlib.suppress(Exception):
            await self._release_rootfs_of(uid)
        sb = self.sandboxes.get(uid)
        with contextlib.suppress(NetworkError):
            await self.network.teardown(uid, sb.netns_path if sb else None)
        await self.sandboxes.teardown(uid)
        if self.pod_dir(uid).exists():
            await asyncio.to_thread(teardown_volumes, uid, self.pod_dir(uid), mounter=self.mounter)
            shutil.rmtree(self.pod_dir(uid), ignore_errors=True)
        self._state.pop(uid, None)

    def prepared_volumes(self, pod: Obj) -> dict[str, Any]:
        return discover_volumes(pod, self.pod_dir(pod["metadata"]["uid"]))


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _container_spec(pod: Obj, name: str) -> Obj | None:
    spec = pod.get("spec") or {}
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            if c.get("name") == name:
                return c
    return None


def _field_path(pod: Obj, name: str) -> str:
    spec = pod.get("spec") or {}
    for key in ("initContainers", "containers"):
        if any(c.get("name") == name for c in spec.get(key) or []):
            return f"spec.{key}{{{name}}}"
    return ""


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def _host_devices() -> list[Any]:
    from peapod.node.runtime.bundle import host_devices

    return host_devices()
