"""Real runc + conmon + CNI harness: pods from a sandbox, a network and containers on a busybox rootfs.

Every test gets its own data dir, cgroup parent and a leak check in teardown; the session shares
one bridge (a random name and a random /24 of 10.77.0.0/16), removed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from peapod.node.network.cni import CniConfig, CniNetwork
from peapod.node.network.hostfiles import render_hosts, render_resolv_conf, write_pod_file
from peapod.node.network.types import NetworkStatus, PortMapping
from peapod.node.runtime.bundle import build_spec, write_bundle
from peapod.node.runtime.cgroups import CgroupManager
from peapod.node.runtime.runc_runtime import RuncRuntime
from peapod.node.runtime.sandbox import Sandbox, SandboxConfig, SandboxManager, mount_points
from peapod.node.runtime.types import ContainerConfig
from peapod.testing.rootfs import build_busybox_rootfs

NEEDED = ("/usr/bin/runc", "/usr/bin/conmon", "/usr/lib/cni/bridge", "/usr/bin/catatonit", "/bin/busybox")



def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    missing = [p for p in NEEDED if not os.path.exists(p)]
    for item in items:
        if "e2e/runtime" not in str(item.fspath):
            continue
        item.add_marker(pytest.mark.e2e)
        if os.geteuid() != 0:
            item.add_marker(pytest.mark.skip(reason="needs root"))
        elif missing:
            item.add_marker(pytest.mark.skip(reason=f"missing {missing}"))


@dataclass(frozen=True)
class NetParams:
    bridge: str
    subnet: str


@pytest.fixture(scope="session")
def net_params() -> Iterator[NetParams]:
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    before = forward.read_text().strip() if forward.exists() else None
    subnet = f"10.77.{secrets.randbelow(200) + 20}.0/24"
    params = NetParams(bridge="ppt" + secrets.token_hex(3), subnet=subnet)
    yield params
    subprocess.run(["ip", "link", "del", params.bridge], capture_output=True, check=False)
    # the bridge plugin turns forwarding on for its gateway; put the machine back as it was
    if before == "0" and forward.read_text().strip() != "0":
        forward.write_text("0")


@dataclass
class Pod:
    uid: str
    sandbox: Sandbox
    net: NetworkStatus | None
    containers: list[str] = field(default_factory=list)

    @property
    def ip(self) -> str:
        assert self.net is not None
        return self.net.ips[0]


class Harness:
    def __init__(self, data: Path, net_params: NetParams) -> None:
        self.data = data
        self.cg = CgroupManager("peapod-e2e-" + secrets.token_hex(3))
        self.runtime = RuncRuntime(data / "rt")
        self.sandboxes = SandboxManager(data, cgroups=self.cg)
        self.network = CniNetwork(CniConfig(data_dir=str(data / "cni"), bridge=net_params.bridge,
                                            subnet=net_params.subnet, default_route=False))
        self.net_params = net_params
        self.pods: dict[str, Pod] = {}

    async def pod(self, name: str, *, host_network: bool = False, share_pid: bool = False,
                  ports: Sequence[PortMapping] = (), hostname: str | None = None) -> Pod:
        uid = f"{name}-{secrets.token_hex(4)}"
        sb = await self.sandboxes.create(SandboxConfig(
            pod_uid=uid, name=name, hostname=hostname, host_network=host_network,
            share_process_namespace=share_pid))
        net = None
        if not host_network:
            assert sb.netns_path
            net = await self.network.setup(uid, sb.netns_path, ports, pod_name=name, pod_namespace="default")
        write_pod_file(sb.hosts_path, render_hosts(pod_ips=net.ips if net else [], hostname=sb.hostname,
                                                   host_aliases=[{"ip": "10.77.255.254",
                                                                  "hostnames": ["alias.example"]}]))
        write_pod_file(sb.resolv_conf_path, render_resolv_conf(dns_policy="None", dns_config={
            "nameservers": ["127.0.0.53"], "searches": ["default.svc.cluster.local"]}))
        pod = Pod(uid, sb, net)
        self.pods[uid] = pod
        return pod

    def config(self, pod: Pod, name: str, args: Sequence[str], **kw: object) -> ContainerConfig:
        cid = f"{pod.uid}-{name}"
        rootfs = build_busybox_rootfs(self.data / "rootfs" / cid)
        sb = pod.sandbox
        base = ContainerConfig(
            args=list(args), rootfs=str(rootfs), namespaces=sb.namespaces(), hostname=sb.hostname,
            cgroups_path=self.cg.container_relpath(pod.uid, cid), shm_path=sb.shm_path,
            hosts_path=sb.hosts_path, resolv_conf_path=sb.resolv_conf_path, hostname_path=sb.hostname_path,
            rlimit_nofile=1024, annotations={"io.peapod.pod-uid": pod.uid, "io.peapod.container": name},
        )
        return replace(base, **kw)  # type: ignore[arg-type]

    async def run(self, pod: Pod, name: str, args: Sequence[str], *, start: bool = True, **kw: object) -> str:
        cfg = self.config(pod, name, args, **kw)
        cid = f"{pod.uid}-{name}"
        bundle = write_bundle(self.data / "bundles" / cid, build_spec(cfg))
        await self.runtime.create(cid, str(bundle), str(self.data / "logs" / f"{cid}.log"))
        pod.containers.append(cid)
        if start:
            await self.runtime.start(cid)
        return cid

    async def exec_out(self, cid: str, *argv: str) -> tuple[int, str]:
        p = await self.runtime.exec(cid, argv)
        out, err = await asyncio.wait_for(p.process.communicate(), 30)
        return p.process.returncode or 0, (out + err).decode()

    async def delete_pod(self, pod: Pod) -> None:
        for cid in pod.containers:
            await self.runtime.remove(cid)
        if not pod.sandbox.host_network:
            await self.network.teardown(pod.uid, pod.sandbox.netns_path)
        await self.sandboxes.teardown(pod.uid)
        self.pods.pop(pod.uid, None)

    async def close(self) -> None:
        for st in await self.runtime.list():
            await self.runtime.remove(st.id)
        for uid in self.network.recorded_pods():
            sb = self.sandboxes.get(uid)
            await self.network.teardown(uid, sb.netns_path if sb else None)
        for uid in self.sandboxes.list_uids():
            await self.sandboxes.teardown(uid)
        self.cg.remove_parent_if_empty()

    def leftovers(self) -> list[str]:
        """Everything this harness could have leaked; empty when clean."""
        found: list[str] = []
        out = subprocess.run(["runc", "--root", str(self.runtime.runc_root), "list", "-q"],
                             capture_output=True, text=True).stdout.split()
        found += [f"runc container {c}" for c in out]
        found += [f"mount {m}" for m in mount_points() if m.startswith(str(self.data))]
        veths = subprocess.run(["ip", "-o", "link", "show", "master", self.net_params.bridge],
                               capture_output=True, text=True).stdout.strip()
        if veths:
            found.append(f"veths on bridge: {veths}")
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                if str(self.data).encode() in cmd:
                    found.append(f"process {pid}: {cmd[:120]!r}")
        found += [f"cgroup {d}" for d in self.cg.dirs(self.cg.parent).values() if d.exists()]
        ipam = self.data / "cni" / "networks"
        if ipam.exists():
            found += [f"ipam lease {p}" for p in ipam.rglob("*") if p.is_file() and
                      p.name not in ("lock",) and not p.name.startswith("last_reserved_ip")]
        return found


@pytest.fixture
async def harness(tmp_path_factory: pytest.TempPathFactory, net_params: NetParams) -> AsyncIterator[Harness]:
    data = tmp_path_factory.mktemp("peapod-e2e")
    h = Harness(data, net_params)
    try:
        yield h
    finally:
        await h.close()
        left = h.leftovers()
        shutil.rmtree(data, ignore_errors=True)
        assert not left, f"leaked: {left}"
