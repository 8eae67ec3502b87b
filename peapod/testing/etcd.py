"""A real etcd cluster of N members on loopback, for tests and ``peapod cluster up``.

Each member is a separate ``etcd`` process with its own data dir under ``base_dir`` and free loopback
ports for client and peer traffic. Processes are started in their own session and stopped by PID only.

    async with EtcdCluster(tmp_path, members=3) as cluster:
        store = await EtcdStore.open(cluster.endpoints)
        cluster.kill(0)          # SIGKILL member 0; quorum holds with 2 of 3
        await cluster.restart(0) # same data dir: the member rejoins and catches up
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import aiohttp

ETCD_BINARY = "/usr/bin/etcd"


class EtcdClusterError(RuntimeError):
    pass


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def _free_ports(count: int) -> list[int]:
    """Distinct ports the kernel reports free right now (held open together so they differ)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class EtcdCluster:
    """Start, kill, restart and stop an N-member etcd cluster on loopback."""

    def __init__(
        self,
        base_dir: str | os.PathLike[str],
        *,
        members: int = 3,
        binary: str = ETCD_BINARY,
        start_timeout: float = 90.0,
        heartbeat_ms: int = 100,
        election_ms: int = 1000,
        keep_data: bool = False,
    ) -> None:
        if members < 1:
            raise ValueError("members must be >= 1")
        self.base_dir = Path(base_dir)
        self.binary = binary
        self.start_timeout = start_timeout
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.keep_data = keep_data
        self.token = f"peapod-{uuid.uuid4().hex[:12]}"
        self._count = members
        self.members: list[EtcdMember] = []

    @staticmethod
    def available(binary: str = ETCD_BINARY) -> bool:
        return os.access(binary, os.X_OK)

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    async def __aenter__(self) -> EtcdCluster:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, attempts: int = 3) -> None:
        """Start every member and wait until all report healthy.

        Free ports are picked just before exec, so another process may grab one first; a member that
        exits during startup makes the whole attempt retry with fresh ports.
        """
        if not self.available(self.binary):
            raise EtcdClusterError(f"etcd binary not found: {self.binary}")
        last: Exception | None = None
        for _ in range(attempts):
            self._plan_members()
            try:
                for m in self.members:
                    self._spawn(m, new_cluster=True)
                await self.wait_healthy()
                return
            except EtcdClusterError as e:
                last = e
                await self.stop()
        raise EtcdClusterError(f"etcd cluster did not start: {last}")

    def _plan_members(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        ports = _free_ports(2 * self._count)
        self.token = f"peapod-{uuid.uuid4().hex[:12]}"
        self.members = [
            EtcdMember(
                name=f"m{i}",
                client_port=ports[2 * i],
                peer_port=ports[2 * i + 1],
                data_dir=self.base_dir / f"m{i}.etcd",
                log_path=self.base_dir / f"m{i}.log",
            )
            for i in range(self._count)
        ]
        for m in self.members:
            shutil.rmtree(m.data_dir, ignore_errors=True)

    def _command(self, m: EtcdMember, new_cluster: bool) -> list[str]:
        initial = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        return [
            self.binary,
            "--name", m.name,
            "--data-dir", str(m.data_dir),
            "--listen-client-urls", m.client_url,
            "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", m.peer_url,
            "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", initial,
            "--initial-cluster-token", self.token,
            "--initial-cluster-state", "new" if new_cluster else "existing",
            "--heartbeat-interval", str(self.heartbeat_ms),
            "--election-timeout", str(self.election_ms),
            "--logger", "zap",
            "--log-outputs", "stderr",
        ]  # fmt: skip

    def _spawn(self, m: EtcdMember, *, new_cluster: bool) -> None:
        with open(m.log_path, "ab") as log:
            m.process = subprocess.Popen(
                self._command(m, new_cluster),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a ^C in the terminal is not delivered to etcd directly
            )

    async def wait_healthy(self, indices: list[int] | None = None, timeout: float | None = None) -> None:
        """Wait until the given members (default: all) answer ``/health`` with a leader."""
        targets = [self.members[i] for i in (indices if indices is not None else range(len(self.members)))]
        deadline = time.monotonic() + (timeout if timeout is not None else self.start_timeout)
        pending = list(targets)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
            while pending:
                for m in list(pending):
                    if m.process is not None and m.process.poll() is not None:
                        raise EtcdClusterError(
                            f"member {m.name} exited with {m.process.returncode}: {self._tail(m)}"
                        )
                    if await self._healthy(session, m):
                        pending.remove(m)
                if not pending:
                    return
                if time.monotonic() > deadline:
                    names = ", ".join(m.name for m in pending)
                    raise EtcdClusterError(f"members not healthy in time: {names}")
                await asyncio.sleep(0.1)

    @staticmethod
    async def _healthy(session: aiohttp.ClientSession, m: EtcdMember) -> bool:
        try:
            async with session.get(f"{m.client_url}/health") as resp:
                body = await resp.json(content_type=None)
                return resp.status == 200 and body.get("health") in ("true", True)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False

    @staticmethod
    def _tail(m: EtcdMember, lines: int = 5) -> str:
        try:
            return " | ".join(m.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self, index: int) -> None:
        """SIGKILL one member (by PID) and reap it."""
        m = self.members[index]
        if m.process is None:
            return
        if m.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(m.process.pid, signal.SIGKILL)
            m.process.wait()
        m.process = None

    async def restart(self, index: int, *, wait: bool = True) -> None:
        """Start a stopped member again on its old data dir and ports; it rejoins the cluster."""
        m = self.members[index]
        if m.running:
            raise EtcdClusterError(f"member {m.name} is running")
        self._spawn(m, new_cluster=False)
        if wait:
            await self.wait_healthy([index])

    async def stop(self, timeout: float = 10.0) -> None:
        """Terminate every member by PID (SIGKILL after ``timeout``) and remove the data dirs.

        Members get SIGTERM one at a time, the current leader first: a leader hands leadership to a
        follower on SIGTERM, which stalls for seconds if that follower is already gone.
        """
        while running := [m for m in self.members if m.running]:
            leader = await self._leader(running)
            await self._terminate(leader or running[0], timeout)
        for m in self.members:
            await self._terminate(m, timeout)
        if not self.keep_data:
            for m in self.members:
                shutil.rmtree(m.data_dir, ignore_errors=True)
                with contextlib.suppress(FileNotFoundError):
                    m.log_path.unlink()

    @staticmethod
    async def _leader(running: list[EtcdMember]) -> EtcdMember | None:
        """The running member that says it is the leader, if any answers."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            for m in running:
                try:
                    async with session.post(f"{m.client_url}/v3/maintenance/status", json={}) as resp:
                        body = await resp.json(content_type=None)
                except (aiohttp.ClientError, TimeoutError, ValueError):
                    continue
                if body.get("leader") and body.get("leader") == body.get("header", {}).get("member_id"):
                    return m
        return None

    async def _terminate(self, m: EtcdMember, timeout: float) -> None:
        if m.process is None:
            return
        if m.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(m.process.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(m.process.wait, timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(m.process.pid, signal.SIGKILL)
                await asyncio.to_thread(m.process.wait)
        m.process = None
