"""The mounts this package produces, used by a real runc container (busybox rootfs, `runc run`)."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
from pathlib import Path

import pytest

from peapod.node.runtime.bundle import build_spec, write_bundle
from peapod.node.runtime.types import ContainerConfig
from peapod.node.volumes import (
    DownwardValues,
    FakeVolumeSources,
    container_mounts,
    create_termination_log,
    prepare_volumes,
    read_termination_message,
    teardown_volumes,
)
from peapod.node.volumes.mounter import LinuxMounter
from peapod.testing.rootfs import build_busybox_rootfs

from .conftest import proc_mounts_under

pytestmark = pytest.mark.skipif(not (shutil.which("runc") and os.path.exists("/bin/busybox")),
                                reason="needs runc and busybox-static")

def _cgroup_left(cid: str) -> bool:
    return any(Path(base, cid).exists() for base in ("/sys/fs/cgroup", "/sys/fs/cgroup/memory",
                                                      "/sys/fs/cgroup/unified"))


SCRIPT = """
set -u
echo "secret=$(cat /etc/creds/pass)"
echo "sub=$(cat /etc/app.conf)"
echo "name=$(cat /podinfo/name)"
echo hi > /scratch/out && echo "scratch=ok"
(echo x > /etc/creds/new) 2>/dev/null && echo "secret-writable" || echo "secret=ro"
grep -q ' /scratch tmpfs ' /proc/mounts && echo "scratch=tmpfs"
(echo x > /rro/y) 2>/dev/null && echo "rro-writable" || echo "rro=ro"
echo "bye" > /dev/termination-log
"""


async def test_container_sees_volumes(pod_dir: Path, mounter: LinuxMounter, tmp_path: Path) -> None:
    pod = {"metadata": {"name": "web", "namespace": "ns", "uid": "uid-1"},
           "spec": {"containers": [{"name": "app"}], "volumes": [
               {"name": "creds", "secret": {"secretName": "creds"}},
               {"name": "cfg", "configMap": {"name": "cfg"}},
               {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "4Mi"}},
               {"name": "info", "downwardAPI": {"items": [
                   {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}}]}}
    src = FakeVolumeSources(
        secrets={("ns", "creds"): {"data": {"pass": base64.b64encode(b"s3cret").decode()}}},
        configmaps={("ns", "cfg"): {"data": {"app.conf": "level=debug"}}},
        downward=DownwardValues(node_allocatable={"memory": "1Gi"}))
    prepared = await prepare_volumes(pod, pod_dir, sources=src, mounter=mounter)
    container = {"name": "app", "volumeMounts": [
        {"name": "creds", "mountPath": "/etc/creds"},
        {"name": "cfg", "mountPath": "/etc/app.conf", "subPath": "app.conf"},
        {"name": "scratch", "mountPath": "/scratch"},
        {"name": "info", "mountPath": "/podinfo", "readOnly": True},
        {"name": "scratch", "mountPath": "/rro", "readOnly": True, "recursiveReadOnly": "Enabled"}]}
    mounts = container_mounts(pod, container, prepared, env={}, mounter=mounter)
    term = create_termination_log(pod_dir, "app")
    cid = "ppv-" + secrets.token_hex(4)
    rootfs = build_busybox_rootfs(tmp_path / "rootfs")
    cfg = ContainerConfig(args=["/bin/sh", "-c", SCRIPT], rootfs=str(rootfs),
                          mounts=mounts, termination_log_path=str(term), cgroups_path=f"/{cid}",
                          rlimit_nofile=1024)
    bundle = write_bundle(tmp_path / "bundle", build_spec(cfg))
    root = tmp_path / "runc-root"
    proc = await asyncio.create_subprocess_exec(
        "runc", "--root", str(root), "run", "--bundle", str(bundle), cid,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        rm = await asyncio.create_subprocess_exec("runc", "--root", str(root), "delete", "--force", cid,
                                                  stdout=asyncio.subprocess.DEVNULL,
                                                  stderr=asyncio.subprocess.DEVNULL)
        await rm.wait()
    lines = out.decode().split()
    assert proc.returncode == 0, (out, err)
    assert lines == ["secret=s3cret", "sub=level=debug", "name=web", "scratch=ok", "secret=ro",
                     "scratch=tmpfs", "rro=ro"], err
    assert (prepared["scratch"].path / "out").read_text() == "hi\n"
    assert read_termination_message(term) == "bye\n"
    teardown_volumes("uid-1", pod_dir, mounter=mounter)
    assert proc_mounts_under(pod_dir) == []
    assert not _cgroup_left(cid)
