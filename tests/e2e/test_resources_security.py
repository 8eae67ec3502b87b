"""Resources and security contexts on the real runtime, through `peapod up` and the real kubectl.

Resources: cgroup values seen inside the container (CFS quota, shares/weight, memory limit) and the
pod-level cgroup seen from the host (summed limits, pids.max); QoS classes with their
oom_score_adj; a pod asking for more cpu than the node has stays Pending (Insufficient cpu).
Security: runAsUser/Group, supplementalGroups and fsGroup; readOnlyRootFilesystem; capabilities;
no_new_privs; the defaults (no mount, /proc/kcore masked, no device access, no new links, seccomp
filter, read-only /proc/sys and /sys); runAsNonRoot refusals; seccomp Unconfined and Localhost;
sysctls (safe ones applied, others refused by the node); privileged pods (which need a namespace
labelled pod-security.kubernetes.io/enforce=privileged).

Every pod is small and created in one batch at the start, so the module runs in about a minute.
Most pods print ``key=value`` lines and exit (restartPolicy Never); tests read their logs.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from peapod.node.agent import cgroup_parent_for
from peapod.node.containerconfig import oom_score_floor
from peapod.node.runtime.cgroups import CgroupManager, shares_to_weight
from peapod.testing.cluster import PeapodCluster
from peapod.testing.images import busybox_image, push_image
from peapod.testing.registry import LoopbackRegistry

pytestmark = pytest.mark.skipif(
    subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0", reason="needs root"
)

NS = "ressec"
PRIV = "ressec-priv"
Obj = dict[str, Any]
V2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
DEFAULT_CAPS = "00000000a80425fb"  # containerd's default set
# cgroup values inside a container (v1 or v2)
CGROUP_SCRIPT = (
    "if [ -f /sys/fs/cgroup/cgroup.controllers ]; then "
    "echo quota=$(cut -d' ' -f1 /sys/fs/cgroup/cpu.max); echo period=$(cut -d' ' -f2 /sys/fs/cgroup/cpu.max); "
    "echo shares=$(cat /sys/fs/cgroup/cpu.weight); echo memory=$(cat /sys/fs/cgroup/memory.max); "
    "else "
    "echo quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us); echo period=$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us); "
    "echo shares=$(cat /sys/fs/cgroup/cpu/cpu.shares); "
    "echo memory=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes); fi; "
    "echo oom=$(cat /proc/self/oom_score_adj); "
)
# the first of runc's masked paths this kernel has (/proc/kcore needs CONFIG_PROC_KCORE): is it masked?
MASKED = ("for p in /proc/kcore /proc/timer_list /proc/keys /proc/sched_debug /sys/firmware; do "
          "[ -e $p ] && { echo masked=$(grep -c \" $p \" /proc/mounts); break; }; done; ")
DENY_MKDIR = {"defaultAction": "SCMP_ACT_ALLOW",
              "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}


@pytest.fixture(scope="module")
def cluster(node_cluster: PeapodCluster) -> PeapodCluster:
    return node_cluster


@pytest.fixture(scope="module")
def images() -> Iterator[dict[str, str]]:
    reg = LoopbackRegistry().start()
    try:
        refs = {"root": reg.ref("busybox", "1"), "named": reg.ref("busybox-named", "1"),
                "uid": reg.ref("busybox-uid", "1")}

        async def push() -> None:
            await push_image(refs["root"], busybox_image())
            await push_image(refs["named"], busybox_image(user="user"))
            await push_image(refs["uid"], busybox_image(user="1000:1000"))

        asyncio.run(push())
        yield refs
    finally:
        reg.stop()


# ---- helpers ---------------------------------------------------------------------------------------


def pod(name: str, image: str, script: str, *, ns: str = NS, restart: str = "Never", sc: Obj | None = None,
        psc: Obj | None = None, resources: Obj | None = None, **spec: Any) -> Obj:
    c: Obj = {"name": "c", "image": image, "command": ["sh", "-c", script]}
    if sc is not None:
        c["securityContext"] = sc
    if resources is not None:
        c["resources"] = resources
    for key in ("volumeMounts",):
        if key in spec:
            c[key] = spec.pop(key)
    s: Obj = {"restartPolicy": restart, "terminationGracePeriodSeconds": 0, "containers": [c], **spec}
    if psc is not None:
        s["securityContext"] = psc
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns}, "spec": s}


def get(cluster: PeapodCluster, name: str, ns: str = NS) -> Obj:
    r = cluster.kubectl("get", "-n", ns, "pod", name, "-o", "json")
    return r.json() if r.returncode == 0 else {}


def phase(p: Obj) -> str:
    return (p.get("status") or {}).get("phase", "")


def wait_pod(cluster: PeapodCluster, name: str, cond: Callable[[Obj], bool], *, ns: str = NS,
             timeout: float = 90.0, what: str = "") -> Obj:
    deadline = time.monotonic() + timeout
    p: Obj = {}
    while time.monotonic() < deadline:
        p = get(cluster, name, ns)
        if p and cond(p):
            return p
        time.sleep(0.3)
    desc = cluster.kubectl("describe", "-n", ns, "pod", name).stdout
    raise AssertionError(f"{name}: {what or 'condition'} not met:\n{desc}\n{cluster.log_tail(30)}")


def done(p: Obj) -> bool:
    return phase(p) in ("Succeeded", "Failed")


def running(p: Obj) -> bool:
    sts = (p.get("status") or {}).get("containerStatuses") or []
    return phase(p) == "Running" and bool(sts) and all((s.get("state") or {}).get("running") for s in sts)


def output(cluster: PeapodCluster, name: str, *, ns: str = NS, wait: Callable[[Obj], bool] = done) -> dict[str, str]:
    """The ``key=value`` lines a pod printed (after it finished, or per ``wait``)."""
    wait_pod(cluster, name, wait, ns=ns, what="finished")
    text = cluster.kubectl("logs", "-n", ns, name, check=True).stdout
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out[k.strip()] = v.strip()
    return out


def waiting(p: Obj) -> Obj:
    sts = (p.get("status") or {}).get("containerStatuses") or [{}]
    return (sts[0].get("state") or {}).get("waiting") or {}


def apply(cluster: PeapodCluster, tmp: Path, objs: list[Obj]) -> subprocess.CompletedProcess | Any:
    path = tmp / f"objs-{time.monotonic_ns()}.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))
    return cluster.kubectl("apply", "-f", str(path))


# ---- the batch ---------------------------------------------------------------------------------------


def batch_pods(img: dict[str, str]) -> list[Obj]:
    root = img["root"]
    status = "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status | tr -d '\\t' | sed 's/:/=/'; "
    sleep = "exec sleep 3600"
    return [
        # resources
        pod("limits", root, CGROUP_SCRIPT + sleep, restart="Always",
            resources={"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}}),
        pod("guaranteed", root, CGROUP_SCRIPT + sleep, restart="Always",
            resources={"limits": {"cpu": "200m", "memory": "1.5G"}}),
        pod("burstable", root, CGROUP_SCRIPT + sleep, restart="Always",
            resources={"requests": {"cpu": "100m", "memory": "256Mi"}}),
        pod("besteffort", root, CGROUP_SCRIPT + sleep, restart="Always"),
        pod("too-big", root, sleep, resources={"requests": {"cpu": "1000"}}),
        # identities and volumes
        pod("ids", root, "echo uid=$(id -u); echo gid=$(id -g); echo groups=$(id -G); "
            "echo volgid=$(stat -c %g /data); echo volmode=$(stat -c %A /data); "
            "touch /data/f && echo fgid=$(stat -c %g /data/f)",
            psc={"runAsUser": 1000, "runAsGroup": 3000, "supplementalGroups": [4000], "fsGroup": 2000},
            volumes=[{"name": "d", "emptyDir": {}}], volumeMounts=[{"name": "d", "mountPath": "/data"}]),
        pod("ids-container", root, "echo uid=$(id -u); echo gid=$(id -g)",
            psc={"runAsUser": 1000, "runAsGroup": 3000}, sc={"runAsUser": 2000, "runAsGroup": 2001}),
        pod("image-user", img["named"], "echo uid=$(id -u); echo gid=$(id -g)"),
        # root filesystem, capabilities, no_new_privs
        pod("ro-root", root, "touch /x 2>&1; echo rc=$?; touch /data/y && echo vol=ok",
            sc={"readOnlyRootFilesystem": True},
            volumes=[{"name": "d", "emptyDir": {}}], volumeMounts=[{"name": "d", "mountPath": "/data"}]),
        pod("drop-all", root, status, sc={"capabilities": {"drop": ["ALL"]}}),
        pod("no-escalation", root, status, sc={"allowPrivilegeEscalation": False}),
        pod("defaults", root, status + (
            "mkdir -p /tmp/m; mount -t tmpfs none /tmp/m 2>/dev/null; echo mount=$?; "
            "echo kcore=$(head -c 16 /proc/kcore 2>/dev/null | wc -c); " + MASKED +
            "mknod /tmp/sda b 8 0 2>/dev/null; head -c 1 /tmp/sda >/dev/null 2>&1; echo blockdev=$?; "
            "ip link add v0 type veth peer name v1 2>/dev/null; echo link=$?; "
            "echo procsys=$(grep ' /proc/sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1); "
            "echo sys=$(grep ' /sys sysfs' /proc/mounts | cut -d' ' -f4 | cut -d, -f1); "
            "unshare -n true 2>/dev/null; echo unshare=$?")),
        # runAsNonRoot
        pod("nonroot-root-image", root, sleep, sc={"runAsNonRoot": True}, restart="Always"),
        pod("nonroot-named-user", img["named"], sleep, sc={"runAsNonRoot": True}, restart="Always"),
        pod("nonroot-uid-image", img["uid"], "echo uid=$(id -u)", sc={"runAsNonRoot": True}),
        pod("nonroot-runasuser-0", img["uid"], sleep, sc={"runAsNonRoot": True, "runAsUser": 0}, restart="Always"),
        # seccomp
        pod("seccomp-unconfined", root, status, ns=PRIV, sc={"seccompProfile": {"type": "Unconfined"}}),
        pod("seccomp-localhost", root, status + "mkdir /tmp/d 2>/dev/null; echo mkdir=$?",
            psc={"seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/deny-mkdir.json"}}),
        pod("seccomp-missing", root, sleep, restart="Always",
            sc={"seccompProfile": {"type": "Localhost", "localhostProfile": "nope.json"}}),
        # sysctls
        pod("sysctls", root, "echo port=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start); "
            "echo shm=$(cat /proc/sys/kernel/shm_rmid_forced); "
            "echo range=$(cat /proc/sys/net/ipv4/ip_local_port_range)",
            psc={"sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "80"},
                             {"name": "kernel.shm_rmid_forced", "value": "1"},
                             {"name": "net.ipv4.ip_local_port_range", "value": "20000 30000"}]}),
        # privileged namespace
        pod("unsafe-sysctl", root, sleep, ns=PRIV, psc={"sysctls": [{"name": "kernel.msgmax", "value": "65536"}]}),
        pod("privileged", root, status + (
            "mkdir -p /tmp/m; mount -t tmpfs none /tmp/m; echo mount=$?; "
            "ip link add v0 type veth peer name v1; echo link=$?; " +
            MASKED + "grep ' /sys sysfs' /proc/mounts | cut -d' ' -f4 | cut -d, -f1 | sed 's/^/sysmode=/'"),
            ns=PRIV, sc={"privileged": True}),
        pod("net-admin", root, status + "ip link add v0 type veth peer name v1; echo link=$?", ns=PRIV,
            sc={"capabilities": {"add": ["NET_ADMIN"]}}),
        pod("unmasked", root, MASKED +
            "echo procsys=$(grep -c ' /proc/sys ' /proc/mounts)", ns=PRIV, sc={"procMount": "Unmasked"},
            hostUsers=False),
    ]


@pytest.fixture(scope="module")
def batch(cluster: PeapodCluster, images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> float:
    tmp = tmp_path_factory.mktemp("ressec")
    seccomp = cluster.data_dir / "node" / "seccomp" / "profiles"
    seccomp.mkdir(parents=True, exist_ok=True)
    (seccomp / "deny-mkdir.json").write_text(json.dumps(DENY_MKDIR))
    cluster.kubectl("create", "namespace", NS, check=True)
    cluster.kubectl("create", "namespace", PRIV, check=True)
    cluster.kubectl("label", "namespace", PRIV, "pod-security.kubernetes.io/enforce=privileged", check=True)
    pods = batch_pods(images)
    for p in pods:
        r = apply(cluster, tmp, [p])
        assert r.returncode == 0 or p["metadata"]["name"] == "unmasked", r.stderr
    return time.monotonic()


def cgroup_manager(cluster: PeapodCluster) -> CgroupManager:
    assert cluster.proc is not None
    own = Path(f"/proc/{cluster.proc.pid}/cgroup").read_text()
    return CgroupManager(cgroup_parent_for(cluster.data_dir / "node"), self_cgroup=own)


def agent_caps(cluster: PeapodCluster) -> str:
    assert cluster.proc is not None
    status = Path(f"/proc/{cluster.proc.pid}/status").read_text()
    return next(ln.split()[1] for ln in status.splitlines() if ln.startswith("CapBnd:"))


def pod_cgroup_file(cluster: PeapodCluster, uid: str, controller: str, name: str) -> str:
    m = cgroup_manager(cluster)
    for mount, d in m.dirs(m.pod_relpath(uid)).items():
        if (V2 and mount == Path("/sys/fs/cgroup")) or controller in mount.name.split(","):
            f = d / name
            if f.exists():
                return f.read_text().strip()
    raise AssertionError(f"no {controller} {name} for pod {uid}")


# ---- resources ---------------------------------------------------------------------------------------


def test_container_cgroup_limits(cluster: PeapodCluster, batch: float) -> None:
    out = output(cluster, "limits", wait=running)
    shares = "256" if not V2 else str(shares_to_weight(256))
    assert (out["quota"], out["period"], out["shares"], out["memory"]) == ("50000", "100000", shares,
                                                                            str(64 * 1024 * 1024))


def test_pod_cgroup_holds_summed_limits_and_pids_cap(cluster: PeapodCluster, batch: float) -> None:
    p = wait_pod(cluster, "limits", running)
    uid = p["metadata"]["uid"]
    if V2:
        assert pod_cgroup_file(cluster, uid, "memory", "memory.max") == str(64 << 20)
        assert pod_cgroup_file(cluster, uid, "cpu", "cpu.max") == "50000 100000"
    else:
        assert pod_cgroup_file(cluster, uid, "memory", "memory.limit_in_bytes") == str(64 << 20)
        assert pod_cgroup_file(cluster, uid, "cpu", "cpu.cfs_quota_us") == "50000"
        assert pod_cgroup_file(cluster, uid, "cpu", "cpu.shares") == "256"
    assert pod_cgroup_file(cluster, uid, "pids", "pids.max") == "4096"
    # the container's cgroup is inside the pod's
    m = cgroup_manager(cluster)
    cid = f"{uid}-c-0"
    mem = next(d for mount, d in m.dirs(m.container_relpath(uid, cid)).items()
               if (V2 and mount == Path("/sys/fs/cgroup")) or "memory" in mount.name.split(","))
    assert mem.is_dir() and mem.parent.name == f"pod{uid}"


def test_qos_classes_and_oom_score_adj(cluster: PeapodCluster, batch: float) -> None:
    node = cluster.kubectl("get", "nodes", "-o", "json", check=True).json()["items"][0]
    mem_capacity = int(node["status"]["capacity"]["memory"].removesuffix("Ki")) * 1024
    assert cluster.proc is not None
    proc = Path(f"/proc/{cluster.proc.pid}")
    # without CAP_SYS_RESOURCE (as here) the agent cannot go below its own score
    floor = oom_score_floor((proc / "status").read_text(), (proc / "oom_score_adj").read_text())
    want = {"guaranteed": ("Guaranteed", max(floor, -997)), "besteffort": ("BestEffort", 1000),
            "burstable": ("Burstable", 1000 - (1000 * (256 << 20)) // mem_capacity)}
    for name, (qos, oom) in want.items():
        out = output(cluster, name, wait=running)
        p = get(cluster, name)
        assert (p["status"]["qosClass"], int(out["oom"])) == (qos, oom), name
    g = get(cluster, "guaranteed")["spec"]["containers"][0]["resources"]
    assert g["requests"] == g["limits"] == {"cpu": "200m", "memory": "1.5G"}  # requests default to limits
    out = output(cluster, "guaranteed", wait=running)
    assert int(out["memory"]) == 1_500_000_000 // 4096 * 4096 and out["quota"] == "20000"  # the kernel counts pages
    out = output(cluster, "besteffort", wait=running)
    assert out["quota"] in ("-1", "max") and out["shares"] == ("2" if not V2 else "1")


def test_node_allocatable_and_insufficient_cpu(cluster: PeapodCluster, batch: float) -> None:
    node = cluster.kubectl("get", "nodes", "-o", "json", check=True).json()["items"][0]
    cap, alloc = node["status"]["capacity"], node["status"]["allocatable"]
    assert int(alloc["memory"].removesuffix("Ki")) < int(cap["memory"].removesuffix("Ki"))
    assert int(alloc["ephemeral-storage"]) < int(cap["ephemeral-storage"].removesuffix("Ki")) * 1024
    p = wait_pod(cluster, "too-big", lambda p: any(c.get("type") == "PodScheduled" and c.get("status") == "False"
                                                    for c in p["status"].get("conditions") or []),
                 what="unschedulable")
    cond = next(c for c in p["status"]["conditions"] if c["type"] == "PodScheduled")
    assert cond["reason"] == "Unschedulable" and "Insufficient cpu" in cond["message"], cond
    assert phase(p) == "Pending" and not p["spec"].get("nodeName")


# ---- security ----------------------------------------------------------------------------------------


def test_run_as_user_group_supplemental_and_fs_group(cluster: PeapodCluster, batch: float) -> None:
    out = output(cluster, "ids")
    assert (out["uid"], out["gid"]) == ("1000", "3000")
    assert {"2000", "4000"} <= set(out["groups"].split())
    assert out["volgid"] == "2000" and out["volmode"][6] in "sS"  # setgid dir of the fsGroup
    assert out["fgid"] == "2000"  # new files inherit the group
    out = output(cluster, "ids-container")
    assert (out["uid"], out["gid"]) == ("2000", "2001")  # the container's securityContext wins
    out = output(cluster, "image-user")
    assert (out["uid"], out["gid"]) == ("1000", "1000")  # the image USER by name


def test_read_only_root_filesystem(cluster: PeapodCluster, batch: float) -> None:
    text = cluster.kubectl("logs", "-n", NS, wait_pod(cluster, "ro-root", done)["metadata"]["name"]).stdout
    out = output(cluster, "ro-root")
    assert out["rc"] != "0" and "Read-only file system" in text
    assert out["vol"] == "ok"


def test_drop_all_capabilities(cluster: PeapodCluster, batch: float) -> None:
    assert output(cluster, "drop-all")["CapEff"] == "0000000000000000"


def test_allow_privilege_escalation_false_sets_no_new_privs(cluster: PeapodCluster, batch: float) -> None:
    assert output(cluster, "no-escalation")["NoNewPrivs"] == "1"
    assert output(cluster, "defaults")["NoNewPrivs"] == "0"


def test_default_container_is_confined(cluster: PeapodCluster, batch: float) -> None:
    out = output(cluster, "defaults")
    assert out["CapEff"] == DEFAULT_CAPS
    assert out["Seccomp"] == "2"  # RuntimeDefault filter
    assert out["mount"] != "0", "mounted a tmpfs"
    assert out["kcore"] == "0" and out["masked"] == "1", "/proc/kcore readable or /proc paths not masked"
    assert out["blockdev"] != "0", "read a block device"  # devices cgroup: only the standard devices
    assert out["link"] != "0", "added a link"
    assert (out["procsys"], out["sys"]) == ("ro", "ro"), "/proc/sys or /sys writable"
    assert out["unshare"] != "0", "created a namespace"


def test_run_as_non_root_refuses_a_root_image(cluster: PeapodCluster, batch: float) -> None:
    p = wait_pod(cluster, "nonroot-root-image", lambda p: waiting(p).get("reason") == "CreateContainerConfigError",
                 what="CreateContainerConfigError")
    uid = p["metadata"]["uid"]
    assert waiting(p)["message"] == ("container has runAsNonRoot and image will run as root "
                                     f'(pod: "nonroot-root-image_{NS}({uid})", container: c)')
    p = wait_pod(cluster, "nonroot-named-user", lambda p: waiting(p).get("reason") == "CreateContainerConfigError")
    assert "image has non-numeric user (user), cannot verify user is non-root" in waiting(p)["message"]
    p = wait_pod(cluster, "nonroot-runasuser-0", lambda p: waiting(p).get("reason") == "CreateContainerConfigError")
    assert "container's runAsUser breaks non-root policy" in waiting(p)["message"]
    assert output(cluster, "nonroot-uid-image")["uid"] == "1000"
    assert phase(get(cluster, "nonroot-uid-image")) == "Succeeded"


def test_seccomp_profiles(cluster: PeapodCluster, batch: float) -> None:
    assert output(cluster, "seccomp-unconfined", ns=PRIV)["Seccomp"] == "0"
    out = output(cluster, "seccomp-localhost")
    assert (out["Seccomp"], out["mkdir"]) == ("2", "1")
    p = wait_pod(cluster, "seccomp-missing", lambda p: waiting(p).get("reason") == "CreateContainerError")
    assert "nope.json" in waiting(p)["message"]


def test_safe_sysctls_are_set(cluster: PeapodCluster, batch: float) -> None:
    out = output(cluster, "sysctls")
    assert (out["port"], out["shm"], out["range"].split()) == ("80", "1", ["20000", "30000"])


def test_unsafe_sysctl_rejected_by_the_node(cluster: PeapodCluster, batch: float) -> None:
    p = wait_pod(cluster, "unsafe-sysctl", lambda p: phase(p) == "Failed", ns=PRIV)
    assert p["status"]["reason"] == "SysctlForbidden"
    assert p["status"]["message"] == 'Pod was rejected: forbidden sysctl: "kernel.msgmax" not allowlisted'


def test_unsafe_sysctl_refused_by_baseline_admission(cluster: PeapodCluster, images: dict[str, str],
                                                     batch: float, tmp_path: Path) -> None:
    r = apply(cluster, tmp_path, [pod("unsafe", images["root"], "true",
                                      psc={"sysctls": [{"name": "kernel.msgmax", "value": "1"}]})])
    assert r.returncode != 0 and "violates PodSecurity" in r.stderr and "forbidden sysctls" in r.stderr


def test_privileged_needs_a_privileged_namespace(cluster: PeapodCluster, images: dict[str, str], batch: float,
                                                 tmp_path: Path) -> None:
    r = apply(cluster, tmp_path, [pod("priv", images["root"], "true", sc={"privileged": True})])
    assert r.returncode != 0 and 'violates PodSecurity "baseline:latest": privileged' in r.stderr, r.stderr
    out = output(cluster, "privileged", ns=PRIV)
    assert out["CapEff"] == agent_caps(cluster)  # every capability peapod has itself
    assert (out["Seccomp"], out["NoNewPrivs"]) == ("0", "0")
    assert (out["mount"], out["link"], out["sysmode"]) == ("0", "0", "rw")
    assert out["masked"] == "0"  # nothing masked


def test_capabilities_add(cluster: PeapodCluster, batch: float) -> None:
    out = output(cluster, "net-admin", ns=PRIV)
    assert int(out["CapEff"], 16) == int(DEFAULT_CAPS, 16) | (1 << 12)  # + CAP_NET_ADMIN
    assert out["link"] == "0"


def test_proc_mount_unmasked(cluster: PeapodCluster, batch: float) -> None:
    if not get(cluster, "unmasked", PRIV):
        pytest.skip("the API refuses procMount: Unmasked here")
    out = output(cluster, "unmasked", ns=PRIV)
    assert (out["masked"], out["procsys"]) == ("0", "0")  # neither masked nor a read-only /proc/sys
