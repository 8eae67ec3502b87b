"""Robustness suite fixtures: a loopback registry with busybox under two tags, the run's seed, and the
``long`` marker: long runs are skipped unless ``PEAPOD_ROBUSTNESS_LONG=1`` (``make robustness`` sets it), so
``pytest tests`` (and ``-m "not long"``) is the short CI mode.

Knobs: ``PEAPOD_ROBUSTNESS_SEED`` replays a run; ``PEAPOD_ROBUSTNESS_DURATION`` sets the seconds of traffic
per run (short runs 10-15 s by default, long ones 120 s).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from peapod.testing.images import busybox_image, push_image
from peapod.testing.registry import LoopbackRegistry
from peapod.testing.robustness.run import choose_seed

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
    """Where runs leave their history and peapod's log (``PEAPOD_ROBUSTNESS_OUT``), kept after the test."""
    d = Path(os.environ.get("PEAPOD_ROBUSTNESS_OUT", "/tmp/peapod-robustness"))
    d.mkdir(parents=True, exist_ok=True)
    return d
