"""Run one RUN step in a real container: conmon + runc over the step's overlay rootfs.

The container gets its own network namespace with only loopback (``network="none"``, the default)
or the host's (``network="host"``), the runtime's default capabilities and seccomp profile, and a
cgroup under ``peapod-build/``. Its output is streamed from the CRI log file conmon writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from peapod.node.runtime.bundle import build_spec, write_bundle
from peapod.node.runtime.cgroups import CgroupManager
from peapod.node.runtime.logs import parse_line
from peapod.node.runtime.runc_runtime import RuncRuntime
from peapod.node.runtime.types import HOST, NEW, ContainerConfig, ContainerRuntimeError, Namespaces

from .errors import BuildError

CGROUP_PARENT = "peapod-build"
HOSTNAME = "peapod-build"
# paths runc creates in the rootfs when they are missing (mount points): not part of a step's result
MOUNT_POINTS = ("proc", "sys", "dev", "etc/hosts", "etc/resolv.conf", "etc")


@dataclass(frozen=True)
class RunSpec:
    args: Sequence[str]
    env: Sequence[str] = ()
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: Sequence[int] = ()
    network: str = "none"
    """``none`` (loopback only) or ``host``."""
    annotations: dict[str, str] = field(default_factory=dict)


class StepRunner:
    def __init__(self, state_dir: Path, *, output: Callable[[bytes], None],
                 cgroups: CgroupManager | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.runtime = RuncRuntime(self.state_dir / "runtime")
        self.cgroups = cgroups or CgroupManager(parent=CGROUP_PARENT)
        self.output = output

    async def remove_leftovers(self) -> None:
        """Remove RUN containers an interrupted build left (the caller holds the build lock)."""
        for st in await self.runtime.list():
            with contextlib.suppress(ContainerRuntimeError):
                await self.runtime.remove(st.id)
            with contextlib.suppress(OSError):
                self.cgroups.remove(f"{CGROUP_PARENT}/{st.id}")
        with contextlib.suppress(OSError):
            self.cgroups.remove_parent_if_empty()

    async def run(self, rootfs: Path, spec: RunSpec) -> int:
        """Run ``spec`` in ``rootfs`` (a mounted overlay); returns the exit code."""
        cid = f"build-{uuid.uuid4().hex[:16]}"
        bundle = self.state_dir / "bundles" / cid
        log = self.state_dir / "logs" / f"{cid}.log"
        files = self.state_dir / "files" / cid
        hosts, resolv = _network_files(files, spec.network)
        rel = f"{CGROUP_PARENT}/{cid}"
        cfg = ContainerConfig(
            args=list(spec.args), rootfs=str(rootfs), env=list(spec.env), cwd=spec.cwd or "/",
            uid=spec.uid, gid=spec.gid, additional_gids=list(spec.additional_gids),
            namespaces=Namespaces(network=HOST if spec.network == "host" else NEW, ipc=NEW, uts=NEW, pid=NEW),
            hostname=HOSTNAME, cgroups_path=rel, hosts_path=str(hosts),
            resolv_conf_path=str(resolv) if resolv else None, annotations=spec.annotations,
        )
        write_bundle(bundle, build_spec(cfg))
        created = False
        try:
            try:
                await self.runtime.create(cid, str(bundle), str(log))
                created = True
                await self.runtime.start(cid)
            except ContainerRuntimeError as exc:
                raise BuildError(f"cannot start the RUN container: {exc}") from None
            waiter = asyncio.create_task(self.runtime.wait(cid))
            offset = 0
            pending = b""
            while True:
                done = waiter.done()
                offset, pending = self._drain(log, offset, pending)
                if done:
                    break
                await asyncio.wait({waiter}, timeout=0.1)
            if pending:
                self.output(pending + b"\n")
            state = waiter.result()
            return state.exit_code if state.exit_code is not None else 255
        finally:
            if created:
                with contextlib.suppress(ContainerRuntimeError):
                    await self.runtime.remove(cid)
            with contextlib.suppress(OSError):
                self.cgroups.remove(rel)
                self.cgroups.remove_parent_if_empty()
            for p in (bundle, files):
                shutil.rmtree(p, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                log.unlink()

    def _drain(self, log: Path, offset: int, pending: bytes) -> tuple[int, bytes]:
        """Print the complete log lines written since ``offset``; partial entries are joined."""
        try:
            with open(log, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            return offset, pending
        end = data.rfind(b"\n") + 1
        for raw in data[:end].splitlines():
            entry = parse_line(raw)
            if entry is None:
                continue
            if entry.partial:
                pending += entry.content
            else:
                self.output(pending + entry.content + b"\n")
                pending = b""
        return offset + end, pending


def _network_files(files: Path, network: str) -> tuple[Path, Path | None]:
    """/etc/hosts (and, with the host's network, /etc/resolv.conf) for the RUN container."""
    files.mkdir(parents=True, exist_ok=True)
    hosts = files / "hosts"
    if network == "host":
        shutil.copyfile("/etc/hosts", hosts)
    else:
        hosts.write_text(f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                         f"127.0.1.1\t{HOSTNAME}\n")
    resolv = None
    if network == "host" and os.path.exists("/etc/resolv.conf"):
        resolv = files / "resolv.conf"
        shutil.copyfile("/etc/resolv.conf", resolv)
    return hosts, resolv
