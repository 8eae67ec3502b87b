"""Robustness suite fixtures: a loopback registry with busybox under two tags, the run's seed, and the
``long`` marker: long runs are skipped unless ``PEAPOD_ROBUSTNESS_LONG=1`` (``make robustness`` sets it), so
``pytest tests`` (and ``-m "not long"``) is the short CI mode.

Knobs: ``PEAPOD_ROBUSTNESS_SEED`` replays a run; ``PEAPOD_ROBUSTNESS_DURATION`` sets the seconds of traffic
per run (short runs 8-10 s by default, long ones 120 s); ``PEAPOD_ROBUSTNESS_LOG_LEVEL=debug`` makes the split
node's server and agent log more. Logs, histories and (after anomalies) a dump of the API state land in
``PEAPOD_ROBUSTNESS_OUT`` (default /tmp/peapod-robustness).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from peapod.testing.cluster import STARTED_BRIDGES
from peapod.testing.images import busybox_image, push_image
from peapod.testing.registry import LoopbackRegistry
from peapod.testing.robustness.run import choose_seed
from peapod.testing.splitnode import STARTED_NODE_DIRS, cgroups_of, mounts_under, processes_mentioning

IS_ROOT = os.geteuid() == 0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "long: a long robustness run (make robustness), not in the CI short mode")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long runs only when asked for (``PEAPOD_ROBUSTNESS_LONG=1``, as ``make robustness`` does), so a plain
    ``pytest tests`` stays in the short mode."""
    if os.environ.get("PEAPOD_ROBUSTNESS_LONG") == "1":
        return
    skip = pytest.mark.skip(reason="long robustness run: PEAPOD_ROBUSTNESS_LONG=1 (make robustness)")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)


def duration(default: float) -> float:
    return float(os.environ.get("PEAPOD_ROBUSTNESS_DURATION", default))


@pytest.fixture(scope="session")
def images() -> Iterator[list[str]]:
    """busybox:1 and busybox:2 (the same image: a rollout between them changes the template only)."""
    if not IS_ROOT or subprocess.run(["which", "runc"], capture_output=True).returncode != 0:
        pytest.skip("needs root and runc")
    reg = LoopbackRegistry().start()
    try:
        img = busybox_image()
        refs = [reg.ref("busybox", "1"), reg.ref("busybox", "2")]
        for ref in refs:
            asyncio.run(push_image(ref, img))
        yield refs
    finally:
        reg.stop()


@pytest.fixture
def seed() -> int:
    return choose_seed()


@pytest.fixture
def out_dir() -> Path:
    """Where runs leave their history and peapod's logs (``PEAPOD_ROBUSTNESS_OUT``), kept after the test."""
    d = Path(os.environ.get("PEAPOD_ROBUSTNESS_OUT", "/tmp/peapod-robustness"))
    d.mkdir(parents=True, exist_ok=True)
    return d


_TEST_DIRS: list[Path] = []


@pytest.fixture(autouse=True)
def _remember_test_dir(tmp_path: Path) -> Path:
    """Every robustness test's own temporary directory, checked by ``nothing_left_behind``."""
    _TEST_DIRS.append(tmp_path)
    return tmp_path


@pytest.fixture(scope="package", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """After the robustness tests: no process (peapod, agent, conmon, etcd), mount, test bridge or pod
    cgroup they started is left on the machine (leftovers are bugs of peapod's cleanup or of a test).
    Only what these tests made counts: other suites' session fixtures may still run at this point."""
    bridges_before = set(STARTED_BRIDGES)
    dirs_before = set(STARTED_NODE_DIRS)
    yield
    left = {
        "processes": [p for d in _TEST_DIRS for p in processes_mentioning(str(d))],
        "mounts": [m for d in _TEST_DIRS for m in mounts_under(d)],
        "bridges": sorted(b for b in STARTED_BRIDGES - bridges_before if Path(f"/sys/class/net/{b}").exists()),
        "cgroups": [c for d in sorted(STARTED_NODE_DIRS - dirs_before) for c in cgroups_of(d)],
    }
    assert {k: v for k, v in left.items() if v} == {}, "left behind by the robustness tests"
