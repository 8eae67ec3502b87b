"""OCI bundle generation: tables of ContainerConfig -> config.json facts."""

from __future__ import annotations

import json

import pytest

from peapod.node.runtime.bundle import (
    DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
    build_spec,
    effective_capabilities,
    write_bundle,
)
from peapod.node.runtime.seccomp_default import default_profile
from peapod.node.runtime.types import (
    DEFAULT_CAPABILITIES,
    HOST,
    ContainerConfig,
    Device,
    Mount,
    Namespaces,
    Resources,
)


def cfg(**kw: object) -> ContainerConfig:
    return ContainerConfig(args=["sh"], rootfs="/r", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("add", "drop", "privileged", "expect_in", "expect_out"),
    [
        ((), (), False, DEFAULT_CAPABILITIES, ("CAP_SYS_ADMIN", "CAP_NET_ADMIN")),
        (("NET_ADMIN",), (), False, ("CAP_NET_ADMIN", "CAP_CHOWN"), ("CAP_SYS_ADMIN",)),
        ((), ("ALL",), False, (), DEFAULT_CAPABILITIES),
        (("NET_BIND_SERVICE",), ("ALL",), False, ("CAP_NET_BIND_SERVICE",), ("CAP_CHOWN",)),
        ((), ("CHOWN", "cap_kill"), False, ("CAP_SETUID",), ("CAP_CHOWN", "CAP_KILL")),
        (("ALL",), (), False, ("CAP_SYS_ADMIN", "CAP_BPF"), ()),
        ((), ("ALL",), True, ("CAP_SYS_ADMIN",), ()),
    ],
)
def test_capabilities(add, drop, privileged, expect_in, expect_out) -> None:
    caps = effective_capabilities(cfg(cap_add=add, cap_drop=drop, privileged=privileged))
    assert set(expect_in) <= set(caps)
    assert not set(expect_out) & set(caps)
    spec = build_spec(cfg(cap_add=add, cap_drop=drop, privileged=privileged))
    c = spec["process"]["capabilities"]
    assert c["bounding"] == c["effective"] == c["permitted"] == caps
    assert "inheritable" not in c and "ambient" not in c


def test_defaults() -> None:
    spec = build_spec(cfg(env=["A=1"], uid=1000, gid=1000, additional_gids=[5, 6], hostname="h"))
    p = spec["process"]
    assert p["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [5, 6]}
    assert p["env"][0].startswith("PATH=") and "A=1" in p["env"] and "HOSTNAME=h" in p["env"]
    assert p["cwd"] == "/" and p["noNewPrivileges"] is False and "rlimits" not in p
    assert spec["root"] == {"path": "/r", "readonly": False}
    assert spec["hostname"] == "h"
    lx = spec["linux"]
    assert lx["maskedPaths"] == list(DEFAULT_MASKED_PATHS)
    assert lx["readonlyPaths"] == list(DEFAULT_READONLY_PATHS)
    assert lx["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert [n["type"] for n in lx["namespaces"]] == ["mount", "network", "ipc", "uts", "pid"]
    assert all("path" not in n for n in lx["namespaces"])
    assert lx["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests[:2] == ["/proc", "/dev"] and "/dev/shm" in dests and "/sys/fs/cgroup" in dests
    sysfs = next(m for m in spec["mounts"] if m["destination"] == "/sys")
    assert "ro" in sysfs["options"]


def test_path_already_set_is_kept() -> None:
    env = build_spec(cfg(env=["PATH=/x"]))["process"]["env"]
    assert env == ["PATH=/x"]


@pytest.mark.parametrize(
    ("ns", "expected"),
    [
        (Namespaces(network="/s/net", ipc="/s/ipc", uts="/s/uts"),
         [("mount", None), ("network", "/s/net"), ("ipc", "/s/ipc"), ("uts", "/s/uts"), ("pid", None)]),
        (Namespaces(network=HOST, ipc=HOST, uts=HOST, pid=HOST), [("mount", None)]),
        (Namespaces(network="/n", pid="/proc/7/ns/pid"),
         [("mount", None), ("network", "/n"), ("ipc", None), ("uts", None), ("pid", "/proc/7/ns/pid")]),
    ],
)
def test_namespaces(ns: Namespaces, expected: list) -> None:
    spec = build_spec(cfg(namespaces=ns, hostname="h"))
    assert [(n["type"], n.get("path")) for n in spec["linux"]["namespaces"]] == expected
    # the hostname is only set by runc in a private UTS namespace; the sandbox sets the shared one
    assert ("hostname" in spec) == (ns.uts == "new")


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        (Resources(), {}),
        (Resources(memory_limit=1 << 20), {"memory": {"limit": 1 << 20, "swap": 1 << 20}}),
        (Resources(memory_limit=100, memory_swap=300), {"memory": {"limit": 100, "swap": 300}}),
        (Resources(cpu_shares=512, cpu_quota=50000, cpu_period=100000),
         {"cpu": {"shares": 512, "quota": 50000, "period": 100000}}),
        (Resources(pids_limit=64), {"pids": {"limit": 64}}),
    ],
)
def test_resources(resources: Resources, expected: dict) -> None:
    r = build_spec(cfg(resources=resources))["linux"]["resources"]
    r.pop("devices")
    assert r == expected


@pytest.mark.parametrize(("asked", "got"), [(1024, 1024), (20000, 20000), (1 << 20, 20000)])
def test_nofile_never_above_the_hard_limit(asked: int, got: int) -> None:
    p = build_spec(cfg(rlimit_nofile=asked))["process"]
    assert p["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": got, "soft": got}]


