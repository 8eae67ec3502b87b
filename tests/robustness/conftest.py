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


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the whole robustness session: no process (peapod, agent, conmon, etcd), mount, test bridge or
    pod cgroup of this session is left on the machine (leftovers are bugs of peapod's cleanup or of a test)."""
    base = tmp_path_factory.getbasetemp()
    yield
    left = {
        "processes": processes_mentioning(str(base)),
        "mounts": mounts_under(base),
        "bridges": sorted(b for b in STARTED_BRIDGES if Path(f"/sys/class/net/{b}").exists()),
        "cgroups": [c for d in sorted(STARTED_NODE_DIRS) for c in cgroups_of(d)],
    }
    assert {k: v for k, v in left.items() if v} == {}, "left behind by the robustness tests"
