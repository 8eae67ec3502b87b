"""The volume manager with fakes: every plugin, fsGroup, updates, container mounts, teardown."""

from __future__ import annotations

import base64
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from peapod.node.runtime.types import Mount
from peapod.node.volumes import (
    DownwardValues,
    FakeMounter,
    FakeVolumeSources,
    VolumeError,
    VolumesNotReady,
    container_mounts,
    create_termination_log,
    discover_volumes,
    emptydir_overuse,
    emptydir_usage,
    memory_volume_size,
    prepare_volumes,
    read_termination_message,
    teardown_volumes,
    termination_mount,
    update_volumes,
)
from peapod.testing.clock import FakeClock

GI = 1024**3
MI = 1024**2
is_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def pod(volumes: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "ns", "uid": "uid-1", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c"}], "volumes": volumes, **spec}}


def mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.fixture
def sources() -> FakeVolumeSources:
    return FakeVolumeSources(
        configmaps={("ns", "cfg"): {"data": {"a.conf": "A", "b.conf": "B"},
                                    "binaryData": {"bin": base64.b64encode(b"\x00\x01").decode()}}},
        secrets={("ns", "creds"): {"data": {"user": b64("admin"), "pass": b64("s3cret")}}},
        downward=DownwardValues(node_name="n1", node_allocatable={"memory": "8Gi", "cpu": "4"}),
        token="tok-123",
    )


@pytest.fixture
def mounter() -> FakeMounter:
    return FakeMounter()


async def prep(p: dict, tmp_path: Path, sources: FakeVolumeSources, mounter: FakeMounter) -> dict:
    return await prepare_volumes(p, tmp_path, sources=sources, mounter=mounter, clock=FakeClock())


async def test_empty_dir_disk(tmp_path: Path, sources, mounter) -> None:
    got = await prep(pod([{"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}]), tmp_path, sources, mounter)
    pv = got["scratch"]
    assert pv.path == tmp_path / "volumes/kubernetes.io~empty-dir/scratch"
    assert pv.path.is_dir() and mode(pv.path) == 0o777
    assert (pv.kind, pv.tmpfs, pv.read_only, pv.size_limit) == ("emptyDir", False, False, GI)
    assert mounter.calls == []


async def test_empty_dir_memory_sizes(tmp_path: Path, sources, mounter) -> None:
    p = pod([{"name": "m1", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
             {"name": "m2", "emptyDir": {"medium": "Memory"}}])
    got = await prep(p, tmp_path, sources, mounter)
    assert got["m1"].tmpfs and got["m1"].size_limit == 64 * MI
    assert got["m2"].size_limit == 8 * GI  # node allocatable: no pod memory limit
    assert [c[0] for c in mounter.calls] == ["mount_tmpfs", "mount_tmpfs"]
    assert mounter.calls[0][2] == 64 * MI
    # restart-safe: a second prepare does not mount again
    await prep(p, tmp_path, sources, mounter)
    assert len(mounter.calls) == 2


def test_memory_volume_size_table() -> None:
    limited = {"spec": {"containers": [{"resources": {"limits": {"memory": "256Mi"}}},
                                       {"resources": {"limits": {"memory": "256Mi"}}}]}}
    partly = {"spec": {"containers": [{"resources": {"limits": {"memory": "256Mi"}}}, {}]}}
    assert memory_volume_size(limited, None, 8 * GI) == 512 * MI       # pod limit < allocatable
    assert memory_volume_size(limited, "1Gi", 8 * GI) == 512 * MI      # sizeLimit above pod limit: ignored
    assert memory_volume_size(limited, "100Mi", 8 * GI) == 100 * MI
    assert memory_volume_size(partly, None, 8 * GI) == 8 * GI           # a container without a limit
    assert memory_volume_size(partly, "16Gi", 8 * GI) == 8 * GI
    with_init = {"spec": {"initContainers": [{"resources": {"limits": {"memory": "1Gi"}}}],
                          "containers": [{"resources": {"limits": {"memory": "256Mi"}}}]}}
    assert memory_volume_size(with_init, None, 8 * GI) == GI


async def test_configmap_all_keys(tmp_path: Path, sources, mounter) -> None:
    got = await prep(pod([{"name": "cfg", "configMap": {"name": "cfg"}}]), tmp_path, sources, mounter)
    pv = got["cfg"]
    assert pv.read_only and not pv.tmpfs
    assert (pv.path / "a.conf").read_text() == "A"
    assert (pv.path / "bin").read_bytes() == b"\x00\x01"
    assert os.readlink(pv.path / "a.conf") == "..data/a.conf"
    assert mode(pv.path / "a.conf") == 0o644
    assert mode(pv.path) == 0o777


async def test_configmap_items_and_modes(tmp_path: Path, sources, mounter) -> None:
    vol = {"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 0o600, "items": [
        {"key": "a.conf", "path": "etc/app/a"}, {"key": "b.conf", "path": "b", "mode": 0o444}]}}
    pv = (await prep(pod([vol]), tmp_path, sources, mounter))["cfg"]
    assert (pv.path / "etc/app/a").read_text() == "A"
    assert mode(pv.path / "etc/app/a") == 0o600 and mode(pv.path / "b") == 0o444
    assert sorted(n for n in os.listdir(pv.path) if not n.startswith("..")) == ["b", "etc"]


async def test_missing_sources_and_optional(tmp_path: Path, sources, mounter) -> None:
    vols = [{"name": "c1", "configMap": {"name": "nope"}},
            {"name": "s1", "secret": {"secretName": "nope"}},
            {"name": "c2", "configMap": {"name": "nope", "optional": True}},
            {"name": "k1", "configMap": {"name": "cfg", "items": [{"key": "zz", "path": "z"}]}},
            {"name": "k2", "secret": {"secretName": "creds", "items": [{"key": "zz", "path": "z"}]}},
            {"name": "k3", "configMap": {"name": "cfg", "optional": True,
                                         "items": [{"key": "zz", "path": "z"}]}}]
    with pytest.raises(VolumesNotReady) as e:
        await prep(pod(vols), tmp_path, sources, mounter)
    assert [str(x) for x in e.value.errors] == [
        'MountVolume.SetUp failed for volume "c1" : configmap "nope" not found',
        'MountVolume.SetUp failed for volume "s1" : secret "nope" not found',
        'MountVolume.SetUp failed for volume "k1" : configmap references non-existent config key: zz',
        'MountVolume.SetUp failed for volume "k2" : secret references non-existent secret key: zz',
    ]
    assert [x.volume for x in e.value.errors] == ["c1", "s1", "k1", "k2"]
    # the optional ones were set up, empty
    for name in ("c2", "k3"):
        d = tmp_path / "volumes/kubernetes.io~configmap" / name
        assert (d / "..data").is_dir() and [n for n in os.listdir(d) if not n.startswith("..")] == []


async def test_secret_on_tmpfs(tmp_path: Path, sources, mounter) -> None:
    vol = {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}}
    pv = (await prep(pod([vol]), tmp_path, sources, mounter))["creds"]
    assert pv.tmpfs and pv.read_only and pv.size_limit == 8 * GI
    assert mounter.is_mountpoint(pv.path)
    assert mounter.calls[0] == ("mount_tmpfs", str(pv.path), 8 * GI)
    assert (pv.path / "pass").read_text() == "s3cret" and mode(pv.path / "pass") == 0o400


async def test_downward_api_volume(tmp_path: Path, sources, mounter) -> None:
    vol = {"name": "info", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o400},
        {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory",
                                             "divisor": "1Mi"}}]}}
    pv = (await prep(pod([vol]), tmp_path, sources, mounter))["info"]
    assert (pv.path / "labels").read_text() == 'app="web"'
    assert (pv.path / "name").read_text() == "web" and mode(pv.path / "name") == 0o400
    assert (pv.path / "mem").read_text() == "8192"  # no limit: node allocatable 8Gi


