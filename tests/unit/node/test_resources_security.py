"""Pod-level resources, OOM score, sysctl admission, seccomp Localhost and runAsNonRoot (pure rules)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from peapod.node.containerconfig import (
    ConfigError,
    ContainerInputs,
    build_container_config,
    cgroup_resources,
    forbidden_sysctl,
    localhost_profile_path,
    milli_cpu_to_quota,
    milli_cpu_to_shares,
    normalize_sysctl,
    oom_score_adj,
    oom_score_floor,
    pod_amount,
    pod_resources,
    read_localhost_profile,
    resolve_user,
)
from peapod.node.images.model import ImageConfig
from peapod.node.runtime.bundle import build_spec

Obj = dict[str, Any]
GI = 1 << 30


def ctr(name: str = "c", requests: Obj | None = None, limits: Obj | None = None, **kw: Any) -> Obj:
    res: Obj = {}
    if requests is not None:
        res["requests"] = requests
    if limits is not None:
        res["limits"] = limits
    return {"name": name, "image": "x", "resources": res, **kw}


def pod(*containers: Obj, inits: list[Obj] | None = None, **spec: Any) -> Obj:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": list(containers), "initContainers": inits or [], **spec}}


@pytest.mark.parametrize(("milli", "shares"), [(0, 2), (1, 2), (2, 2), (100, 102), (250, 256), (1000, 1024),
                                               (1500, 1536)])
def test_shares(milli: int, shares: int) -> None:
    assert milli_cpu_to_shares(milli) == shares


@pytest.mark.parametrize(("milli", "quota"), [(0, None), (1, 1000), (5, 1000), (10, 1000), (500, 50000),
                                              (2000, 200000)])
def test_quota(milli: int, quota: int | None) -> None:
    assert milli_cpu_to_quota(milli) == quota


@pytest.mark.parametrize(
    ("res", "want"),
    [
        ({"limits": {"cpu": "500m", "memory": "64Mi"}}, (512, 50000, 100000, 64 << 20)),
        ({"requests": {"cpu": "250m"}, "limits": {"cpu": "1.5", "memory": "1.5G"}},
         (256, 150000, 100000, 1_500_000_000)),
        ({"requests": {"cpu": "100m", "memory": "1Gi"}}, (102, None, None, None)),
        ({}, (2, None, None, None)),
    ],
)
def test_container_resources(res: Obj, want: tuple) -> None:
    r = cgroup_resources({"resources": res})
    assert (r.cpu_shares, r.cpu_quota, r.cpu_period, r.memory_limit) == want


def test_pod_resources_sum_when_every_container_has_limits() -> None:
    p = pod(ctr("a", limits={"cpu": "500m", "memory": "64Mi"}),
            ctr("b", requests={"cpu": "100m"}, limits={"cpu": "250m", "memory": "32Mi"}))
    r = pod_resources(p, pids_limit=100)
    assert (r.cpu_shares, r.cpu_quota, r.memory_limit, r.pids_limit) == (614, 75000, 96 << 20, 100)


def test_pod_resources_only_limits_all_containers_declare() -> None:
    p = pod(ctr("a", limits={"cpu": "500m", "memory": "64Mi"}), ctr("b", requests={"memory": "10Mi"}))
    r = pod_resources(p)
    assert (r.cpu_shares, r.cpu_quota, r.memory_limit) == (512, None, None)
    p = pod(ctr("a", limits={"memory": "64Mi"}), ctr("b", limits={"memory": "10Mi"}))
    r = pod_resources(p)
    assert (r.cpu_shares, r.cpu_quota, r.memory_limit) == (2, None, 74 << 20)


def test_pod_resources_best_effort_and_init_containers() -> None:
    assert pod_resources(pod(ctr("a"))).cpu_shares == 2
    # an init container bigger than the app containers sets the pod's amount; sidecars add up
    init = ctr("init", limits={"cpu": "2", "memory": "1Gi"})
    side = ctr("side", limits={"cpu": "100m", "memory": "16Mi"}, restartPolicy="Always")
    app = ctr("a", limits={"cpu": "500m", "memory": "64Mi"})
    p = pod(app, inits=[side, init])
    assert pod_amount(p, "limits", "cpu") == 2100  # init + the sidecar started before it
    assert pod_amount(p, "requests", "memory") == GI + (16 << 20)
    r = pod_resources(p)
    assert (r.cpu_quota, r.memory_limit) == (210000, GI + (16 << 20))
    p = pod(app, inits=[init, side])
    assert pod_amount(p, "limits", "cpu") == 2000
    # pod overhead counts
    p = pod(app, overhead={"cpu": "100m"})
    assert pod_amount(p, "requests", "cpu") == 600


@pytest.mark.parametrize(
    ("p", "idx", "want"),
    [
        (pod(ctr(limits={"cpu": "1", "memory": "1Gi"})), 0, -997),
        (pod(ctr()), 0, 1000),
        (pod(ctr(requests={"memory": "2Gi"})), 0, 750),
        (pod(ctr(requests={"cpu": "1"})), 0, 999),  # no memory request
        (pod(ctr(requests={"memory": "8Gi"}, limits={"memory": "9Gi"})), 0, 3),  # never below 3
        (pod(ctr(requests={"memory": "7.999Gi"})), 0, 3),
        (pod(ctr(), priorityClassName="system-node-critical", priority=2000001000), 0, -997),
    ],
)
def test_oom_score_adj(p: Obj, idx: int, want: int) -> None:
    assert oom_score_adj(p, p["spec"]["containers"][idx], 8 * GI) == want


def test_oom_score_adj_sidecar_not_above_regular_containers() -> None:
    side = ctr("side", requests={"memory": "1Gi"}, restartPolicy="Always")
    p = pod(ctr("a", requests={"memory": "4Gi"}), inits=[side])
    assert oom_score_adj(p, side, 8 * GI) == 500
    assert oom_score_adj(p, p["spec"]["containers"][0], 8 * GI) == 500


def test_qos_from_status_wins() -> None:
    p = pod(ctr(limits={"cpu": "1", "memory": "1Gi"}))
    p["status"] = {"qosClass": "Burstable"}
    assert oom_score_adj(p, p["spec"]["containers"][0], 8 * GI) == 875


@pytest.mark.parametrize(
    ("sysctls", "spec", "message"),
    [
        ([{"name": "kernel.shm_rmid_forced", "value": "1"},
          {"name": "net.ipv4.ip_local_port_range", "value": "1024 65535"}], {}, None),
        ([{"name": "net/ipv4/tcp_syncookies", "value": "1"}], {}, None),
        ([{"name": "net.ipv4.tcp_keepalive_time", "value": "60"}], {}, None),
        ([{"name": "kernel.msgmax", "value": "1"}], {}, 'forbidden sysctl: "kernel.msgmax" not allowlisted'),
        ([{"name": "net.core.somaxconn", "value": "1"}], {}, '"net.core.somaxconn" not allowlisted'),
        ([{"name": "net.ipv4.tcp_syncookies", "value": "1"}], {"hostNetwork": True},
         '"net.ipv4.tcp_syncookies" not allowed with host net enabled'),
        ([{"name": "kernel.shm_rmid_forced", "value": "1"}], {"hostIPC": True}, "host ipc enabled"),
    ],
)
def test_forbidden_sysctl(sysctls: list[Obj], spec: Obj, message: str | None) -> None:
    p = pod(ctr(), securityContext={"sysctls": sysctls}, **spec)
    got = forbidden_sysctl(p)
    assert got == message if message is None or message.startswith("forbidden") else message in (got or "")


def test_normalize_sysctl() -> None:
    assert normalize_sysctl("net/ipv4/conf/eno2.100/rp_filter") == "net.ipv4.conf.eno2/100.rp_filter"
    assert normalize_sysctl("net.ipv4.ip_forward") == "net.ipv4.ip_forward"


def test_runas_non_root_messages() -> None:
    p = pod(ctr())
    c = {"name": "c", "securityContext": {"runAsNonRoot": True, "runAsUser": 0}}
    with pytest.raises(ConfigError, match=r'runAsUser breaks non-root policy \(pod: "p_ns\(u1\)", container: c\)'):
        resolve_user(p, c, "1000", "", "")
    c = {"name": "c", "securityContext": {"runAsNonRoot": True}}
    with pytest.raises(ConfigError, match=r'image will run as root \(pod: "p_ns\(u1\)", container: c\)') as e:
        resolve_user(p, c, "", "", "")
    assert e.value.reason == "CreateContainerConfigError"
    with pytest.raises(ConfigError, match=r"image has non-numeric user \(app\), cannot verify"):
        resolve_user(p, c, "app", "app:x:1000:1000::/:/bin/sh\n", "")
    assert resolve_user(p, {**c, "securityContext": {"runAsNonRoot": True, "runAsUser": 5}}, "app", "", "")[0] == 5
    assert resolve_user(p, c, "1000:1000", "", "")[:2] == (1000, 1000)


def test_seccomp_localhost(tmp_path: Path) -> None:
    prof = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "deny-mkdir.json").write_text(json.dumps(prof))
    c = ctr(securityContext={"seccompProfile": {"type": "Localhost",
                                                "localhostProfile": "profiles/deny-mkdir.json"}})
    p = pod(c)
    rel = localhost_profile_path(p, c)
    assert rel == "profiles/deny-mkdir.json"
    loaded = read_localhost_profile(tmp_path, rel)
    cfg = build_container_config(ContainerInputs(pod=p, container=c, image=ImageConfig(cmd=("sh",)), rootfs="/r",
                                                 localhost_seccomp=loaded))
    assert build_spec(cfg)["linux"]["seccomp"] == prof
    for bad, msg in (("missing.json", "failed to load seccomp profile"), ("../../etc/passwd", "outside"),
                     ("", "localhostProfile must be set")):
        with pytest.raises(ConfigError, match=msg) as e:
            read_localhost_profile(tmp_path, bad)
        assert e.value.reason == "CreateContainerError"
    # the pod-level profile applies, a container's own wins
    p = pod(ctr(), securityContext={"seccompProfile": {"type": "Localhost", "localhostProfile": "x.json"}})
    assert localhost_profile_path(p, p["spec"]["containers"][0]) == "x.json"
    c = ctr(securityContext={"seccompProfile": {"type": "Unconfined"}})
    assert localhost_profile_path({**p, "spec": {**p["spec"], "containers": [c]}}, c) is None


@pytest.mark.parametrize(
    ("sc", "check"),
    [
        ({}, lambda s: "seccomp" in s["linux"] and s["linux"]["maskedPaths"] and not s["process"]["noNewPrivileges"]),
        ({"seccompProfile": {"type": "Unconfined"}}, lambda s: "seccomp" not in s["linux"]),
        ({"allowPrivilegeEscalation": False}, lambda s: s["process"]["noNewPrivileges"]),
        ({"privileged": True, "allowPrivilegeEscalation": False},
         lambda s: not s["process"]["noNewPrivileges"] and "seccomp" not in s["linux"]
         and "maskedPaths" not in s["linux"] and "CAP_SYS_ADMIN" in s["process"]["capabilities"]["effective"]
         and all("ro" not in m["options"] for m in s["mounts"] if m["destination"].startswith("/sys"))),
        ({"procMount": "Unmasked"}, lambda s: s["linux"]["maskedPaths"] == [] and s["linux"]["readonlyPaths"] == []),
        ({"readOnlyRootFilesystem": True}, lambda s: s["root"]["readonly"]),
        ({"capabilities": {"drop": ["ALL"]}}, lambda s: s["process"]["capabilities"]["effective"] == []),
    ],
)
def test_security_context_to_spec(sc: Obj, check: Any) -> None:
    c = ctr(securityContext=sc)
    cfg = build_container_config(ContainerInputs(pod=pod(c), container=c, image=ImageConfig(cmd=("sh",)),
                                                 rootfs="/r"))
    spec = build_spec(cfg)
    assert check(spec)
    if not sc.get("privileged"):
        assert all("ro" in m["options"] for m in spec["mounts"] if m["destination"] in ("/sys", "/sys/fs/cgroup"))
        assert spec["linux"]["resources"]["devices"][0] == {"allow": False, "access": "rwm"}


def test_pod_sysctls_and_security_in_config() -> None:
    p = pod(ctr(), securityContext={"sysctls": [{"name": "net/ipv4/ip_unprivileged_port_start", "value": "0"}],
                                    "runAsUser": 1000, "runAsGroup": 2000, "supplementalGroups": [3],
                                    "fsGroup": 4})
    cfg = build_container_config(ContainerInputs(pod=p, container=p["spec"]["containers"][0],
                                                 image=ImageConfig(cmd=("sh",)), rootfs="/r"))
    spec = build_spec(cfg)
    assert spec["linux"]["sysctl"] == {"net.ipv4.ip_unprivileged_port_start": "0"}
    assert spec["process"]["user"] == {"uid": 1000, "gid": 2000, "additionalGids": [3, 4]}


def test_oom_score_floor_and_clamp() -> None:
    assert oom_score_floor("Name:\tx\nCapEff:\t000001ffffffffff\n", "0\n") == -1000
    assert oom_score_floor("CapEff:\t000001fffeffffff\n", "0\n") == 0  # no CAP_SYS_RESOURCE
    assert oom_score_floor("CapEff:\t0000000000000000\n", "-500") == -500
    c = ctr(limits={"cpu": "1", "memory": "1Gi"})
    inp = ContainerInputs(pod=pod(c), container=c, image=ImageConfig(cmd=("sh",)), rootfs="/r", node_memory=8 * GI)
    assert build_container_config(inp).oom_score_adj == -997
    assert build_container_config(dataclasses.replace(inp, min_oom_score_adj=0)).oom_score_adj == 0
