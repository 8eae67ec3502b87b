"""Pod sandboxes: the namespaces, /dev/shm and files a pod's containers share.

Network, IPC and UTS namespaces are held without any process: util-linux ``unshare --net=FILE``
creates them in a short-lived helper and bind-mounts /proc/PID/ns/* onto files in the sandbox dir
(what ``ip netns add`` does). The sandbox dir is bind-mounted onto itself with private propagation
so these mounts don't spread to other mount namespaces. The helper runs ``hostname`` inside the new
UTS namespace before it exits.

A shared PID namespace cannot outlive its init, so when shareProcessNamespace is set a tiny init
holds it: Debian's ``catatonit -P`` (pause mode: sleeps, reaps zombies, no shell or Python), started
as PID 1 of a new PID namespace by ``unshare --pid --fork`` inside the pod's other namespaces, and
moved into the pod cgroup. Containers join ``/proc/<init>/ns/pid``.

Everything is recorded in ``sandbox.json`` so teardown works after an agent crash: it unmounts
and removes whatever it finds, and is safe to repeat.

Layout of ``<data>/sandboxes/<pod uid>/``: sandbox.json, ns/{net,ipc,uts}, shm/ (tmpfs), hostname,
hosts, resolv.conf.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import json
import os
import shutil
import signal
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from peapod.node.runtime.cgroups import CgroupManager
from peapod.node.runtime.types import HOST, NEW, Namespaces

MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)


class SandboxError(Exception):
    pass


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    rc = _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                     data.encode() if data else None)
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount {source} on {target}: {os.strerror(e)}")


def _umount(target: str) -> bool:
    """Lazily unmount one layer at ``target``; False if nothing was mounted there."""
    rc = _libc.umount2(target.encode(), MNT_DETACH)
    if rc == 0:
        return True
    e = ctypes.get_errno()
    if e in (errno.EINVAL, errno.ENOENT):
        return False
    raise OSError(e, f"umount {target}: {os.strerror(e)}")


def mount_points() -> set[str]:
    out = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4]
            out.add(mp.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
                    .replace("\\134", "\\"))
    return out


def _unmount_all(target: str) -> None:
    for _ in range(64):
        if not _umount(target):
            return


def pod_hostname(name: str, hostname: str | None = None) -> str:
    """Kubernetes: spec.hostname or the pod name, cut to 63 characters without trailing '-'/'.'."""
    h = (hostname or name)[:63]
    return h.rstrip("-.") or h


@dataclass(frozen=True)
class SandboxConfig:
    pod_uid: str
    name: str
    namespace: str = "default"
    hostname: str | None = None  # default: pod_hostname(name)
    host_network: bool = False
    host_ipc: bool = False
    host_pid: bool = False
    share_process_namespace: bool = False
    shm_size: int = 64 * 1024 * 1024
    # pod-level cgroup limits (sum of container limits), optional
    memory_limit: int | None = None
    cpu_shares: int | None = None
    cpu_quota: int | None = None
    cpu_period: int = 100_000
    pids_limit: int | None = None


@dataclass
class Sandbox:
    pod_uid: str
    dir: str
    hostname: str
    host_network: bool = False
    host_ipc: bool = False
    host_pid: bool = False
    share_process_namespace: bool = False
    reaper_pid: int | None = None
    reaper_start_time: int | None = None
    cgroup: str | None = None  # relative cgroup path of the pod (see CgroupManager)
    config: dict = field(default_factory=dict)

    @property
    def netns_path(self) -> str | None:
        return None if self.host_network else os.path.join(self.dir, "ns", "net")

    @property
    def ipc_ns_path(self) -> str | None:
        return None if self.host_ipc else os.path.join(self.dir, "ns", "ipc")

    @property
    def uts_ns_path(self) -> str | None:
        return None if self.host_network else os.path.join(self.dir, "ns", "uts")

    @property
    def pid_ns_path(self) -> str | None:
        if self.share_process_namespace and not self.host_pid and self.reaper_pid:
            return f"/proc/{self.reaper_pid}/ns/pid"
        return None

    @property
    def shm_path(self) -> str | None:
        return None if self.host_ipc else os.path.join(self.dir, "shm")

    @property
    def hosts_path(self) -> str:
        return os.path.join(self.dir, "hosts")

    @property
    def resolv_conf_path(self) -> str:
        return os.path.join(self.dir, "resolv.conf")

    @property
    def hostname_path(self) -> str:
        return os.path.join(self.dir, "hostname")

    def namespaces(self) -> Namespaces:
        """The namespaces a container of this pod joins (for ContainerConfig)."""
        if self.host_pid:
            pid = HOST
        elif self.share_process_namespace:
            pid = self.pid_ns_path or NEW
        else:
            pid = NEW
        return Namespaces(
            network=self.netns_path or HOST,
            ipc=self.ipc_ns_path or HOST,
            uts=self.uts_ns_path or HOST,
            pid=pid,
        )


def _proc_start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def _children(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return []


def _spawn_detached(args: list[str]) -> subprocess.Popen[bytes]:
    """A long-lived helper in its own session (kept as a Popen so the agent can reap it)."""
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


class SandboxManager:
    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        cgroups: CgroupManager | None = None,
        unshare: str = "/usr/bin/unshare",
        nsenter: str = "/usr/bin/nsenter",
        hostname_bin: str = "/usr/bin/hostname",
        catatonit: str = "/usr/bin/catatonit",
    ) -> None:
        self.root = Path(data_dir) / "sandboxes"
        self.root.mkdir(parents=True, exist_ok=True)
        self.cgroups = cgroups
        self.unshare = unshare
        self.nsenter = nsenter
        self.hostname_bin = hostname_bin
        self.catatonit = catatonit
        self._reapers: dict[str, subprocess.Popen[bytes]] = {}

    def _dir(self, pod_uid: str) -> Path:
        if not pod_uid or "/" in pod_uid or pod_uid.startswith("."):
            raise ValueError(f"invalid pod uid {pod_uid!r}")
        return self.root / pod_uid

    # ---- queries ---------------------------------------------------------------------------

    def get(self, pod_uid: str) -> Sandbox | None:
        try:
            data = json.loads((self._dir(pod_uid) / "sandbox.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return Sandbox(**data)

    def list(self) -> list[Sandbox]:
        out = []
        for d in sorted(self.root.iterdir()):
            sb = self.get(d.name) if d.is_dir() else None
            if sb is not None:
                out.append(sb)
        return out

    def list_uids(self) -> list[str]:
        """Every sandbox dir, including half-created ones (for garbage collection)."""
        return sorted(d.name for d in self.root.iterdir() if d.is_dir())

    def healthy(self, sb: Sandbox) -> bool:
        # The namespace files (nsfs) and /dev/shm (tmpfs) are mounts of other filesystems than
        # their directory's: comparing st_dev is enough, and costs no /proc/self/mountinfo parse
        # per pod per sync.
        for p in (sb.netns_path, sb.ipc_ns_path, sb.uts_ns_path, sb.shm_path):
            if p is not None and not _foreign_mount(p):
                return False
        if sb.share_process_namespace and not sb.host_pid:
            return sb.reaper_pid is not None and _proc_start_time(sb.reaper_pid) == sb.reaper_start_time
        return True

    # ---- create ----------------------------------------------------------------------------

    async def create(self, cfg: SandboxConfig) -> Sandbox:
        """Create the sandbox; returns the existing one if it is already complete."""
        existing = self.get(cfg.pod_uid)
        if existing is not None and self.healthy(existing):
            return existing
        if existing is not None or self._dir(cfg.pod_uid).exists():
            await self.teardown(cfg.pod_uid)
        d = self._dir(cfg.pod_uid)
        sb = Sandbox(
            pod_uid=cfg.pod_uid, dir=str(d), hostname=pod_hostname(cfg.name, cfg.hostname),
            host_network=cfg.host_network, host_ipc=cfg.host_ipc, host_pid=cfg.host_pid,
            share_process_namespace=cfg.share_process_namespace and not cfg.host_pid,
            config=asdict(cfg),
        )
        try:
            await asyncio.to_thread(self._prepare_dir, d, sb, cfg)
            await self._create_namespaces(sb)
            if self.cgroups is not None:
                self.cgroups.create_pod(cfg.pod_uid, memory_limit=cfg.memory_limit,
                                        cpu_shares=cfg.cpu_shares, cpu_quota=cfg.cpu_quota,
                                        cpu_period=cfg.cpu_period, pids_limit=cfg.pids_limit)
                sb.cgroup = self.cgroups.pod_relpath(cfg.pod_uid)
            if sb.share_process_namespace:
                await self._start_reaper(sb)
            self._save(sb)
        except BaseException:
            await self.teardown(cfg.pod_uid, _sandbox=sb)
            raise
        return sb

    def _save(self, sb: Sandbox) -> None:
        p = Path(sb.dir) / "sandbox.json"
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(sb)))
        os.replace(tmp, p)

    def _prepare_dir(self, d: Path, sb: Sandbox, cfg: SandboxConfig) -> None:
        d.mkdir(parents=True, exist_ok=True)
        # the sandbox dir is its own private mount, so nsfs/tmpfs mounts below it don't propagate
        _mount(str(d), str(d), None, MS_BIND | MS_REC)
        _mount("none", str(d), None, MS_PRIVATE | MS_REC)
        (d / "ns").mkdir(exist_ok=True)
        for p in (sb.netns_path, sb.ipc_ns_path, sb.uts_ns_path):
            if p is not None:
                Path(p).touch()
        if sb.shm_path is not None:
            Path(sb.shm_path).mkdir(exist_ok=True)
            _mount("shm", sb.shm_path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                   f"mode=1777,size={cfg.shm_size}")
        Path(sb.hostname_path).write_text(
            (sb.hostname if not sb.host_network else os.uname().nodename) + "\n"
        )
        for name in ("hosts", "resolv.conf"):
            (d / name).touch()
        self._save(sb)  # record early so a crash mid-create can be torn down

    async def _create_namespaces(self, sb: Sandbox) -> None:
        args = [self.unshare]
        if sb.netns_path:
            args.append(f"--net={sb.netns_path}")
        if sb.ipc_ns_path:
            args.append(f"--ipc={sb.ipc_ns_path}")
        if sb.uts_ns_path:
            args.append(f"--uts={sb.uts_ns_path}")
        if len(args) == 1:
            return
        args += ["--", self.hostname_bin, sb.hostname] if sb.uts_ns_path else ["--", "/bin/true"]
        proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise SandboxError(f"unshare for pod {sb.pod_uid}: {err.decode(errors='replace').strip()}")

    async def _start_reaper(self, sb: Sandbox) -> None:
        ns_args = [f"{flag}={p}" for flag, p in
                   (("--net", sb.netns_path), ("--ipc", sb.ipc_ns_path), ("--uts", sb.uts_ns_path)) if p]
        args = [self.unshare, "--pid", "--fork", "--kill-child", "--", self.catatonit, "-P"]
        if ns_args:
            args = [self.nsenter, *ns_args, "--", *args]
        proc = _spawn_detached(args)
        self._reapers[sb.pod_uid] = proc
        child = None
        for _ in range(500):
            children = _children(proc.pid)
            if children:
                child = int(children[0])
                try:
                    if os.readlink(f"/proc/{child}/ns/pid") != os.readlink("/proc/self/ns/pid"):
                        break
                except FileNotFoundError:
                    pass
            if proc.poll() is not None:
                raise SandboxError(f"pid namespace init for pod {sb.pod_uid} exited ({proc.returncode})")
            await asyncio.sleep(0.01)
        else:
            raise SandboxError(f"pid namespace init for pod {sb.pod_uid} did not start")
        assert child is not None
        sb.reaper_pid = child
        sb.reaper_start_time = _proc_start_time(child)
        sb.config["reaper_parent_pid"] = proc.pid
        sb.config["reaper_parent_start_time"] = _proc_start_time(proc.pid)
        self._save(sb)
        if self.cgroups is not None:
            self.cgroups.add_process(sb.pod_uid, child)

    # ---- teardown --------------------------------------------------------------------------

    async def teardown(self, pod_uid: str, *, _sandbox: Sandbox | None = None) -> None:
        """Stop the PID-namespace init, unmount namespaces and shm, remove the pod cgroup and dir."""
        d = self._dir(pod_uid)
        sb = self.get(pod_uid) or _sandbox
        if sb is not None:
            await self._stop_reaper(sb)
        if d.exists():
            await asyncio.to_thread(self._unmount_dir, d)
        if self.cgroups is not None:
            await asyncio.to_thread(self.cgroups.remove_pod, pod_uid)
        if d.exists():
            shutil.rmtree(d, ignore_errors=True)
        if d.exists():
            raise SandboxError(f"could not remove sandbox dir {d}")

    async def _stop_reaper(self, sb: Sandbox) -> None:
        for pid, start in ((sb.reaper_pid, sb.reaper_start_time),
                           (sb.config.get("reaper_parent_pid"), sb.config.get("reaper_parent_start_time"))):
            if pid and start is not None and _proc_start_time(pid) == start:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        proc = self._reapers.pop(sb.pod_uid, None)
        if proc is not None:
            await asyncio.to_thread(proc.wait)
        for pid, start in ((sb.reaper_pid, sb.reaper_start_time),):
            for _ in range(500):
                if not pid or _proc_start_time(pid) != start:
                    break
                await asyncio.sleep(0.01)

    def _unmount_dir(self, d: Path) -> None:
        mps = mount_points()
        prefix = str(d) + "/"
        # deepest first; then the dir's own self-bind
        for mp in sorted((m for m in mps if m.startswith(prefix)), key=len, reverse=True):
            _unmount_all(mp)
        _unmount_all(str(d))


def _foreign_mount(path: str) -> bool:
    """Whether ``path`` has another filesystem mounted on it than its parent directory's."""
    try:
        return os.stat(path).st_dev != os.stat(os.path.dirname(path.rstrip("/")) or "/").st_dev
    except OSError:
        return False