async def test_downward_api_bad_path(tmp_path: Path, sources, mounter) -> None:
    vol = {"name": "info", "downwardAPI": {"items": [
        {"path": "x", "fieldRef": {"fieldPath": "spec.bogus"}},
        {"path": "y", "fieldRef": {"fieldPath": "spec.other"}}]}}
    msg = "[unsupported fieldPath: spec.bogus, unsupported fieldPath: spec.other]"
    with pytest.raises(VolumesNotReady, match=re.escape(msg)):
        await prep(pod([vol]), tmp_path, sources, mounter)


def projected(default_mode: int | None = None) -> dict:
    src: dict[str, Any] = {"sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607, "audience": "api"}},
        {"configMap": {"name": "cfg", "items": [{"key": "a.conf", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
        {"secret": {"name": "creds", "items": [{"key": "user", "path": "user"}]}}]}
    if default_mode is not None:
        src["defaultMode"] = default_mode
    return {"name": "kube-api-access", "projected": src}


async def test_projected(tmp_path: Path, sources, mounter) -> None:
    pv = (await prep(pod([projected(0o444)]), tmp_path, sources, mounter))["kube-api-access"]
    assert pv.tmpfs and pv.read_only
    assert {n: (pv.path / n).read_text() for n in ("token", "ca.crt", "namespace", "user")} == {
        "token": "tok-123", "ca.crt": "A", "namespace": "ns", "user": "admin"}
    assert mode(pv.path / "token") == 0o444
    assert ("request_token", "api", 3607) in sources.calls


async def test_projected_token_unavailable(tmp_path: Path, sources, mounter) -> None:
    sources.token = None
    with pytest.raises(VolumesNotReady) as e:
        await prep(pod([projected()]), tmp_path, sources, mounter)
    assert str(e.value.errors[0]) == ('MountVolume.SetUp failed for volume "kube-api-access" : '
                                      "failed to fetch token: no token service")

    class NoTokens:
        downward = DownwardValues()

        async def get_configmap(self, ns: str, name: str) -> dict:
            return {"data": {"a.conf": "A"}}

        async def get_secret(self, ns: str, name: str) -> dict:
            return {"data": {"user": b64("u")}}

    with pytest.raises(VolumesNotReady, match="failed to fetch token: service account tokens are not"):
        await prepare_volumes(pod([projected()]), tmp_path, sources=NoTokens(), mounter=mounter)  # type: ignore[arg-type]


@is_root
async def test_fs_group_ownership(tmp_path: Path, sources, mounter) -> None:
    p = pod([projected(), {"name": "scratch", "emptyDir": {}},
             {"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 0o400}}],
            securityContext={"fsGroup": 2345})
    got = await prep(p, tmp_path, sources, mounter)
    proj = got["kube-api-access"].path
    assert mode(proj / "token") == 0o640  # 0600 widened by the ownership pass, like kubelet
    assert os.stat(proj / "token").st_gid == 2345
    assert mode(proj / "namespace") == 0o644 | 0o440
    data = proj / os.readlink(proj / "..data")
    assert os.stat(data).st_mode & stat.S_ISGID and os.stat(data).st_gid == 2345
    assert mode(got["cfg"].path / "a.conf") == 0o440
    scratch = got["scratch"].path
    assert os.stat(scratch).st_gid == 2345 and mode(scratch) == 0o2777


@is_root
async def test_fs_group_emptydir_applied_once(tmp_path: Path, sources, mounter) -> None:
    p = pod([{"name": "scratch", "emptyDir": {}}], securityContext={"fsGroup": 2345})
    pv = (await prep(p, tmp_path, sources, mounter))["scratch"]
    f = pv.path / "user-file"
    f.write_text("x")
    os.chmod(f, 0o600)
    await prep(p, tmp_path, sources, mounter)  # restart: the user's file keeps its mode
    assert mode(f) == 0o600


async def test_update_volumes(tmp_path: Path, sources, mounter) -> None:
    p = pod([{"name": "cfg", "configMap": {"name": "cfg"}}, {"name": "scratch", "emptyDir": {}}])
    pv = (await prep(p, tmp_path, sources, mounter))["cfg"]
    first = os.readlink(pv.path / "..data")
    assert await update_volumes(p, tmp_path, sources=sources, mounter=mounter) == []
    assert os.readlink(pv.path / "..data") == first
    sources.configmaps[("ns", "cfg")] = {"data": {"a.conf": "A2", "new": "N"}}
    assert await update_volumes(p, tmp_path, sources=sources, mounter=mounter) == ["cfg"]
    assert (pv.path / "a.conf").read_text() == "A2" and (pv.path / "new").read_text() == "N"
    assert "b.conf" not in os.listdir(pv.path)


async def test_host_path(tmp_path: Path, sources, mounter) -> None:
    target = tmp_path / "host" / "data"
    vols = [{"name": "h", "hostPath": {"path": str(target), "type": "DirectoryOrCreate"}},
            {"name": "bad", "hostPath": {"path": str(tmp_path / "missing"), "type": "File"}}]
    with pytest.raises(VolumesNotReady) as e:
        await prep(pod(vols), tmp_path / "pod", sources, mounter)
    assert str(e.value) == (f'MountVolume.SetUp failed for volume "bad" : hostPath type check failed: '
                            f'{tmp_path / "missing"} is not a file')
    assert target.is_dir()


async def test_unsupported_volume(tmp_path: Path, sources, mounter) -> None:
    with pytest.raises(VolumesNotReady, match="unsupported volume type persistentVolumeClaim"):
        await prep(pod([{"name": "pvc", "persistentVolumeClaim": {"claimName": "x"}}]), tmp_path, sources,
                   mounter)


async def test_container_mounts(tmp_path: Path, sources, mounter) -> None:
    host = tmp_path / "hostdir"
    host.mkdir()
    p = pod([{"name": "scratch", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}},
             {"name": "h", "hostPath": {"path": str(host)}}])
    prepared = await prep(p, tmp_path / "pod", sources, mounter)
    c = {"name": "app", "securityContext": {"privileged": True}, "volumeMounts": [
        {"name": "scratch", "mountPath": "/scratch"},
        {"name": "cfg", "mountPath": "/etc/cfg"},
        {"name": "h", "mountPath": "/host", "readOnly": True, "mountPropagation": "HostToContainer"},
        {"name": "h", "mountPath": "/host2", "mountPropagation": "Bidirectional"},
        {"name": "scratch", "mountPath": "/ro", "readOnly": True, "recursiveReadOnly": "Enabled"},
    ]}
    got = container_mounts(p, c, prepared, env={}, mounter=mounter)
    assert got == [
        Mount("/scratch", str(prepared["scratch"].path), propagation="rprivate"),
        Mount("/etc/cfg", str(prepared["cfg"].path), read_only=True, propagation="rprivate"),
        Mount("/host", str(host), read_only=True, propagation="rslave"),
        Mount("/host2", str(host), propagation="rshared"),
        Mount("/ro", str(prepared["scratch"].path), read_only=True, options=("rro",), propagation="rprivate"),
    ]


async def test_container_mount_errors(tmp_path: Path, sources, mounter) -> None:
    p = pod([{"name": "scratch", "emptyDir": {}}])
    prepared = await prep(p, tmp_path, sources, mounter)

    def err(vm: dict, **c: Any) -> str:
        with pytest.raises(VolumeError) as e:
            container_mounts(p, {"name": "app", "volumeMounts": [vm], **c}, prepared, env={"E": "x"},
                             mounter=mounter)
        assert e.value.reason == "CreateContainerConfigError"
        return str(e.value)

    assert err({"name": "ghost", "mountPath": "/g"}) == (
        'cannot find volume "ghost" to mount into container "app"')
    assert err({"name": "scratch", "mountPath": "/s", "mountPropagation": "Bidirectional"}) == (
        "Bidirectional mount propagation is available only to privileged containers")
    assert err({"name": "scratch", "mountPath": "/s", "mountPropagation": "Sideways"}) == (
        'invalid MountPropagation mode: "Sideways"')
    assert err({"name": "scratch", "mountPath": "/s", "subPath": "/etc"}) == (
        "error SubPath `/etc` must not be an absolute path")
    assert err({"name": "scratch", "mountPath": "/s", "subPath": "../../etc"}) == (
        "unable to provision SubPath `../../etc`: must not contain '..'")
    assert err({"name": "scratch", "mountPath": "/s", "subPathExpr": "$(E)/$(MISSING)"}) == (
        "missing value for MISSING")
    assert err({"name": "scratch", "mountPath": "/s", "subPathExpr": "$(E)/../.."}) == (
        "unable to provision SubPath `x/../..`: must not contain '..'")
    (prepared["scratch"].path / "evil").symlink_to("/")
    assert "not within volume path" in err({"name": "scratch", "mountPath": "/s", "subPath": "evil"})
    assert mounter.calls == []


async def test_subpath_mounts(tmp_path: Path, sources, mounter) -> None:
    p = pod([{"name": "scratch", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}}])
    prepared = await prep(p, tmp_path, sources, mounter)
    c = {"name": "app", "volumeMounts": [
        {"name": "scratch", "mountPath": "/logs", "subPathExpr": "logs/$(POD_NAME)"},
        {"name": "cfg", "mountPath": "/etc/a.conf", "subPath": "a.conf"}]}
    got = container_mounts(p, c, prepared, env={"POD_NAME": "web"}, mounter=mounter)
    sub = tmp_path / "volume-subpaths"
    assert [m.source for m in got] == [str(sub / "scratch/app/0"), str(sub / "cfg/app/1")]
    assert got[1].read_only and (prepared["scratch"].path / "logs/web").is_dir()  # created, like kubelet
    ts = os.readlink(prepared["cfg"].path / "..data")
    assert [c[1] for c in mounter.calls] == [str(prepared["scratch"].path / "logs/web"),
                                            str(prepared["cfg"].path / ts / "a.conf")]
    assert (sub / "cfg/app/1").is_file()


async def test_teardown(tmp_path: Path, sources, mounter) -> None:
    host = tmp_path / "hostdir"
    host.mkdir()
    (host / "keep").write_text("x")
    p = pod([{"name": "m", "emptyDir": {"medium": "Memory"}},
             {"name": "creds", "secret": {"secretName": "creds"}},
             {"name": "h", "hostPath": {"path": str(host)}}])
    pod_dir = tmp_path / "pod"
    prepared = await prep(p, pod_dir, sources, mounter)
    container_mounts(p, {"name": "a", "volumeMounts": [{"name": "h", "mountPath": "/x", "subPath": "keep"}]},
                     prepared, env={}, mounter=mounter)
    assert len(mounter.mounted) == 3
    mounter.fail["unmount"] = OSError(16, "busy")
    with pytest.raises(VolumeError, match=r"unmount .* failed"):
        teardown_volumes("uid-1", pod_dir, mounter=mounter)
    assert (pod_dir / "volumes").exists()  # nothing deleted while mounted
    del mounter.fail["unmount"]
    teardown_volumes("uid-1", pod_dir, mounter=mounter)
    assert mounter.mounted == {}
    assert not (pod_dir / "volumes").exists() and not (pod_dir / "volume-subpaths").exists()
    assert (host / "keep").read_text() == "x"
    teardown_volumes("uid-1", pod_dir, mounter=mounter)  # idempotent
    teardown_volumes("uid-1", tmp_path / "never", mounter=mounter)


async def test_discover_after_restart(tmp_path: Path, sources, mounter) -> None:
    vols = [{"name": "scratch", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}}]
    prepared = await prep(pod(vols), tmp_path, sources, mounter)
    later = pod([*vols, {"name": "later", "secret": {"secretName": "creds"}}])
    found = discover_volumes(later, tmp_path)
    assert set(found) == {"scratch", "cfg"}  # "later" is not set up yet
    assert found["cfg"] == prepared["cfg"] and found["scratch"].path == prepared["scratch"].path


async def test_emptydir_usage(tmp_path: Path, sources, mounter) -> None:
    p = pod([{"name": "small", "emptyDir": {"sizeLimit": "4Ki"}}, {"name": "big", "emptyDir": {}}])
    prepared = await prep(p, tmp_path, sources, mounter)
    (prepared["small"].path / "f").write_bytes(b"x" * 100_000)
    (prepared["small"].path / "d").mkdir()
    os.link(prepared["small"].path / "f", prepared["small"].path / "d" / "hard")  # counted once
    usage = emptydir_usage(tmp_path, mounted=set())
    assert set(usage) == {"small", "big"}
    assert 100_000 <= usage["small"] < 200_000 and usage["big"] < 100_000
    assert emptydir_overuse(p, usage) == ['Usage of EmptyDir volume "small" exceeds the limit "4Ki". ']


def test_termination_log(tmp_path: Path) -> None:
    f1 = create_termination_log(tmp_path, "app")
    f2 = create_termination_log(tmp_path, "app")
    assert f1 != f2 and f1.parent == tmp_path / "containers" / "app"
    assert mode(f1) == 0o666 and f1.read_bytes() == b""
    assert termination_mount({"name": "app"}, f1) == Mount("/dev/termination-log", str(f1))
    custom = termination_mount({"name": "app", "terminationMessagePath": "/tmp/msg"}, f1)
    assert custom is not None and custom.destination == "/tmp/msg"
    f1.write_bytes(b"x" * 5000)
    assert read_termination_message(f1) == "x" * 4096
    assert read_termination_message(tmp_path / "gone") == ""
