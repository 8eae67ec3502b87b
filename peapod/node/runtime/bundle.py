"""OCI runtime-spec (config.json) generation from a ContainerConfig: pure, no I/O except write_bundle."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from peapod.node.runtime.seccomp_default import default_profile
from peapod.node.runtime.types import (
    ALL_CAPABILITIES,
    DEFAULT_CAPABILITIES,
    HOST,
    MAX_NOFILE,
    NEW,
    ContainerConfig,
    Device,
    Mount,
)

OCI_VERSION = "1.0.2-dev"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STDIN_ANNOTATION = "io.peapod.stdin"

# containerd's defaults (pkg/oci/spec.go).
DEFAULT_MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
    "/sys/devices/virtual/powercap", "/proc/scsi",
)
DEFAULT_READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)

# Device cgroup allow-list (runc's / containerd's defaults): deny everything else.
DEFAULT_DEVICE_RULES: tuple[dict[str, Any], ...] = (
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},  # /dev/null
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},  # /dev/zero
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},  # /dev/full
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},  # /dev/random
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},  # /dev/urandom
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},  # /dev/tty
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},  # /dev/console
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},  # /dev/ptmx
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},  # /dev/pts/*
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},  # /dev/net/tun
    {"allow": True, "type": "c", "access": "m"},  # mknod of any char device
    {"allow": True, "type": "b", "access": "m"},
)


def normalize_capability(name: str) -> str:
    name = name.strip().upper()
    return name if name.startswith("CAP_") or name == "ALL" else "CAP_" + name


def capabilities_from_mask(mask: int) -> list[str]:
    """Capability names of a /proc/<pid>/status mask (ALL_CAPABILITIES is in bit order)."""
    return [c for bit, c in enumerate(ALL_CAPABILITIES) if mask & (1 << bit)]


def current_capabilities(status: str) -> list[str] | None:
    """The bounding set in /proc/self/status text: what a privileged container (or "ALL") can get;
    like containerd's WithAllCurrentCapabilities. None when unknown."""
    for line in status.splitlines():
        if line.startswith("CapBnd:"):
            return capabilities_from_mask(int(line.split()[1], 16))
    return None


def effective_capabilities(cfg: ContainerConfig, available: Sequence[str] | None = None) -> list[str]:
    """Kubernetes semantics: default set, drop (ALL empties it), then add (ALL adds every cap).
    Privileged and "ALL" mean every cap in ``available`` (the runtime's own bounding set) when given:
    runc cannot grant a capability its caller lacks."""
    every = list(ALL_CAPABILITIES) if available is None else [c for c in ALL_CAPABILITIES if c in available]
    if cfg.privileged:
        return every
    drop = {normalize_capability(c) for c in cfg.cap_drop}
    add = [normalize_capability(c) for c in cfg.cap_add]
    caps = [] if "ALL" in drop else [c for c in DEFAULT_CAPABILITIES if c not in drop]
    if "ALL" in add:
        return every
    for c in add:
        if c not in caps:
            caps.append(c)
    return caps


def _bind(dest: str, source: str, *, read_only: bool = False, extra: Iterable[str] = ()) -> dict[str, Any]:
    return {
        "destination": dest,
        "type": "bind",
        "source": source,
        "options": ["rbind", "rprivate", "ro" if read_only else "rw", *extra],
    }


def _mount(m: Mount) -> dict[str, Any]:
    if m.type == "bind":
        opts = ["rbind", m.propagation or "rprivate", "ro" if m.read_only else "rw", *m.options]
        return {"destination": m.destination, "type": "bind", "source": m.source, "options": opts}
    opts = list(m.options) + (["ro"] if m.read_only else [])
    return {"destination": m.destination, "type": m.type, "source": m.source or m.type, "options": opts}


def _default_mounts(cfg: ContainerConfig) -> list[dict[str, Any]]:
    """containerd's defaults; /sys and /sys/fs/cgroup are writable only for privileged containers."""
    sys_opts = ["nosuid", "noexec", "nodev"] + ([] if cfg.privileged else ["ro"])
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_opts},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime"] + ([] if cfg.privileged else ["ro"])},
    ]
    if cfg.shm_path:
        mounts.append(_bind("/dev/shm", cfg.shm_path, extra=("nosuid", "nodev", "noexec")))
    else:
        mounts.append({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                       "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={cfg.shm_size}"]})
    for dest, src in (("/etc/hosts", cfg.hosts_path), ("/etc/resolv.conf", cfg.resolv_conf_path),
                      ("/etc/hostname", cfg.hostname_path)):
        if src:
            mounts.append(_bind(dest, src, read_only=cfg.readonly_rootfs))
    if cfg.termination_log_path:
        mounts.append(_bind(cfg.termination_message_path, cfg.termination_log_path))
    return mounts


def _depth(path: str) -> int:
    return len([p for p in os.path.normpath(path).split("/") if p])


def build_mounts(cfg: ContainerConfig) -> list[dict[str, Any]]:
    """Defaults first, then the container's mounts (parents before children); a container mount
    at a default's destination replaces it."""
    user = [_mount(m) for m in cfg.mounts]
    user_dests = {os.path.normpath(m["destination"]) for m in user}
    defaults = [m for m in _default_mounts(cfg) if os.path.normpath(m["destination"]) not in user_dests]
    return defaults + sorted(user, key=lambda m: _depth(m["destination"]))


def _namespaces(cfg: ContainerConfig) -> list[dict[str, str]]:
    out = [{"type": "mount"}]
    ns = cfg.namespaces
    for kind, mode in (("network", ns.network), ("ipc", ns.ipc), ("uts", ns.uts), ("pid", ns.pid)):
        if mode == HOST:
            continue
        out.append({"type": kind} if mode == NEW else {"type": kind, "path": mode})
    return out


