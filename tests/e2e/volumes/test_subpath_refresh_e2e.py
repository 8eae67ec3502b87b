"""subPath binds across a volume refresh, with real mounts: the bound files keep their old content."""

from __future__ import annotations

import os
from pathlib import Path

from peapod.node.volumes import FakeVolumeSources, container_mounts, prepare_volumes, teardown_volumes, update_volumes
from peapod.node.volumes.mounter import LinuxMounter

from .conftest import proc_mounts_under


def pod(volumes: list[dict]) -> dict:
    return {"metadata": {"name": "web", "namespace": "ns", "uid": "uid-1"},
            "spec": {"containers": [{"name": "app"}], "volumes": volumes}}



async def test_subpath_binds_keep_old_files_across_a_refresh(pod_dir: Path, mounter: LinuxMounter) -> None:
    """A directory subPath keeps its old files (kubelet would leave it empty), a file subPath its old
    content; the old payload directory goes once no bind shows it any more."""
    src = FakeVolumeSources(configmaps={("ns", "cfg"): {"data": {"a": "A1", "top": "T1"}}})
    p = pod([{"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "conf/a"},
                                                                    {"key": "top", "path": "top"}]}}])
    c = {"name": "app", "volumeMounts": [{"name": "cfg", "mountPath": "/etc/conf", "subPath": "conf"},
                                         {"name": "cfg", "mountPath": "/etc/top", "subPath": "top"}]}
    got = await prepare_volumes(p, pod_dir, sources=src, mounter=mounter)
    conf_bind, top_bind = (Path(m.source) for m in container_mounts(p, c, got, env={}, mounter=mounter))
    old_payload = os.readlink(got["cfg"].path / "..data")
    src.configmaps[("ns", "cfg")] = {"data": {"a": "A2", "top": "T2"}}
    assert await update_volumes(p, pod_dir, sources=src, mounter=mounter) == ["cfg"]
    assert (got["cfg"].path / "conf" / "a").read_text() == "A2" and (got["cfg"].path / "top").read_text() == "T2"
    assert (conf_bind / "a").read_text() == "A1" and top_bind.read_text() == "T1"
    assert (got["cfg"].path / old_payload).is_dir()
    for bind in (conf_bind, top_bind):  # the container went away
        mounter.unmount(bind)
    assert await update_volumes(p, pod_dir, sources=src, mounter=mounter) == []
    assert not (got["cfg"].path / old_payload).exists()
    teardown_volumes("uid-1", pod_dir, mounter=mounter)
    assert proc_mounts_under(pod_dir) == []
