"""Faults injected into a real ``peapod up``, or a split node (``peapod server`` + ``peapod agent``,
:class:`~peapod.testing.splitnode.SplitNode`), while traffic runs. Each one recovers before it returns.

- ``kill-apiserver``: SIGKILL of the server process (with ``peapod up``: API server, controllers and agent
  at once; on a split node the agent keeps running and must find the server again), then a restart on
  the same data dir;
- ``kill-agent``: SIGKILL of the split node's ``peapod agent`` only (the API server keeps serving), then a
  restart on the same data dir: the new agent re-adopts the running pods;
- ``kill-conmon`` / ``kill-container``: SIGKILL of a running container's conmon or main process;
- ``kill-etcd``: SIGKILL of one etcd member, restarted a few seconds later (needs ``--store etcd://``);
- ``disk-full``: the SQLite file lives on a small tmpfs; fill it, hold, free it;
- ``slow-store``: restart peapod with ``PEAPOD_FAULT_STORE_DELAY_MS`` (see :mod:`peapod.store.faults`),
  hold, restart without.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import random
import signal
import sqlite3
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from peapod.store.faults import DELAY_ENV
from peapod.testing.cluster import PeapodCluster
from peapod.testing.etcd import EtcdCluster
from peapod.testing.robustness.history import FaultRecord, History
from peapod.testing.robustness.node import container_pids, containers
from peapod.testing.splitnode import SplitNode

FILLER = "filler"


@dataclass
class Tmpfs:
    """A size-limited tmpfs at ``path`` (root only); ``fill()`` takes every free byte, ``free()`` gives it back."""

    path: Path
    size: str = "64m"
    mounted: bool = False

    def mount(self) -> Tmpfs:
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0700", "tmpfs", str(self.path)],
                       check=True, capture_output=True)
        self.mounted = True
        return self

    def umount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=True, capture_output=True)
            self.mounted = False

    def fill(self) -> int:
        """Write a filler file until ENOSPC; the bytes written."""
        written = 0
        fd = os.open(self.path / FILLER, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (1 << 20, 1 << 16, 4096, 512):
                block = b"\0" * chunk
                while True:
                    try:
                        written += os.write(fd, block)
                    except OSError as e:
                        if e.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.path / FILLER).unlink()


@contextlib.contextmanager
def _env(name: str, value: str | None) -> Iterator[None]:
    """Set an environment variable for children started inside the block (PeapodCluster inherits it)."""
    old = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


class Injector:
    """Runs faults on ``cluster`` (and ``etcd`` / ``tmpfs`` / the split node's agent when given), recording
    each in the history. ``node_dir``: the data dir whose ``node/`` runs the pods (default: the cluster's)."""

    def __init__(self, cluster: PeapodCluster, history: History, rng: random.Random, *,
                 etcd: EtcdCluster | None = None, tmpfs: Tmpfs | None = None, db_path: Path | None = None,
                 agent: SplitNode | None = None, node_dir: Path | None = None,
                 hold: tuple[float, float] = (2.0, 5.0), say: Callable[[str], None] = print) -> None:
        self.cluster = cluster
        self.agent = agent
        self.node_dir = node_dir or (agent.agent_dir if agent is not None else cluster.data_dir)
        self.history = history
        self.rng = rng
        self.etcd = etcd
        self.tmpfs = tmpfs
        self.db_path = db_path
        self.hold = hold
        self.say = say
        self.first_round = asyncio.Event()  # every kind asked for has happened once
        self.full_windows: list[tuple[float, float]] = []  # (disk full, space freed) monotonic times
        self.faults: dict[str, Callable[[], Awaitable[str]]] = {
            "kill-apiserver": self.kill_apiserver, "kill-agent": self.kill_agent, "kill-conmon": self.kill_conmon,
            "kill-container": self.kill_container, "kill-etcd": self.kill_etcd,
            "disk-full": self.disk_full, "slow-store": self.slow_store,
        }

    async def run(self, kinds: list[str], stop: asyncio.Event, gap: tuple[float, float] = (1.0, 4.0)) -> None:
        """Every kind once in a random order, then random ones until ``stop``."""
        unknown = set(kinds) - set(self.faults)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {sorted(self.faults)}")
        first = kinds[:]
        self.rng.shuffle(first)
        if not first:
            self.first_round.set()
        while first or (kinds and not stop.is_set()):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.rng.uniform(*gap))
            if not first and stop.is_set():
                break
            kind = first.pop(0) if first else self.rng.choice(kinds)
            await self.inject(kind)
            if not first:
                self.first_round.set()

    async def inject(self, kind: str) -> FaultRecord:
        start = time.monotonic()
        self.say(f"fault: {kind} ...")
        detail = await self.faults[kind]()
        rec = FaultRecord(kind, start, time.monotonic(), detail)
        self.history.faults.append(rec)
        self.say(f"fault: {kind} done in {rec.end - rec.start:.1f}s: {detail}")
        return rec

    async def _hold(self) -> float:
        t = self.rng.uniform(*self.hold)
        await asyncio.sleep(t)
        return t

    async def _restart(self, env: str | None = None) -> None:
        with _env(DELAY_ENV, env):
            await asyncio.to_thread(self.cluster.start, 90.0)

    async def kill_apiserver(self) -> str:
        pid = self.cluster.proc.pid if self.cluster.proc else None
        self.cluster.kill()
        await asyncio.sleep(self.rng.uniform(0, 1))
        await self._restart()
        return f"SIGKILL peapod pid {pid}, restarted as {self.cluster.proc.pid if self.cluster.proc else None}"

    async def kill_agent(self) -> str:
        if self.agent is None:
            raise RuntimeError("kill-agent needs a split node (peapod server + peapod agent)")
        running = len(self._running())
        pid = self.agent.kill_agent()
        await asyncio.sleep(self.rng.uniform(0, 1))
        new = await asyncio.to_thread(self.agent.restart_agent, 90.0)
        return f"SIGKILL peapod agent pid {pid} ({running} containers running), restarted as {new}"

    def _running(self) -> list[str]:
        return [c.id for c in containers(self.node_dir) if c.status == "running"]

    async def _kill_one(self, which: int, patience: float = 15.0) -> str:
        """SIGKILL the conmon (0) or main process (1) of a random running container (waiting for one)."""
        deadline = time.monotonic() + patience
        while True:
            ids = self._running()
            self.rng.shuffle(ids)
            for cid in ids:
                pid = container_pids(self.node_dir, cid)[which]
                if pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                        return f"SIGKILL pid {pid} of {cid}"
            if time.monotonic() > deadline:
                return "no running container to kill"
            await asyncio.sleep(0.5)

    async def kill_conmon(self) -> str:
        return await self._kill_one(0)

    async def kill_container(self) -> str:
        return await self._kill_one(1)

    async def kill_etcd(self) -> str:
        if self.etcd is None:
            raise RuntimeError("kill-etcd needs an etcd cluster")
        index = self.rng.randrange(len(self.etcd.members))
        self.etcd.kill(index)
        held = await self._hold()
        await self.etcd.restart(index)
        return f"etcd member {index} down for {held:.1f}s"

    async def disk_full(self) -> str:
        if self.tmpfs is None:
            raise RuntimeError("disk-full needs the store on a tmpfs")
        if self.db_path is not None:
            # SQLite reuses its WAL file's space: give it back so the next commits must allocate.
            with contextlib.suppress(sqlite3.Error):
                conn = sqlite3.connect(str(self.db_path), timeout=2)
                try:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    conn.close()
        filled = await asyncio.to_thread(self.tmpfs.fill)
        full = time.monotonic()
        try:
            held = await self._hold()
        finally:
            self.tmpfs.free()
            self.full_windows.append((full, time.monotonic()))
        return f"{self.tmpfs.path} full ({filled >> 10} KiB filler) for {held:.1f}s"

    async def slow_store(self, delay: str = "5-60") -> str:
        self.cluster.kill()
        await self._restart(delay)
        held = await self._hold()
        self.cluster.kill()
        await self._restart()
        return f"store delayed {delay} ms for {held:.1f}s (two SIGKILL restarts)"
