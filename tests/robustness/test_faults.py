"""Randomized traffic against a real cluster while faults are injected; the history must check clean.

The SQLite runs use a split node (``peapod server`` + ``peapod agent``): SIGKILL of the agent leaves the
API server serving traffic and watchers, SIGKILL of the server leaves the agent running. The etcd runs
use ``peapod up``, where one SIGKILL takes the API server and the agent down together.
The short runs are the CI mode; the ``long`` ones (``make robustness``) run longer with every fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from peapod.testing.cluster import PeapodCluster
from peapod.testing.etcd import EtcdCluster
from peapod.testing.robustness.faults import Tmpfs
from peapod.testing.robustness.node import conmons, containers
from peapod.testing.robustness.run import RunConfig, run
from peapod.testing.splitnode import STARTED_NODE_DIRS, SplitNode
from tests.robustness.conftest import duration

LOG_LEVEL_ENV = "PEAPOD_ROBUSTNESS_LOG_LEVEL"  # e.g. debug: the split node's server and agent log more
SQLITE_FAULTS = ["kill-apiserver", "kill-agent", "kill-conmon", "kill-container", "disk-full", "slow-store"]


@contextlib.contextmanager
def peapod_up(data_dir: Path, *args: str, log_to: Path | None = None) -> Iterator[PeapodCluster]:
    cluster = PeapodCluster(data_dir, extra_args=list(args))
    STARTED_NODE_DIRS.add(data_dir.resolve() / "node")
    cluster.start(timeout=90)
    try:
        yield cluster
    finally:
        if cluster.stop() not in (0, None):
            print(cluster.log_tail())
        if log_to is not None and cluster.log_path is not None:
            shutil.copy(cluster.log_path, log_to)
    left = ([c.id for c in containers(data_dir)], list(conmons(data_dir)),
            [ln.split()[1] for ln in Path("/proc/mounts").read_text().splitlines() if str(data_dir) in ln])
    assert left == ([], [], []), f"left behind by peapod up: {left}"


@contextlib.contextmanager
def split_node(base: Path, *server_args: str, log_to: Path | None = None, seed: int = 0) -> Iterator[SplitNode]:
    """A started split node; stopped afterwards (its pods with it), logs copied to ``log_to``, and
    nothing of it may be left on the machine."""
    level = os.environ.get(LOG_LEVEL_ENV)
    more = ("--log-level", level) if level else ()
    node = SplitNode(base, server_args=(*server_args, *more), agent_args=more).start()
    left: list[str] = []
    try:
        yield node
    finally:
        left = node.stop()
        if log_to is not None:
            for src, name in ((node.server.log_path, "server"), (node.agent_log, "agent")):
                if src is not None and src.exists():
                    shutil.copy(src, log_to / f"{name}-{seed or node.bridge}.log")
    assert left == [], f"containers the stopping agent left running: {left}"
    assert node.leftovers() == {}, f"left behind by the split node: {node.leftovers()}"


@contextlib.contextmanager
def store_on_tmpfs(tmp_path: Path, size: str = "64m") -> Iterator[Tmpfs]:
    fs = Tmpfs(tmp_path / "store", size=size).mount()
    try:
        yield fs
    finally:
        fs.umount()


def sqlite_run(tmp_path: Path, out: Path, images: list[str], seed: int, seconds: float, faults: list[str]) -> None:
    with store_on_tmpfs(tmp_path) as fs:
        db = fs.path / "state.db"
        with split_node(tmp_path / "split", "--store", f"sqlite://{db}", log_to=out, seed=seed) as node:
            cfg = RunConfig(seed=seed, duration=seconds, faults=faults)
            report = asyncio.run(run(node.server, cfg, images=images, tmpfs=fs, db_path=db, out_dir=out, agent=node))
    assert report.ops.total() > 50, "too little traffic to prove anything"
    assert len(report.faults) >= len(faults)
    assert report.anomalies == [], report.summary()


def etcd_run(tmp_path: Path, out: Path, images: list[str], seed: int, seconds: float, faults: list[str]) -> None:
    if not EtcdCluster.available():
        pytest.skip("etcd is not installed")
    etcd = EtcdCluster(tmp_path / "etcd")
    asyncio.run(etcd.start())
    try:
        spec = "etcd://" + ",".join(e.removeprefix("http://") for e in etcd.endpoints)
        with peapod_up(tmp_path / "data", "--store", spec, log_to=out / f"peapod-{seed}.log") as cluster:
            report = asyncio.run(run(cluster, RunConfig(seed=seed, duration=seconds, faults=faults),
                                     images=images, etcd=etcd, out_dir=out))
    finally:
        asyncio.run(etcd.stop())
    assert report.ops.total() > 50, "too little traffic to prove anything"
    assert report.anomalies == [], report.summary()


@pytest.mark.timeout(240)
def test_split_node_on_sqlite_under_kills_full_disk_and_slow_store(
    tmp_path: Path, out_dir: Path, images: list[str], seed: int,
) -> None:
    sqlite_run(tmp_path, out_dir, images, seed, duration(10), SQLITE_FAULTS)


@pytest.mark.timeout(180)
def test_peapod_up_on_etcd_under_member_and_process_kills(
    tmp_path: Path, out_dir: Path, images: list[str], seed: int,
) -> None:
    etcd_run(tmp_path, out_dir, images, seed, duration(8), ["kill-etcd", "kill-apiserver"])


@pytest.mark.long
@pytest.mark.timeout(1800)
def test_long_sqlite(tmp_path: Path, out_dir: Path, images: list[str], seed: int) -> None:
    sqlite_run(tmp_path, out_dir, images, seed, duration(120), SQLITE_FAULTS)


@pytest.mark.long
@pytest.mark.timeout(1800)
def test_long_etcd(tmp_path: Path, out_dir: Path, images: list[str], seed: int) -> None:
    faults = ["kill-etcd", "kill-apiserver", "kill-container", "slow-store"]
    etcd_run(tmp_path, out_dir, images, seed, duration(120), faults)