def test_privileged() -> None:
    spec = build_spec(cfg(privileged=True, devices=[Device("/dev/fuse", "c", 10, 229)]))
    lx = spec["linux"]
    assert "seccomp" not in lx and "maskedPaths" not in lx and "readonlyPaths" not in lx
    assert lx["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert lx["devices"][0]["path"] == "/dev/fuse"
    sysfs = next(m for m in spec["mounts"] if m["destination"] == "/sys")
    assert "ro" not in sysfs["options"]


@pytest.mark.parametrize(
    ("seccomp", "present"), [("RuntimeDefault", True), ("Unconfined", False), (None, False)]
)
def test_seccomp_choice(seccomp, present: bool) -> None:
    assert ("seccomp" in build_spec(cfg(seccomp=seccomp))["linux"]) is present


def test_custom_seccomp_and_unknown() -> None:
    prof = {"defaultAction": "SCMP_ACT_ALLOW"}
    assert build_spec(cfg(seccomp=prof))["linux"]["seccomp"] == prof
    with pytest.raises(ValueError):
        build_spec(cfg(seccomp="Localhost/x"))


def test_seccomp_profile_follows_capabilities() -> None:
    def allowed(p: dict) -> set[str]:
        return {n for s in p["syscalls"] if s["action"] == "SCMP_ACT_ALLOW" and "args" not in s
                for n in s["names"]}

    base = default_profile(DEFAULT_CAPABILITIES)
    assert {"read", "write", "execve", "chroot"} <= allowed(base)  # SYS_CHROOT is a default cap
    assert not {"mount", "unshare", "setns", "ptrace", "reboot"} & allowed(base)
    clone = next(s for s in base["syscalls"] if s["names"] == ["clone"])
    assert clone["args"][0]["op"] == "SCMP_CMP_MASKED_EQ"
    assert any(s["names"] == ["clone3"] and s["errnoRet"] == 38 for s in base["syscalls"])
    admin = default_profile([*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"])
    assert {"mount", "unshare", "setns", "clone", "clone3", "ptrace"} <= allowed(admin)
    assert not any(s["names"] == ["clone3"] for s in admin["syscalls"] if s["action"] != "SCMP_ACT_ALLOW")


def test_pod_files_and_user_mounts() -> None:
    spec = build_spec(cfg(
        shm_path="/sb/shm", hosts_path="/sb/hosts", resolv_conf_path="/sb/resolv.conf",
        hostname_path="/sb/hostname", termination_log_path="/c/term", readonly_rootfs=True,
        mounts=[Mount("/data/sub", "/v/sub"), Mount("/data", "/v/data", read_only=True),
                Mount("/cache", type="tmpfs", options=("size=1m",)),
                Mount("/etc/hosts", "/custom/hosts", propagation="rslave")],
    ))
    by = {m["destination"]: m for m in spec["mounts"]}
    assert by["/dev/shm"]["source"] == "/sb/shm" and by["/dev/shm"]["type"] == "bind"
    assert by["/etc/resolv.conf"]["options"][:3] == ["rbind", "rprivate", "ro"]
    assert by["/etc/hostname"]["source"] == "/sb/hostname"
    assert by["/dev/termination-log"]["source"] == "/c/term" and "rw" in by["/dev/termination-log"]["options"]
    assert by["/data"]["options"] == ["rbind", "rprivate", "ro"]
    assert by["/cache"] == {"destination": "/cache", "type": "tmpfs", "source": "tmpfs",
                            "options": ["size=1m"]}
    # a user mount replaces the default at the same place
    assert by["/etc/hosts"]["source"] == "/custom/hosts" and "rslave" in by["/etc/hosts"]["options"]
    assert sum(m["destination"] == "/etc/hosts" for m in spec["mounts"]) == 1
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests.index("/data") < dests.index("/data/sub")
    assert spec["root"]["readonly"] is True


def test_private_shm_without_pod_shm() -> None:
    shm = next(m for m in build_spec(cfg(shm_size=1 << 20))["mounts"] if m["destination"] == "/dev/shm")
    assert shm["type"] == "tmpfs" and f"size={1 << 20}" in shm["options"]


def test_misc_fields() -> None:
    spec = build_spec(cfg(
        no_new_privileges=True, oom_score_adj=500, sysctls={"net.ipv4.ip_forward": "1"}, cgroups_path="p/c",
        annotations={"a": "b"}, stdin=True, terminal=True, masked_paths=[], readonly_paths=[],
    ))
    assert spec["process"]["noNewPrivileges"] is True and spec["process"]["oomScoreAdj"] == 500
    assert spec["process"]["terminal"] is True
    assert spec["linux"]["sysctl"] == {"net.ipv4.ip_forward": "1"}
    assert spec["linux"]["cgroupsPath"] == "p/c"
    assert spec["annotations"] == {"a": "b", "io.peapod.stdin": "true"}
    assert spec["linux"]["maskedPaths"] == [] and spec["linux"]["readonlyPaths"] == []


def test_empty_args_rejected() -> None:
    with pytest.raises(ValueError):
        build_spec(ContainerConfig(args=[], rootfs="/r"))


def test_write_bundle(tmp_path) -> None:
    d = write_bundle(tmp_path / "b", {"ociVersion": "x"})
    assert json.loads((d / "config.json").read_text()) == {"ociVersion": "x"}
    assert not (d / "config.json.tmp").exists()


def test_privileged_and_all_get_only_the_callers_capabilities() -> None:
    from peapod.node.runtime.bundle import capabilities_from_mask, current_capabilities

    avail = current_capabilities("Name:\tx\nCapBnd:\t000001fffeffffff\n")
    assert avail is not None and "CAP_SYS_RESOURCE" not in avail and "CAP_SYS_ADMIN" in avail
    assert len(avail) == 40 and capabilities_from_mask(1 << 21) == ["CAP_SYS_ADMIN"]
    for c in (cfg(privileged=True), cfg(cap_add=["ALL"])):
        caps = build_spec(c, available_caps=avail)["process"]["capabilities"]["bounding"]
        assert caps == avail
    assert "CAP_SYS_RESOURCE" in effective_capabilities(cfg(privileged=True))
    spec = build_spec(cfg(privileged=True))
    assert all("ro" not in m["options"] for m in spec["mounts"] if m["destination"].startswith("/sys"))
