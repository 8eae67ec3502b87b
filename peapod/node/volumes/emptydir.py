"""emptyDir: a directory under the pod dir, or a tmpfs for medium Memory; usage accounting for eviction."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from peapod.api.quantity import memory_bytes

from .mounter import Mounter, mount_points
from .types import EMPTY_DIR, VOLUMES_DIR

DIR_PERM = 0o777


def node_memory_bytes() -> int:
    """MemTotal of this machine: the ceiling of memory-backed volumes when allocatable is not known."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("MemTotal missing from /proc/meminfo")


def _limit(c: Mapping[str, Any]) -> int | None:
    raw = ((c.get("resources") or {}).get("limits") or {}).get("memory")
    return memory_bytes(raw) if raw is not None else None


def pod_memory_limit(pod: Mapping[str, Any]) -> int | None:
    """The pod cgroup's memory limit (kubelet's ResourceConfigForPod): only when every container has one.

    Sidecars (init containers with restartPolicy Always) run alongside the app containers; other init
    containers run alone, so the pod needs max(sum of long-running, largest init) plus overhead.
    """
    spec = pod.get("spec") or {}
    long_running, init_max = 0, 0
    for c in spec.get("initContainers") or []:
        lim = _limit(c)
        if lim is None:
            return None
        if c.get("restartPolicy") == "Always":
            long_running += lim
        else:
            init_max = max(init_max, lim + long_running)
    for c in spec.get("containers") or []:
        lim = _limit(c)
        if lim is None:
            return None
        long_running += lim
    overhead = (spec.get("overhead") or {}).get("memory")
    total = max(long_running, init_max)
    return total + (memory_bytes(overhead) if overhead is not None else 0) if total else None


def memory_volume_size(pod: Mapping[str, Any], size_limit: str | None, node_allocatable_memory: int) -> int:
    """kubelet's calculateEmptyDirMemorySize: node allocatable, lowered to the pod's memory limit, lowered
    to the volume's sizeLimit; each only when positive and smaller."""
    size = node_allocatable_memory
    pod_limit = pod_memory_limit(pod)
    if pod_limit is not None and 0 < pod_limit <= size:
        size = pod_limit
    if size_limit is not None:
        vol = memory_bytes(size_limit)
        if 0 < vol <= size:
            size = vol
    return size


def setup_dir(path: Path) -> None:
    """kubelet's emptyDir setupDir: the directory exists with at least 0777 (a tmpfs keeps its sticky bit)."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_PERM)
    mode = os.stat(path).st_mode
    if stat.S_IMODE(mode) & 0o777 != DIR_PERM:
        os.chmod(path, stat.S_IMODE(mode) | DIR_PERM)


def setup_memory_dir(path: Path, size: int, mounter: Mounter) -> bool:
    """Mount a tmpfs of ``size`` bytes on ``path`` unless one is there; returns whether it mounted now."""
    path.mkdir(parents=True, exist_ok=True, mode=0o750)
    mounted = False
    if not mounter.is_mountpoint(path):
        mounter.mount_tmpfs(path, size=size)
        mounted = True
    setup_dir(path)
    return mounted


def _du(root: Path) -> int:
    """Bytes allocated below ``root`` (du -x semantics: one filesystem, hard links counted once)."""
    try:
        root_dev = os.lstat(root).st_dev
    except FileNotFoundError:
        return 0
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [str(root)]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_dev != root_dev:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
            if stat.S_ISDIR(st.st_mode):
                stack.append(e.path)
    return total


def emptydir_usage(pod_dir: Path, *, mounted: set[str] | None = None) -> dict[str, int]:
    """Bytes used by each emptyDir of the pod. Disk ones are walked; tmpfs ones report the filesystem's
    used blocks. ``mounted`` (canonical paths of mount points) avoids re-reading mountinfo."""
    base = Path(pod_dir) / VOLUMES_DIR / EMPTY_DIR
    out: dict[str, int] = {}
    if not base.is_dir():
        return out
    if mounted is None:
        mounted = set(mount_points())
    for entry in os.scandir(base):
        if not entry.is_dir(follow_symlinks=False):
            continue
        p = Path(entry.path)
        if os.path.realpath(p) in mounted:
            st = os.statvfs(p)
            out[entry.name] = (st.f_blocks - st.f_bfree) * st.f_frsize
        else:
            out[entry.name] = _du(p)
    return out


def emptydir_overuse(pod: Mapping[str, Any], usage: Mapping[str, int]) -> list[str]:
    """Eviction messages (kubelet's wording) for disk emptyDirs whose usage exceeds their sizeLimit."""
    msgs = []
    for vol in (pod.get("spec") or {}).get("volumes") or []:
        ed = vol.get("emptyDir")
        if ed is None or ed.get("medium") == "Memory" or not ed.get("sizeLimit"):
            continue
        if usage.get(vol["name"], 0) > memory_bytes(ed["sizeLimit"]):
            msgs.append(f'Usage of EmptyDir volume "{vol["name"]}" exceeds the limit "{ed["sizeLimit"]}". ')
    return msgs
