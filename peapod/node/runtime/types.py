"""Data types and the ContainerRuntime protocol shared by the real runtime and the fake."""

from __future__ import annotations

import asyncio
import enum
import fcntl
import os
import signal as _signal
import struct
import termios
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

# Namespace modes for ContainerConfig.namespaces: anything else is a path to join.
NEW = "new"
HOST = "host"

DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)

# Kernel caps known to runc 1.1 / libcap on Debian 12 (used for privileged and "ALL").
ALL_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)

# The machine's hard RLIMIT_NOFILE; runc cannot raise it without CAP_SYS_RESOURCE.
MAX_NOFILE = 20000


@dataclass(frozen=True)
class Mount:
    """One mount in the container. ``type`` "bind" binds ``source``; others mount a filesystem."""

    destination: str
    source: str = ""
    type: str = "bind"
    read_only: bool = False
    options: tuple[str, ...] = ()
    propagation: str | None = None  # e.g. "rprivate", "rslave", "rshared" (binds only)


@dataclass(frozen=True)
class Device:
    path: str
    type: str  # "c" | "b"
    major: int
    minor: int
    file_mode: int = 0o666
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class Resources:
    cpu_shares: int | None = None
    cpu_quota: int | None = None  # microseconds per period; None = unlimited
    cpu_period: int | None = None
    memory_limit: int | None = None  # bytes
    memory_swap: int | None = None  # bytes incl. memory; None = same as limit (no swap)
    pids_limit: int | None = None


@dataclass(frozen=True)
class Namespaces:
    """Each entry is NEW (private to this container), HOST (the node's), or a path to join."""

    network: str = NEW
    ipc: str = NEW
    uts: str = NEW
    pid: str = NEW


@dataclass(frozen=True)
class ContainerConfig:
    """Everything the OCI bundle generator needs; built by the agent from pod spec + image config."""

    args: Sequence[str]
    rootfs: str
    env: Sequence[str] = ()  # "KEY=value"
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: Sequence[int] = ()
    mounts: Sequence[Mount] = ()
    namespaces: Namespaces = field(default_factory=Namespaces)
    hostname: str | None = None
    cgroups_path: str | None = None
    resources: Resources = field(default_factory=Resources)
    cap_add: Sequence[str] = ()
    cap_drop: Sequence[str] = ()
    privileged: bool = False
    no_new_privileges: bool = False
    readonly_rootfs: bool = False
    masked_paths: Sequence[str] | None = None  # None = containerd's defaults
    readonly_paths: Sequence[str] | None = None
    seccomp: str | Mapping | None = "RuntimeDefault"  # "RuntimeDefault" | "Unconfined" | None | profile
    rlimit_nofile: int | None = None  # soft = hard; clamped to MAX_NOFILE
    devices: Sequence[Device] = ()  # extra device nodes (privileged: the host's)
    shm_path: str | None = None  # host dir bound at /dev/shm (the pod's shared tmpfs)
    shm_size: int = 64 * 1024 * 1024  # private /dev/shm when shm_path is None
    hosts_path: str | None = None
    resolv_conf_path: str | None = None
    hostname_path: str | None = None
    termination_log_path: str | None = None  # host file
    termination_message_path: str = "/dev/termination-log"
    terminal: bool = False
    stdin: bool = False
    sysctls: Mapping[str, str] = field(default_factory=dict)
    oom_score_adj: int | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    umask: int | None = None


class ContainerStatus(enum.StrEnum):
    """created -> running -> stopped; created -> stopped if killed before start."""

    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"
    UNKNOWN = "unknown"


@dataclass
class ContainerState:
    id: str
    status: ContainerStatus
    pid: int = 0
    exit_code: int | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    oom_killed: bool = False
    bundle: str = ""
    log_path: str = ""
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def reason(self) -> str | None:
        """Kubernetes' terminated reason: OOMKilled, Completed or Error."""
        if self.status != ContainerStatus.STOPPED:
            return None
        if self.oom_killed:
            return "OOMKilled"
        return "Completed" if self.exit_code == 0 else "Error"


class ContainerRuntimeError(Exception):
    """A runtime operation failed (message carries runc/conmon stderr)."""


class ContainerNotFound(ContainerRuntimeError):
    pass


@dataclass
class ExecProcess:
    """A running exec session: a subprocess with pipes, or with a pty whose master is ``master_fd``."""

    process: asyncio.subprocess.Process
    master_fd: int | None = None

    async def wait(self) -> int:
        return await self.process.wait()

    def resize(self, rows: int, cols: int) -> None:
        if self.master_fd is None:
            return
        fcntl.ioctl(self.master_fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        if self.process.returncode is None:
            os.kill(self.process.pid, _signal.SIGWINCH)

    def close(self) -> None:
        if self.master_fd is not None:
            os.close(self.master_fd)
            self.master_fd = None


class ContainerRuntime(Protocol):
    async def create(self, container_id: str, bundle_dir: str, log_path: str) -> None:
        """Create the container (not started) under a monitor that outlives the agent."""

    async def start(self, container_id: str) -> None: ...

    async def kill(self, container_id: str, signal: int) -> None: ...

    async def stop(self, container_id: str, timeout: float, signal: int = _signal.SIGTERM) -> None:
        """Send ``signal``, wait ``timeout`` seconds, then SIGKILL; returns once stopped."""

    async def remove(self, container_id: str) -> None:
        """Remove a stopped container and its records; idempotent; kills a running one."""

    async def state(self, container_id: str) -> ContainerState:
        """Raises ContainerNotFound."""

    async def list(self) -> list[ContainerState]: ...

    async def exec(
        self,
        container_id: str,
        argv: Sequence[str],
        *,
        tty: bool = False,
        stdin: bool = False,
        env: Sequence[str] = (),
        cwd: str | None = None,
    ) -> ExecProcess: ...
