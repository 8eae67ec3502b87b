"""Images end to end: Debian's docker-registry on loopback, real pulls, real overlayfs mounts."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from peapod.node.images import Credentials, ImagePullError, OciImageService, Platform
from peapod.node.images.rootfs import mount_points
from peapod.testing.images import (
    build_image,
    busybox_image,
    make_layer,
    multi_arch_index,
    push_image,
    write_oci_layout,
    write_tar_of_dir,
)
from peapod.testing.registry import LoopbackRegistry

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlayfs mounts)"),
    pytest.mark.skipif(not os.path.exists("/usr/bin/docker-registry"), reason="docker-registry missing"),
]
AMD64 = Platform("linux", "amd64")


@pytest.fixture
async def registry():
    async with LoopbackRegistry() as reg:
        yield reg


@pytest.fixture
async def svc(tmp_path):
    s = OciImageService(tmp_path / "images", platform=AMD64)
    yield s
    for cid in list(s.rootfs.in_use()):
        await s.release_rootfs(cid)
    await s.close()
    assert not [m for m in mount_points() if m.startswith(str(tmp_path))], "leftover mounts"


def sh(rootfs: Path, script: str) -> str:
    out = subprocess.run(["chroot", str(rootfs), "/bin/sh", "-c", script], capture_output=True, text=True,
                         timeout=30, check=True)
    return out.stdout


def dockercfg(host: str, user: str, password: str) -> dict:
    return {"auths": {host: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}}}


async def test_push_pull_by_tag_and_digest_and_run(registry, svc, tmp_path):
    built = busybox_image(extra_files={"/etc/motd": "hello from peapod\n"}, cmd=["sh", "-c", "cat /etc/motd"])
    digest = await push_image(registry.ref("busybox", "test"), built)
    assert digest == built.manifest_digest
    img = await svc.pull(registry.ref("busybox", "test"))
    assert img.id == built.config_digest and img.config.cmd == ("sh", "-c", "cat /etc/motd")
    by_digest = await svc.pull(f"{registry.host}/busybox@{digest}")
    assert by_digest.id == img.id and f"{registry.host}/busybox@{digest}" in by_digest.repo_digests

    rootfs = await svc.prepare_rootfs(img, "c1")
    assert str(rootfs) in mount_points()
    assert await svc.prepare_rootfs(img, "c1") == rootfs  # idempotent
    assert sh(rootfs, "cat /etc/motd") == "hello from peapod\n"
    assert sh(rootfs, "grep -c . /etc/passwd; id -u nobody; id -u user") == "3\n65534\n1000\n"
    sh(rootfs, "echo scratch > /tmp/x; rm /etc/motd")
    other = await svc.prepare_rootfs(img.repo_tags[0], "c2")
    assert sh(other, "cat /etc/motd; ls /tmp") == "hello from peapod\n"  # containers are independent
    layer_motd = svc.layers.diff_dir(img.chain_ids[-1]) / "etc" / "motd"
    assert layer_motd.read_text() == "hello from peapod\n"  # lower layers never change

    await svc.release_rootfs("c1")
    await svc.release_rootfs("c1")  # idempotent
    await svc.release_rootfs("c2")
    assert not [m for m in mount_points() if m.startswith(str(tmp_path))]
    assert list(svc.rootfs.containers_dir.iterdir()) == []


async def test_whiteouts_and_opaque_dirs_in_overlay(registry, svc):
    base = busybox_image(extra_files={"/etc/motd": "x", "/data/a": "a", "/data/b": "b", "/keep": "k"})
    upper = make_layer({"/etc/.wh.motd": "", "/data/.wh..wh..opq": "", "/data/c": "c"})
    built = build_image([*base.layers, upper], cmd=["sh"])
    await push_image(registry.ref("wh", "1"), built)
    img = await svc.pull(registry.ref("wh", "1"))
    rootfs = await svc.prepare_rootfs(img, "wh")
    assert sh(rootfs, "ls /data; test -e /etc/motd || echo gone; cat /keep") == "c\ngone\nk"


@pytest.mark.parametrize("docker", [False, True], ids=["oci-index", "docker-manifest-list"])
async def test_manifest_list_selects_amd64(registry, svc, docker):
    amd = busybox_image(extra_files={"/arch": "amd64\n"}, docker=docker)
    arm = busybox_image(extra_files={"/arch": "arm64\n"}, architecture="arm64", variant="v8", docker=docker)
    attestation = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm.manifest_digest,
                   "size": len(arm.manifest), "platform": {"architecture": "unknown", "os": "unknown"}}
    index = multi_arch_index([arm, amd], docker=docker, extra=[attestation] if not docker else None)
    assert await push_image(registry.ref("multi", "1"), index) == index.digest
    img = await svc.pull(registry.ref("multi", "1"))
    assert img.digest == amd.manifest_digest and img.architecture == "amd64"
    assert img.repo_digests == (f"{registry.host}/multi@{index.digest}",)
    rootfs = await svc.prepare_rootfs(img, "m")
    assert sh(rootfs, "cat /arch") == "amd64\n"


async def test_htpasswd_basic_auth(svc):
    built = busybox_image(extra_files={"/secret": "s"})
    async with LoopbackRegistry(htpasswd={"alice": "wonderland"}) as reg:
        with pytest.raises(Exception, match="401"):
            await push_image(reg.ref("private", "1"), built)
        await push_image(reg.ref("private", "1"), built, creds=Credentials("alice", "wonderland"))
        with pytest.raises(ImagePullError) as info:
            await svc.pull(reg.ref("private", "1"))
        assert "401 Unauthorized" in str(info.value) and "UNAUTHORIZED" in str(info.value)
        with pytest.raises(ImagePullError, match="401"):
            await svc.pull(reg.ref("private", "1"), auth=dockercfg(reg.host, "alice", "wrong"))
        img = await svc.pull(reg.ref("private", "1"), auth=dockercfg(reg.host, "alice", "wonderland"))
        assert img.id == built.config_digest


async def test_bearer_token_auth(svc):
    built = busybox_image(extra_files={"/tok": "t"})
    async with LoopbackRegistry(token_users={"bob": "builder"}) as reg:
        await push_image(reg.ref("team/app", "1"), built, creds=Credentials("bob", "builder"))
        with pytest.raises(ImagePullError, match="token request failed: 401"):
            await svc.pull(reg.ref("team/app", "1"))
        img = await svc.pull(reg.ref("team/app", "1"), auth=dockercfg(reg.host, "bob", "builder"))
        assert img.id == built.config_digest
        assert reg.token_server is not None
        scopes = {s for r in reg.token_server.requests if r["user"] == "bob" for s in r["scope"]}
        assert "repository:team/app:pull" in scopes and "repository:team/app:pull,push" in scopes


async def test_load_oci_layout_and_interop_with_skopeo(registry, svc, tmp_path):
    built = busybox_image(extra_files={"/from": "layout\n"})
    layout = write_oci_layout(tmp_path / "layout", {"localhost/loaded:1": built})
    [img] = await svc.load(layout)
    assert img.repo_tags == ("localhost/loaded:1",)
    rootfs = await svc.prepare_rootfs("localhost/loaded:1", "l1")
    assert sh(rootfs, "cat /from") == "layout\n"
    [again] = await svc.load(write_tar_of_dir(layout, tmp_path / "layout.tar"))
    assert again.id == img.id

    if not shutil.which("skopeo"):
        pytest.skip("skopeo missing")
    digest = await svc.push("localhost/loaded:1", registry.ref("fromsvc", "1"))
    out = await asyncio.to_thread(
        subprocess.run, ["skopeo", "inspect", "--raw", "--tls-verify=false",
                         f"docker://{registry.ref('fromsvc', '1')}"], capture_output=True, check=True)
    assert json.loads(out.stdout)["config"]["digest"] == built.config_digest
    assert digest == built.manifest_digest
    dest = tmp_path / "skopeo-layout"
    src = f"docker://{registry.ref('fromsvc', '1')}"
    cmd = ["skopeo", "copy", "--src-tls-verify=false", src, f"oci:{dest}:v1"]
    await asyncio.to_thread(subprocess.run, cmd, capture_output=True, check=True)
    [copied] = await svc.load(dest, name="localhost/copied")
    assert copied.id == img.id and "localhost/copied:v1" in copied.repo_tags
    assert f"{registry.host}/fromsvc@{digest}" in copied.repo_digests


async def test_many_layers_mount_past_the_page_limit(svc, tmp_path):
    """~100 layers overflow one page of absolute lowerdir paths: the relative-path mount is used."""
    layers = [make_layer({f"/layers/{i:03d}": str(i)}) for i in range(100)]
    built = build_image([*busybox_image().layers, *layers], cmd=["sh"])
    [img] = await svc.load(write_oci_layout(tmp_path / "many", {"localhost/many:1": built}))
    abs_len = sum(len(str(svc.layers.links_dir / svc.layers.get(c).short)) + 1 for c in img.chain_ids)
    assert abs_len > 4000  # the test really exercises the fallback
    rootfs = await svc.prepare_rootfs(img, "many")
    assert sh(rootfs, "ls /layers | wc -l; cat /layers/000 /layers/099") == "100\n099"
    await svc.release_rootfs("many")
    assert str(rootfs) not in mount_points()
