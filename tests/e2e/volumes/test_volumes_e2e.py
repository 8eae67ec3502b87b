"""Volumes with real mounts: tmpfs emptyDir and secret volumes, subPath binds through /proc/self/fd."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from peapod.node.volumes import (
    DownwardValues,
    FakeVolumeSources,
    VolumeError,
    container_mounts,
    emptydir_usage,
    prepare_volumes,
    teardown_volumes,
    update_volumes,
)
from peapod.node.volumes.mounter import LinuxMounter

from .conftest import proc_mounts_under

MI = 1024**2


def pod(volumes: list[dict]) -> dict:
    return {"metadata": {"name": "web", "namespace": "ns", "uid": "uid-1"},
            "spec": {"containers": [{"name": "app", "resources": {"limits": {"memory": "128Mi"}}}],
                     "volumes": volumes}}


def sources() -> FakeVolumeSources:
    return FakeVolumeSources(
        secrets={("ns", "creds"): {"data": {"pass": base64.b64encode(b"s3cret").decode()}}},
        downward=DownwardValues(node_allocatable={"memory": "1Gi"}))


def mount_line(path: Path) -> list[str]:
    lines = [ln.split() for ln in proc_mounts_under(path) if ln.split()[1] == os.path.realpath(path)]
    assert len(lines) == 1, lines
    return lines[0]


async def test_memory_emptydir_is_a_sized_tmpfs(pod_dir: Path, mounter: LinuxMounter) -> None:
    p = pod([{"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
             {"name": "big", "emptyDir": {"medium": "Memory"}}])
    got = await prepare_volumes(p, pod_dir, sources=sources(), mounter=mounter)
    line = mount_line(got["cache"].path)
    assert line[2] == "tmpfs" and "size=8192k" in line[3] and "nosuid" in line[3] and "nodev" in line[3]
    assert "size=131072k" in mount_line(got["big"].path)[3]  # the pod's memory limit, below allocatable
    (got["cache"].path / "blob").write_bytes(b"x" * (2 * MI))
    usage = emptydir_usage(pod_dir)
    assert 2 * MI <= usage["cache"] < 3 * MI
    with pytest.raises(OSError):  # the tmpfs size is a hard limit
        (got["cache"].path / "too-big").write_bytes(b"x" * (7 * MI))
    # idempotent: a second prepare neither remounts nor loses data
    await prepare_volumes(p, pod_dir, sources=sources(), mounter=mounter)
    assert len(proc_mounts_under(pod_dir)) == 2
    assert (got["cache"].path / "blob").stat().st_size == 2 * MI
    teardown_volumes("uid-1", pod_dir, mounter=mounter)
    assert proc_mounts_under(pod_dir) == []
    assert not (pod_dir / "volumes").exists()


async def test_secret_volume_on_tmpfs_and_update(pod_dir: Path, mounter: LinuxMounter) -> None:
    src = sources()
    p = pod([{"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}}])
    got = await prepare_volumes(p, pod_dir, sources=src, mounter=mounter)
    path = got["creds"].path
    assert mount_line(path)[2] == "tmpfs"
    assert (path / "pass").read_text() == "s3cret"
    assert os.statvfs(path).f_blocks * os.statvfs(path).f_frsize == 128 * MI
    src.secrets[("ns", "creds")] = {"data": {"pass": base64.b64encode(b"rotated").decode()}}
    assert await update_volumes(p, pod_dir, sources=src, mounter=mounter) == ["creds"]
    assert (path / "pass").read_text() == "rotated"
    assert len(proc_mounts_under(pod_dir)) == 1
    teardown_volumes("uid-1", pod_dir, mounter=mounter)
    assert proc_mounts_under(pod_dir) == []


async def test_subpath_bind_through_proc_fd(pod_dir: Path, mounter: LinuxMounter, tmp_path: Path) -> None:
    outside = tmp_path / "host-secret"
    outside.mkdir()
    p = pod([{"name": "data", "emptyDir": {}}])
    prepared = await prepare_volumes(p, pod_dir, sources=sources(), mounter=mounter)
    vol = prepared["data"].path
    (vol / "logs" / "web").mkdir(parents=True)
    container = {"name": "app", "volumeMounts": [
        {"name": "data", "mountPath": "/logs", "subPathExpr": "logs/$(POD)"}]}
    [m] = container_mounts(p, container, prepared, env={"POD": "web"}, mounter=mounter)
    target = Path(m.source)
    assert target == pod_dir / "volume-subpaths" / "data" / "app" / "0"
    assert mounter.is_mountpoint(target)
    (target / "written-through-bind").write_text("x")
    assert (vol / "logs" / "web" / "written-through-bind").read_text() == "x"
    # the bind holds the checked inode: swapping the directory for a symlink afterwards changes nothing
    os.rename(vol / "logs" / "web", vol / "logs" / "web.old")
    (vol / "logs" / "web").symlink_to(outside)
    assert os.listdir(target) == ["written-through-bind"]
    # a restart-time call sees a mount of the wrong inode now, and refuses the symlinked path
    with pytest.raises(VolumeError, match="not within volume path"):
        container_mounts(p, container, prepared, env={"POD": "web"}, mounter=mounter)
    assert os.listdir(outside) == []
    # an escape attempt mounts nothing
    (vol / "evil").symlink_to("/")
    evil = {"name": "app2", "volumeMounts": [{"name": "data", "mountPath": "/x", "subPath": "evil"}]}
    with pytest.raises(VolumeError, match="not within volume path"):
        container_mounts(p, evil, prepared, env={}, mounter=mounter)
    teardown_volumes("uid-1", pod_dir, mounter=mounter)
    assert proc_mounts_under(pod_dir) == []
    assert not (pod_dir / "volume-subpaths").exists()


async def test_subpath_remount_is_idempotent(pod_dir: Path, mounter: LinuxMounter) -> None:
    p = pod([{"name": "data", "emptyDir": {}}])
    prepared = await prepare_volumes(p, pod_dir, sources=sources(), mounter=mounter)
    (prepared["data"].path / "f").write_text("file")
    container = {"name": "app", "volumeMounts": [{"name": "data", "mountPath": "/f", "subPath": "f"}]}
    first = container_mounts(p, container, prepared, env={}, mounter=mounter)
    second = container_mounts(p, container, prepared, env={}, mounter=mounter)
    assert first == second
    assert len(proc_mounts_under(pod_dir)) == 1  # reused, not stacked
    target = pod_dir / "volume-subpaths" / "data" / "app" / "0"
    assert first[0].source == str(target) and target.read_text() == "file"
    teardown_volumes("uid-1", pod_dir, mounter=mounter)
    assert proc_mounts_under(pod_dir) == []
