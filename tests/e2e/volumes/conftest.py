"""Real mounts (root): every test gets a pod dir and a leak check; leftovers are unmounted."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from peapod.node.volumes.mounter import LinuxMounter


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "e2e/volumes" not in str(item.fspath):
            continue
        item.add_marker(pytest.mark.e2e)
        if os.geteuid() != 0:
            item.add_marker(pytest.mark.skip(reason="needs root"))


def proc_mounts_under(root: Path) -> list[str]:
    r = os.path.realpath(root)
    out = []
    for line in Path("/proc/mounts").read_text().splitlines():
        mp = line.split()[1].replace("\\040", " ")
        if mp == r or mp.startswith(r + "/"):
            out.append(line)
    return out


@pytest.fixture
def mounter() -> LinuxMounter:
    return LinuxMounter()


@pytest.fixture
def pod_dir(tmp_path: Path, mounter: LinuxMounter) -> Iterator[Path]:
    d = tmp_path / "pods" / "uid-1"
    d.mkdir(parents=True)
    yield d
    leaked = proc_mounts_under(tmp_path)
    for _ in range(8):
        left = mounter.mounts_under(tmp_path)
        if not left:
            break
        for mp in left:
            mounter.unmount(mp)
    assert not leaked, f"mounts left behind: {leaked}"