def _env(cfg: ContainerConfig) -> list[str]:
    env = list(cfg.env)
    keys = {e.split("=", 1)[0] for e in env}
    if "PATH" not in keys:
        env.insert(0, "PATH=" + DEFAULT_PATH)
    if cfg.hostname and "HOSTNAME" not in keys:
        env.append("HOSTNAME=" + cfg.hostname)
    return env


def _resources(cfg: ContainerConfig) -> dict[str, Any]:
    r = cfg.resources
    out: dict[str, Any] = {
        "devices": [{"allow": True, "access": "rwm"}] if cfg.privileged else [dict(d) for d in
                                                                             DEFAULT_DEVICE_RULES]
    }
    if not cfg.privileged:
        for d in cfg.devices:
            out["devices"].append({"allow": True, "type": d.type, "major": d.major, "minor": d.minor,
                                   "access": "rwm"})
    if r.memory_limit is not None:
        out["memory"] = {"limit": r.memory_limit,
                         "swap": r.memory_swap if r.memory_swap is not None else r.memory_limit}
    cpu = {k: v for k, v in (("shares", r.cpu_shares), ("quota", r.cpu_quota), ("period", r.cpu_period))
           if v is not None}
    if cpu:
        out["cpu"] = cpu
    if r.pids_limit is not None:
        out["pids"] = {"limit": r.pids_limit}
    return out


def _device(d: Device) -> dict[str, Any]:
    return {"path": d.path, "type": d.type, "major": d.major, "minor": d.minor, "fileMode": d.file_mode,
            "uid": d.uid, "gid": d.gid}


def build_spec(cfg: ContainerConfig, *, max_nofile: int = MAX_NOFILE,
               available_caps: Sequence[str] | None = None) -> dict[str, Any]:
    """The OCI config.json for ``cfg``; ``available_caps``: see :func:`effective_capabilities`."""
    if not cfg.args:
        raise ValueError("container args must not be empty")
    caps = effective_capabilities(cfg, available_caps)
    user: dict[str, Any] = {"uid": cfg.uid, "gid": cfg.gid}
    if cfg.additional_gids:
        user["additionalGids"] = list(cfg.additional_gids)
    if cfg.umask is not None:
        user["umask"] = cfg.umask
    process: dict[str, Any] = {
        "terminal": cfg.terminal,
        "user": user,
        "args": list(cfg.args),
        "env": _env(cfg),
        "cwd": cfg.cwd or "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": cfg.no_new_privileges,
    }
    if cfg.rlimit_nofile is not None:
        n = min(cfg.rlimit_nofile, max_nofile)
        process["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": n, "soft": n}]
    if cfg.oom_score_adj is not None:
        process["oomScoreAdj"] = cfg.oom_score_adj
    linux: dict[str, Any] = {
        "namespaces": _namespaces(cfg),
        "resources": _resources(cfg),
    }
    if cfg.cgroups_path:
        linux["cgroupsPath"] = cfg.cgroups_path
    if cfg.sysctls:
        linux["sysctl"] = dict(cfg.sysctls)
    if cfg.devices:
        linux["devices"] = [_device(d) for d in cfg.devices]
    if not cfg.privileged:
        linux["maskedPaths"] = list(DEFAULT_MASKED_PATHS if cfg.masked_paths is None else cfg.masked_paths)
        linux["readonlyPaths"] = list(
            DEFAULT_READONLY_PATHS if cfg.readonly_paths is None else cfg.readonly_paths
        )
        if cfg.seccomp == "RuntimeDefault":
            linux["seccomp"] = default_profile(caps)
        elif isinstance(cfg.seccomp, Mapping):
            linux["seccomp"] = dict(cfg.seccomp)
        elif cfg.seccomp not in (None, "Unconfined"):
            raise ValueError(f"unknown seccomp profile {cfg.seccomp!r}")
    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": cfg.rootfs, "readonly": cfg.readonly_rootfs},
        "mounts": build_mounts(cfg),
        "linux": linux,
    }
    if cfg.hostname and cfg.namespaces.uts == NEW:
        spec["hostname"] = cfg.hostname
    annotations = dict(cfg.annotations)
    if cfg.stdin:
        annotations[STDIN_ANNOTATION] = "true"
    if annotations:
        spec["annotations"] = annotations
    return spec


def write_bundle(bundle_dir: str | Path, spec: Mapping[str, Any]) -> Path:
    """Write ``config.json`` atomically into ``bundle_dir`` (created); returns the bundle dir."""
    d = Path(bundle_dir)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / "config.json.tmp"
    tmp.write_text(json.dumps(spec, indent=1))
    os.replace(tmp, d / "config.json")
    return d


def host_devices(paths: Sequence[str] = ("/dev",)) -> list[Device]:
    """The host's device nodes (for privileged containers). Not pure: reads /dev."""
    import stat

    out: list[Device] = []
    for top in paths:
        for dirpath, _dirs, files in os.walk(top):
            if dirpath.startswith(("/dev/pts", "/dev/shm", "/dev/mqueue")):
                continue
            for f in files:
                p = os.path.join(dirpath, f)
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                    if p in ("/dev/console", "/dev/ptmx", "/dev/tty"):
                        continue
                    out.append(Device(path=p, type="c" if stat.S_ISCHR(st.st_mode) else "b",
                                      major=os.major(st.st_rdev), minor=os.minor(st.st_rdev),
                                      file_mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid))
    return out
