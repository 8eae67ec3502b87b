"""End-to-end fixtures: a real `peapod up` process in a temporary directory."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from peapod.testing.cluster import STARTED_BRIDGES, PeapodCluster
from peapod.testing.images import busybox_image, push_image
from peapod.testing.pytest_plugin import (  # the plugin's fixtures (also active through its pytest11 entry point)
    PeapodLauncher,
    PeapodSettings,
    peapod_cluster,
    peapod_launcher,
    peapod_namespace,
    settings_from_config,
)
from peapod.testing.registry import LoopbackRegistry

__all__ = ["peapod_cluster", "peapod_launcher", "peapod_namespace", "write"]

_counter = itertools.count()
LOOPBACK = ("127.0.0.1", "localhost")


@pytest.fixture(scope="session")
def peapod_settings(pytestconfig: pytest.Config) -> PeapodSettings:
    """The plugin's settings, except that the project's tests pull only from loopback registries
    (unless --peapod-allowed-registry says otherwise): no test ever contacts a registry off the machine."""
    s = settings_from_config(pytestconfig)
    return s if s.allowed_registries else replace(s, allowed_registries=LOOPBACK)


@pytest.fixture(scope="module")
def cluster(peapod_launcher: PeapodLauncher) -> Iterator[PeapodCluster]:
    """The control plane alone (`peapod server`): API behaviour, no pods are run."""
    with peapod_launcher.start("server") as c:
        yield c


@pytest.fixture(scope="module")
def node_cluster(peapod_launcher: PeapodLauncher) -> Iterator[PeapodCluster]:
    """A single-node cluster (`peapod up`) of this module's own that runs pods for real (root)."""
    with peapod_launcher.start("up") as c:
        yield c


@pytest.fixture(scope="module")
def registry() -> Iterator[LoopbackRegistry]:
    """A loopback docker-registry holding the busybox image the tests build (busybox:1)."""
    import asyncio

    reg = LoopbackRegistry().start()
    try:
        asyncio.run(push_image(reg.ref("busybox", "1"), busybox_image()))
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def namespace(cluster: PeapodCluster) -> Iterator[str]:
    """A fresh namespace per test, so tests sharing a cluster do not see each other."""
    name = f"t{os.getpid() % 10000}-{next(_counter)}"
    cluster.kubectl("create", "namespace", name, check=True)
    yield name


def write(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.write_text(text)
    return p


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the whole end-to-end session: no mount, conmon, test bridge or peapod cgroup of this
    session is left on the machine (leftovers are bugs of peapod's cleanup or of a test)."""
    import subprocess

    base = str(tmp_path_factory.getbasetemp())
    yield
    mounts = [ln.split()[1] for ln in Path("/proc/mounts").read_text().splitlines() if base in ln]
    conmons = subprocess.run(["pgrep", "-f", f"conmon.*{base}"], capture_output=True, text=True).stdout.split()
    bridges = sorted(_test_bridges() & STARTED_BRIDGES)  # other test runs' clusters are not ours
    assert (mounts, conmons, bridges) == ([], [], []), "left behind by the end-to-end tests"


def _test_bridges() -> set[str]:
    import subprocess

    out = subprocess.run(["ip", "-o", "link", "show", "type", "bridge"], capture_output=True, text=True).stdout
    return {ln.split(":")[1].strip() for ln in out.splitlines() if ln.split(":")[1].strip().startswith("ppt")}
