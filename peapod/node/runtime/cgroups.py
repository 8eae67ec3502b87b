"""Pod and container cgroups (cgroupfs driver), on cgroup v1, hybrid, or the v2 unified hierarchy.

Paths handed to runc are *relative* (``<parent>/pod<uid>/<container>``). runc resolves a relative
cgroupsPath under its own cgroup in each hierarchy, and runc runs in the agent's cgroups (conmon
inherits them), so this module resolves paths the same way from /proc/self/cgroup. An agent started
in the root cgroup gets ``/sys/fs/cgroup/<ctrl>/peapod/...``; one inside a delegated or limited
cgroup nests its pods under it and stays within its limits.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

# v1 hierarchies where the agent creates the pod level itself (runc creates the rest on demand).
POD_CONTROLLERS_V1 = ("cpu", "cpuacct", "memory", "pids")


@dataclass(frozen=True)
class CgroupStats:
    memory_usage_bytes: int | None = None
    memory_working_set_bytes: int | None = None
    cpu_usage_ns: int | None = None
    pids: int | None = None


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares -> v2 cpu.weight (the conversion runc and crun use)."""
    return 1 + ((max(2, min(shares, 262144)) - 2) * 9999) // 262142


def _read_int(p: Path) -> int | None:
    try:
        text = p.read_text().strip()
    except (FileNotFoundError, OSError):
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _read_kv(p: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in p.read_text().splitlines():
            k, _, v = line.partition(" ")
            with contextlib.suppress(ValueError):
                out[k] = int(v)
    except (FileNotFoundError, OSError):
        pass
    return out


class CgroupManager:
    def __init__(
        self,
        parent: str = "peapod",
        *,
        cgroup_root: str | os.PathLike[str] = "/sys/fs/cgroup",
        self_cgroup: str | None = None,
    ) -> None:
        """``self_cgroup``: text of /proc/self/cgroup (read now when None; injectable for tests)."""
        self.parent = parent.strip("/")
        self.root = Path(cgroup_root)
        if self_cgroup is None:
            self_cgroup = Path("/proc/self/cgroup").read_text()
        self.unified = (self.root / "cgroup.controllers").exists()
        # hierarchy mount dir -> the agent's own cgroup path in it
        self._own: dict[Path, str] = {}
        for line in self_cgroup.splitlines():
            parts = line.split(":", 2)
            if len(parts) != 3:
                continue
            _hid, ctrls, path = parts
            if not ctrls:  # v2 line "0::/path"
                mount = self.root if self.unified else self.root / "unified"
            else:
                names = [c.removeprefix("name=") for c in ctrls.split(",")]
                mount = self.root / ",".join(names)
                if not mount.exists():
                    mount = self.root / names[0]
            if mount.is_dir():
                self._own[mount] = path
        if self.unified:
            self._own = {m: p for m, p in self._own.items() if m == self.root}

    # ---- paths -----------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        if self.unified:
            return "v2"
        return "hybrid" if (self.root / "unified") in self._own else "v1"

    def pod_relpath(self, pod_uid: str) -> str:
        return f"{self.parent}/pod{pod_uid}"

    def container_relpath(self, pod_uid: str, container_id: str) -> str:
        """The cgroupsPath for runc (relative: resolved under runc's own cgroups)."""
        return f"{self.pod_relpath(pod_uid)}/{container_id}"

    def dirs(self, relpath: str) -> dict[Path, Path]:
        """Hierarchy mount -> absolute directory of ``relpath`` in it."""
        return {m: m / own.lstrip("/") / relpath for m, own in self._own.items()}

    def _dir_for(self, relpath: str, controller: str) -> Path | None:
        if self.unified:
            return self.root / self._own[self.root].lstrip("/") / relpath
        for m, d in self.dirs(relpath).items():
            if controller in m.name.split(","):
                return d
        return None

    # ---- lifecycle -------------------------------------------------------------------------

    def create_pod(
        self,
        pod_uid: str,
        *,
        memory_limit: int | None = None,
        cpu_shares: int | None = None,
        cpu_quota: int | None = None,
        cpu_period: int = 100_000,
        pids_limit: int | None = None,
    ) -> None:
        rel = self.pod_relpath(pod_uid)
        if self.unified:
            self._create_v2(rel, memory_limit, cpu_shares, cpu_quota, cpu_period, pids_limit)
            return
        for ctrl in POD_CONTROLLERS_V1:
            d = self._dir_for(rel, ctrl)
            if d is None:
                continue
            d.mkdir(parents=True, exist_ok=True)
            if ctrl == "memory" and memory_limit is not None:
                (d / "memory.limit_in_bytes").write_text(str(memory_limit))
            if ctrl == "cpu":
                if cpu_shares is not None:
                    (d / "cpu.shares").write_text(str(cpu_shares))
                if cpu_quota is not None:
                    (d / "cpu.cfs_period_us").write_text(str(cpu_period))
                    (d / "cpu.cfs_quota_us").write_text(str(cpu_quota))
            if ctrl == "pids" and pids_limit is not None:
                (d / "pids.max").write_text(str(pids_limit))

    def _create_v2(self, rel: str, memory_limit: int | None, cpu_shares: int | None, cpu_quota: int | None,
                   cpu_period: int, pids_limit: int | None) -> None:
        base = self.root / self._own[self.root].lstrip("/")
        d = base / rel
        # enable controllers top-down so the pod (and its containers) can use them
        cur = base
        for part in [*Path(rel).parts]:
            with contextlib.suppress(OSError):
                available = (cur / "cgroup.controllers").read_text().split()
                wanted = [c for c in ("cpu", "memory", "pids", "io", "cpuset") if c in available]
                if wanted:
                    (cur / "cgroup.subtree_control").write_text(" ".join("+" + c for c in wanted))
            cur = cur / part
            cur.mkdir(exist_ok=True)
        with contextlib.suppress(OSError):
            available = (d / "cgroup.controllers").read_text().split()
            wanted = [c for c in ("cpu", "memory", "pids", "io", "cpuset") if c in available]
            if wanted:
                (d / "cgroup.subtree_control").write_text(" ".join("+" + c for c in wanted))
        if memory_limit is not None:
            (d / "memory.max").write_text(str(memory_limit))
        if cpu_shares is not None:
            (d / "cpu.weight").write_text(str(shares_to_weight(cpu_shares)))
        if cpu_quota is not None:
            (d / "cpu.max").write_text(f"{cpu_quota} {cpu_period}")
        if pids_limit is not None:
            (d / "pids.max").write_text(str(pids_limit))

    def add_process(self, pod_uid: str, pid: int) -> None:
        """Move ``pid`` into the pod-level cgroup (the shared-PID-namespace reaper lives there)."""
        rel = self.pod_relpath(pod_uid)
        targets = [self._dir_for(rel, "")] if self.unified else [
            self._dir_for(rel, c) for c in POD_CONTROLLERS_V1
        ]
        for d in targets:
            if d is not None and d.is_dir():
                (d / "cgroup.procs").write_text(str(pid))

    def remove(self, relpath: str, *, kill: bool = True, timeout: float = 5.0) -> None:
        """Remove ``relpath`` (and any children) in every hierarchy; idempotent.

        Leftover processes are SIGKILLed when ``kill`` (a pod being torn down has none that matter).
        """
        deadline = time.monotonic() + timeout
        for _mount, d in self.dirs(relpath).items():
            if not d.is_dir():
                continue
            subdirs = sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
            for sub in [*subdirs, d]:
                self._rmdir(sub, kill=kill, deadline=deadline)

    def _rmdir(self, d: Path, *, kill: bool, deadline: float) -> None:
        while True:
            try:
                d.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise
            if kill:
                for pid in self.pids_in(d):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def remove_pod(self, pod_uid: str, *, kill: bool = True) -> None:
        self.remove(self.pod_relpath(pod_uid), kill=kill)

    def remove_parent_if_empty(self) -> None:
        """Remove the ``parent`` dir in each hierarchy when no pods remain (for tests and uninstall)."""
        for d in self.dirs(self.parent).values():
            with contextlib.suppress(FileNotFoundError, OSError):
                if not any(p.is_dir() for p in d.iterdir()):
                    d.rmdir()

    def exists(self, relpath: str) -> bool:
        return any(d.is_dir() for d in self.dirs(relpath).values())

    @staticmethod
    def pids_in(d: Path) -> list[int]:
        try:
            return [int(x) for x in (d / "cgroup.procs").read_text().split()]
        except (FileNotFoundError, ValueError, OSError):
            return []

    # ---- stats -----------------------------------------------------------------------------

    def stats(self, relpath: str) -> CgroupStats:
        """Memory usage/working set, cumulative CPU time and process count of ``relpath``."""
        if self.unified:
            d = self._dir_for(relpath, "")
            assert d is not None
            usage = _read_int(d / "memory.current")
            inactive = _read_kv(d / "memory.stat").get("inactive_file", 0)
            cpu = _read_kv(d / "cpu.stat").get("usage_usec")
            return CgroupStats(
                memory_usage_bytes=usage,
                memory_working_set_bytes=None if usage is None else max(0, usage - inactive),
                cpu_usage_ns=None if cpu is None else cpu * 1000,
                pids=_read_int(d / "pids.current"),
            )
        mem = self._dir_for(relpath, "memory")
        acct = self._dir_for(relpath, "cpuacct")
        pids = self._dir_for(relpath, "pids")
        usage = _read_int(mem / "memory.usage_in_bytes") if mem else None
        inactive = _read_kv(mem / "memory.stat").get("total_inactive_file", 0) if mem else 0
        return CgroupStats(
            memory_usage_bytes=usage,
            memory_working_set_bytes=None if usage is None else max(0, usage - inactive),
            cpu_usage_ns=_read_int(acct / "cpuacct.usage") if acct else None,
            pids=_read_int(pids / "pids.current") if pids else None,
        )
