"""The Node object and its heartbeat: registration, capacity, conditions, and the node Lease.

The Lease in ``kube-node-lease`` is renewed every 10 s (it is the cheap heartbeat the node
lifecycle controller watches); the Node status is patched when something changed and at least
every 5 minutes (kubelet's nodeStatusReportFrequency).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import platform
import shutil
import socket
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from peapod.api.errors import ApiError
from peapod.api.resources import resource
from peapod.client.rest import ApiClient
from peapod.clock import Clock, rfc3339, rfc3339_micro

log = logging.getLogger(__name__)

NODES = resource("", "v1", "nodes")
LEASES = resource("coordination.k8s.io", "v1", "leases")
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION = 40
LEASE_RENEW_INTERVAL = 10.0
STATUS_REPORT_INTERVAL = 300.0
KUBELET_VERSION = "v1.33.0-peapod"
MAX_PODS = 110
MEMORY_RESERVE = 100 * 1024 * 1024  # kubelet's default hard eviction threshold (memory.available<100Mi)
Obj = dict[str, Any]

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x",
         "riscv64": "riscv64"}


@dataclass(frozen=True)
class NodeFacts:
    """What the node reports about itself (gathered once by :func:`gather_facts`)."""

    hostname: str
    cpus: int
    memory: int  # bytes (MemTotal)
    storage: int  # bytes of the data dir's filesystem
    kernel: str
    os_image: str
    arch: str
    runc_version: str
    machine_id: str = ""
    boot_id: str = ""
    addresses: Sequence[str] = ("127.0.0.1",)


def meminfo_total(text: str) -> int:
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            return int(parts[1]) * (1024 if len(parts) > 2 and parts[2].lower() == "kb" else 1)
    return 0


def os_release_name(text: str) -> str:
    vals = {}
    for line in text.splitlines():
        k, _, v = line.partition("=")
        vals[k.strip()] = v.strip().strip('"')
    return vals.get("PRETTY_NAME") or vals.get("NAME") or "Linux"


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _runc_version(runc: str) -> str:
    try:
        out = subprocess.run([runc, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    first = out.splitlines()[0] if out else ""
    return first.split("version", 1)[1].strip() if "version" in first else "unknown"


def host_addresses() -> list[str]:
    """Global IPv4 addresses of the host (no traffic is sent to find them)."""
    ip = shutil.which("ip") or "/usr/sbin/ip"
    try:
        out = subprocess.run([ip, "-j", "-4", "addr", "show", "scope", "global"], capture_output=True,
                             text=True, timeout=10).stdout
        ifaces = json.loads(out or "[]")
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return []
    addrs = []
    for itf in ifaces:
        name = itf.get("ifname", "")
        if name.startswith(("veth", "cni", "peapod", "ppt", "docker", "podman")):
            continue
        for a in itf.get("addr_info") or []:
            if a.get("local"):
                addrs.append(a["local"])
    return addrs


def gather_facts(data_dir: Path, *, runc: str = "/usr/bin/runc",
                 addresses: Sequence[str] | None = None) -> NodeFacts:
    try:
        st = os.statvfs(data_dir)
        storage = st.f_blocks * st.f_frsize
    except OSError:
        storage = 0
    uname = os.uname()
    return NodeFacts(
        hostname=socket.gethostname().lower(),
        cpus=len(os.sched_getaffinity(0)) or os.cpu_count() or 1,
        memory=meminfo_total(_read("/proc/meminfo")),
        storage=storage,
        kernel=uname.release,
        os_image=os_release_name(_read("/etc/os-release")),
        arch=_ARCH.get(platform.machine(), platform.machine()),
        runc_version=_runc_version(runc),
        machine_id=_read("/etc/machine-id").strip(),
        boot_id=_read("/proc/sys/kernel/random/boot_id").strip(),
        addresses=list(addresses) if addresses else (host_addresses() or ["127.0.0.1"]),
    )


def capacity(facts: NodeFacts) -> tuple[dict[str, str], dict[str, str]]:
    cap = {"cpu": str(facts.cpus), "memory": f"{facts.memory // 1024}Ki", "pods": str(MAX_PODS),
           "ephemeral-storage": f"{facts.storage // 1024}Ki"}
    alloc = {"cpu": str(facts.cpus), "memory": f"{max(0, facts.memory - MEMORY_RESERVE) // 1024}Ki",
             "pods": str(MAX_PODS), "ephemeral-storage": str(facts.storage * 9 // 10)}
    return cap, alloc


_CONDITIONS = (
    ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)


def node_conditions(previous: Sequence[Mapping[str, Any]], now: datetime) -> list[Obj]:
    prev = {c.get("type"): c for c in previous}
    out = []
    for ctype, status, reason, message in _CONDITIONS:
        old = prev.get(ctype) or {}
        since = old.get("lastTransitionTime") if old.get("status") == status else None
        out.append({"type": ctype, "status": status, "reason": reason, "message": message,
                    "lastHeartbeatTime": rfc3339(now), "lastTransitionTime": since or rfc3339(now)})
    return out


def build_node_status(facts: NodeFacts, *, port: int, previous: Obj | None, now: datetime,
                      images: Sequence[Obj] = ()) -> Obj:
    cap, alloc = capacity(facts)
    addresses = [{"type": "InternalIP", "address": a} for a in facts.addresses]
    addresses.append({"type": "Hostname", "address": facts.hostname})
    status: Obj = {
        "capacity": cap,
        "allocatable": alloc,
        "addresses": addresses,
        "conditions": node_conditions((previous or {}).get("conditions") or [], now),
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": {
            "machineID": facts.machine_id, "systemUUID": facts.machine_id, "bootID": facts.boot_id,
            "kernelVersion": facts.kernel, "osImage": facts.os_image,
            "containerRuntimeVersion": f"runc://{facts.runc_version}", "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": facts.arch,
        },
    }
    if images:
        status["images"] = list(images)
    return status


def build_node(name: str, facts: NodeFacts, *, labels: Mapping[str, str] | None = None,
               pod_cidr: str | None = None) -> Obj:
    node: Obj = {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": facts.arch,
            "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": facts.arch, **(labels or {})}},
        "spec": {},
    }
    if pod_cidr:
        node["spec"] = {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]}
    return node


def _comparable(status: Obj) -> Obj:
    """A Node status without heartbeat times (what "changed" means)."""
    s = dict(status)
    s["conditions"] = [{k: v for k, v in c.items() if k != "lastHeartbeatTime"}
                       for c in s.get("conditions") or []]
    return s


@dataclass
class NodeStatusReporter:
    client: ApiClient
    node_name: str
    facts: NodeFacts
    clock: Clock
    port: int = 10250
    labels: dict[str, str] = field(default_factory=dict)
    pod_cidr: str | None = None
    images: Callable[[], Sequence[Obj]] = lambda: ()
    node_uid: str = ""
    _last_status: Obj | None = None
    _last_report: float = -1e18
    lease_renewals: int = 0

    async def register(self) -> Obj:
        """Create the Node, or adopt an existing one of the same name (labels merged)."""
        node = build_node(self.node_name, self.facts, labels=self.labels, pod_cidr=self.pod_cidr)
        try:
            got = await self.client.create(NODES, node)
        except ApiError as e:
            if e.code != 409:
                raise
            patch: Obj = {"metadata": {"labels": node["metadata"]["labels"]}}
            if self.pod_cidr:
                patch["spec"] = node["spec"]
            got = await self.client.patch(NODES, self.node_name, patch)
        self.node_uid = got["metadata"].get("uid", "")
        await self.report(force=True, previous=got.get("status"))
        await self.renew_lease()
        return got

    async def report(self, *, force: bool = False, previous: Obj | None = None) -> bool:
        """Patch the Node status if it changed or the report interval passed; True if patched."""
        now = self.clock.now()
        prev = previous if previous is not None else self._last_status
        status = build_node_status(self.facts, port=self.port, previous=prev, now=now, images=self.images())
        due = self.clock.monotonic() - self._last_report >= STATUS_REPORT_INTERVAL
        if not force and not due and self._last_status is not None and \
                _comparable(status) == _comparable(self._last_status):
            return False
        got = await self.client.patch(NODES, self.node_name, {"status": status}, subresource="status")
        self._last_status = got.get("status") or status
        self._last_report = self.clock.monotonic()
        return True

    def _lease(self) -> Obj:
        now = rfc3339_micro(self.clock.now())
        lease: Obj = {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": self.node_name, "namespace": LEASE_NAMESPACE},
            "spec": {"holderIdentity": self.node_name, "leaseDurationSeconds": LEASE_DURATION,
                     "renewTime": now},
        }
        if self.node_uid:
            lease["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node",
                                                     "name": self.node_name,
                                                     "uid": self.node_uid}]
        return lease

    async def renew_lease(self) -> None:
        lease = self._lease()
        try:
            await self.client.patch(LEASES, self.node_name, {"spec": lease["spec"]}, LEASE_NAMESPACE)
        except ApiError as e:
            if e.code != 404:
                raise
            with contextlib.suppress(ApiError):
                await self.client.create(LEASES, lease, LEASE_NAMESPACE)
        self.lease_renewals += 1

    async def run(self) -> None:
        """Renew the lease every 10 s and report status when due; errors are retried next round."""
        while True:
            await self.clock.sleep(LEASE_RENEW_INTERVAL)
            for step in (self.renew_lease, self.report):
                try:
                    await step()
                except asyncio.CancelledError:
                    raise
                except ApiError as e:
                    if e.code == 404 and step == self.report:
                        with contextlib.suppress(ApiError, OSError):
                            await self.register()  # the Node was deleted: register again
                    else:
                        log.info("node heartbeat (%s): %s", step.__name__, e.message)
                except Exception as e:
                    log.info("node heartbeat (%s): %s", step.__name__, e)
