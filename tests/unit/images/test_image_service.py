"""OciImageService against the fake registry: pull, ensure, load, remove, prune, crash safety.
(Overlay mounting is covered by tests/e2e/images.)"""

from __future__ import annotations

import asyncio
import base64
import json
import os

import pytest

from peapod.node.images import (
    ImageNeverPullError,
    ImageNotFoundError,
    ImagePullError,
    OciImageService,
    Platform,
    default_pull_policy,
)
from peapod.node.images.manifest import OCI_LAYER, OCI_LAYER_ZSTD
from peapod.testing.images import (
    build_image,
    busybox_image,
    busybox_layer,
    file,
    make_layer,
    multi_arch_index,
    write_docker_archive,
    write_oci_layout,
    write_tar_of_dir,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="unpacking preserves ownership: needs root")
AMD64 = Platform("linux", "amd64")


@pytest.fixture
async def svc(tmp_path):
    s = OciImageService(tmp_path / "images", platform=AMD64)
    yield s
    await s.close()


def blob_gets(reg):
    return [r for r in reg.requests if r["method"] == "GET" and "/blobs/" in r["path"]]


def app_image(**kw):
    return busybox_image(extra_files={"/app/run.sh": file("#!/bin/sh\necho hi\n", mode=0o755)},
                         entrypoint=["/app/run.sh"], cmd=["--flag"], env=["PATH=/bin", "A=1"],
                         working_dir="/app", user="1000:1000", stop_signal="SIGINT",
                         exposed_ports=["8080/tcp"], labels={"team": "x"}, **kw)


async def test_pull_records_image_and_unpacks_layers(fake_registry, svc):
    built = app_image()
    fake_registry.add("app", "v1", built)
    img = await svc.pull(fake_registry.ref("app", "v1"))
    assert img.id == built.config_digest and img.digest == built.manifest_digest
    assert img.repo_tags == (fake_registry.ref("app", "v1"),)
    assert img.repo_digests == (f"{fake_registry.host}/app@{built.manifest_digest}",)
    c = img.config
    assert (c.entrypoint, c.cmd, c.env, c.working_dir, c.user, c.stop_signal, c.exposed_ports, c.labels) == (
        ("/app/run.sh",), ("--flag",), ("PATH=/bin", "A=1"), "/app", "1000:1000", "SIGINT", ("8080/tcp",),
        {"team": "x"})
    assert img.diff_ids == tuple(layer.diff_id for layer in built.layers)
    assert img.size == sum(len(layer.tar) for layer in built.layers)
    top = svc.layers.diff_dir(img.chain_ids[1])
    assert (top / "app" / "run.sh").read_text() == "#!/bin/sh\necho hi\n"
    assert os.readlink(svc.layers.diff_dir(img.chain_ids[0]) / "bin" / "sh") == "/bin/busybox"
    for ref in [fake_registry.ref("app", "v1"), img.id, img.id.removeprefix("sha256:")[:12],
                f"{fake_registry.host}/app@{built.manifest_digest}"]:
        assert svc.get(ref) == img, ref
    assert svc.get(fake_registry.ref("app", "v2")) is None and svc.list() == [img]
    assert svc.config_json(img)["config"]["User"] == "1000:1000"


async def test_index_pull_uses_index_digest_as_repo_digest(fake_registry, svc):
    amd = busybox_image(extra_files={"/arch": "amd64"})
    arm = busybox_image(extra_files={"/arch": "arm64"}, architecture="arm64", variant="v8")
    index = multi_arch_index([arm, amd])
    fake_registry.add("multi", "1", index)
    img = await svc.pull(fake_registry.ref("multi", "1"))
    assert img.digest == amd.manifest_digest and img.architecture == "amd64"
    assert img.repo_digests == (f"{fake_registry.host}/multi@{index.digest}",)
    assert (svc.layers.diff_dir(img.chain_ids[-1]) / "arch").read_text() == "amd64"
    assert svc.get(f"{fake_registry.host}/multi@{index.digest}") == img


@pytest.mark.parametrize("compression", ["zstd", "none"])
async def test_zstd_and_uncompressed_layers(fake_registry, svc, compression):
    built = build_image([make_layer({"/f": "data"}, compression=compression)])
    assert built.layers[0].media_type == (OCI_LAYER_ZSTD if compression == "zstd" else OCI_LAYER)
    fake_registry.add("c", compression, built)
    img = await svc.pull(fake_registry.ref("c", compression))
    assert (svc.layers.diff_dir(img.chain_ids[0]) / "f").read_text() == "data"


async def test_pull_error_message_and_policies(fake_registry, svc):
    ref = fake_registry.ref("missing", "v1")
    with pytest.raises(ImagePullError) as info:
        await svc.ensure(ref, "IfNotPresent")
    assert str(info.value) == (f'failed to pull image "{ref}": 404 Not Found: manifest unknown '
                               "(MANIFEST_UNKNOWN)")
    with pytest.raises(ImageNeverPullError, match="not present with pull policy of Never"):
        await svc.ensure(ref, "Never")
    fake_registry.add("app", "v1", app_image())
    img = await svc.ensure(fake_registry.ref("app", "v1"), "IfNotPresent")
    before = len(fake_registry.requests)
    assert await svc.ensure(fake_registry.ref("app", "v1"), "IfNotPresent") == img
    assert await svc.ensure(fake_registry.ref("app", "v1"), "Never") == img
    assert len(fake_registry.requests) == before  # no registry traffic for present images
    gets = len(blob_gets(fake_registry))
    assert await svc.ensure(fake_registry.ref("app", "v1"), "Always") == img
    assert len(fake_registry.requests) > before and len(blob_gets(fake_registry)) == gets  # manifest only


@pytest.mark.parametrize(("ref", "policy"), [
    ("busybox", "Always"), ("busybox:latest", "Always"), ("busybox:1.36", "IfNotPresent"),
    ("busybox@sha256:" + "a" * 64, "IfNotPresent"), ("localhost:5000/app", "Always")])
def test_default_pull_policy(ref, policy):
    assert default_pull_policy(ref) == policy


async def test_pull_secrets_tried_in_turn(fake_registry, svc):
    fake_registry.auth, fake_registry.users = "basic", {"bob": "right"}
    fake_registry.add("private", "v1", app_image())
    host = fake_registry.host

    def secret(pw):
        return {"auths": {host: {"auth": base64.b64encode(f"bob:{pw}".encode()).decode()}}}

    with pytest.raises(ImagePullError, match="401 Unauthorized"):
        await svc.pull(fake_registry.ref("private", "v1"))
    with pytest.raises(ImagePullError, match="authentication required"):
        await svc.pull(fake_registry.ref("private", "v1"), auth=[secret("wrong")])
    img = await svc.pull(fake_registry.ref("private", "v1"), auth=[secret("wrong"), secret("right")])
    assert img.repo_tags == (fake_registry.ref("private", "v1"),)


async def test_shared_layers_unpacked_and_downloaded_once(fake_registry, svc):
    a, b = busybox_image(extra_files={"/a": "a"}), busybox_image(extra_files={"/b": "b"})
    fake_registry.add("a", "1", a)
    fake_registry.add("b", "1", b)
    ia, ib = await asyncio.gather(svc.pull(fake_registry.ref("a", "1")),
                                  svc.pull(fake_registry.ref("b", "1")))
    assert ia.chain_ids[0] == ib.chain_ids[0]
    base = busybox_layer().digest
    assert len([r for r in blob_gets(fake_registry) if r["path"].endswith(base)]) == 1
    assert len(svc.layers.chain_ids()) == 3


async def test_concurrent_pulls_of_one_ref_download_once(fake_registry, svc):
    fake_registry.add("app", "v1", app_image())
    imgs = await asyncio.gather(*(svc.pull(fake_registry.ref("app", "v1")) for _ in range(4)))
    assert len({i.id for i in imgs}) == 1
    assert len(blob_gets(fake_registry)) == 3  # config + 2 layers


async def test_diff_id_mismatch_is_rejected_and_leaves_nothing(fake_registry, svc):
    good = make_layer({"/x": "real"})
    liar = build_image([good])
    cfg = json.loads(liar.config)
    cfg["rootfs"]["diff_ids"] = ["sha256:" + "0" * 64]
    from peapod.node.images.content import digest_bytes
    from peapod.testing.images import BuiltImage

    cfg_bytes = json.dumps(cfg).encode()
    man = json.loads(liar.manifest)
    man["config"] = {**man["config"], "digest": digest_bytes(cfg_bytes), "size": len(cfg_bytes)}
    man_bytes = json.dumps(man).encode()
    fake_registry.add("liar", "1", BuiltImage(man_bytes, digest_bytes(man_bytes), liar.media_type, cfg_bytes,
                                              digest_bytes(cfg_bytes), liar.layers))
    with pytest.raises(ImagePullError, match="diff_id mismatch"):
        await svc.pull(fake_registry.ref("liar", "1"))
    assert svc.list() == [] and svc.layers.chain_ids() == []
    assert [p.name for p in svc.layers.layers_dir.iterdir()] == []


async def test_reopen_keeps_images_and_drops_crash_leftovers(fake_registry, tmp_path):
    fake_registry.add("app", "v1", app_image())
    root = tmp_path / "images"
    async with OciImageService(root, platform=AMD64) as svc:
        img = await svc.pull(fake_registry.ref("app", "v1"))
    (root / "layers" / ".tmp-crashed" / "diff").mkdir(parents=True)
    (root / "layers" / ("f" * 64) / "diff").mkdir(parents=True)  # renamed but never finished
    (root / "content" / "ingest" / "blob-partial").write_bytes(b"x")
    async with OciImageService(root, platform=AMD64) as svc:
        assert svc.get(fake_registry.ref("app", "v1")) == img
        assert sorted(p.name for p in (root / "layers").iterdir()) == sorted(
            c.removeprefix("sha256:") for c in img.chain_ids)
        assert list((root / "content" / "ingest").iterdir()) == []


async def test_remove_untags_then_collects(fake_registry, svc):
    a, b = busybox_image(extra_files={"/a": "a"}), busybox_image(extra_files={"/b": "b"})
    fake_registry.add("a", "1", a)
    fake_registry.add("a", "2", a)
    fake_registry.add("b", "1", b)
    ia = await svc.pull(fake_registry.ref("a", "1"))
    await svc.pull(fake_registry.ref("a", "2"))
    ib = await svc.pull(fake_registry.ref("b", "1"))
    assert svc.get(ia.id).repo_tags == (fake_registry.ref("a", "1"), fake_registry.ref("a", "2"))
    await svc.remove(fake_registry.ref("a", "1"))
    assert svc.get(ia.id).repo_tags == (fake_registry.ref("a", "2"),)
    await svc.remove(fake_registry.ref("a", "2"))
    assert svc.get(ia.id) is None
    assert sorted(svc.layers.chain_ids()) == sorted(ib.chain_ids)  # shared base layer kept
    assert not svc.content.has(a.layers[1].digest) and svc.content.has(b.layers[1].digest)
    with pytest.raises(ImageNotFoundError):
        await svc.remove(fake_registry.ref("a", "2"))


async def test_prune_keeps_in_use(fake_registry, svc):
    a, b = busybox_image(extra_files={"/a": "a"}), busybox_image(extra_files={"/b": "b"})
    fake_registry.add("a", "1", a)
    fake_registry.add("b", "1", b)
    ia = await svc.pull(fake_registry.ref("a", "1"))
    ib = await svc.pull(fake_registry.ref("b", "1"))
    result = await svc.prune({fake_registry.ref("a", "1")})
    assert result.images_removed == [ib.id] and result.layers_removed == [ib.chain_ids[1]]
    assert set(result.blobs_removed) == {b.config_digest, b.manifest_digest, b.layers[1].digest}
    assert [i.id for i in svc.list()] == [ia.id]
    assert (await svc.prune({ia.id})).images_removed == []
    assert (await svc.prune(set())).images_removed == [ia.id]
    assert svc.layers.chain_ids() == [] and list(svc.content.digests()) == []


async def test_load_oci_layout_dir_and_tar(svc, tmp_path):
    amd = busybox_image(extra_files={"/arch": "amd64"})
    arm = busybox_image(extra_files={"/arch": "arm64"}, architecture="arm64")
    layout = write_oci_layout(tmp_path / "layout", {"localhost/multi:v1": multi_arch_index([arm, amd]),
                                                   "v2": busybox_image(cmd=["true"])})
    [multi, bare] = await svc.load(layout)
    assert multi.repo_tags == ("localhost/multi:v1",) and multi.digest == amd.manifest_digest
    assert bare.repo_tags == () and bare.config.cmd == ("true",)
    assert (svc.layers.diff_dir(multi.chain_ids[-1]) / "arch").read_text() == "amd64"
    tar = write_tar_of_dir(layout, tmp_path / "layout.tar")
    [_, named] = await svc.load(tar, name="example.com/app")
    assert named.repo_tags == ("example.com/app:v2",)


async def test_load_docker_archive(svc, tmp_path):
    built = app_image()
    archive = write_docker_archive(tmp_path / "save.tar", built, ["myapp:1.0"])
    [img] = await svc.load(archive)
    assert img.id == built.config_digest and img.repo_tags == ("docker.io/library/myapp:1.0",)
    assert img.diff_ids == tuple(layer.diff_id for layer in built.layers)
    assert (svc.layers.diff_dir(img.chain_ids[1]) / "app" / "run.sh").exists()
    assert svc.get("myapp:1.0") == img


async def test_push_roundtrip(fake_registry, svc, tmp_path):
    built = app_image()
    [img] = await svc.load(write_docker_archive(tmp_path / "save.tar", built, ["myapp:1.0"]))
    digest = await svc.push("myapp:1.0", fake_registry.ref("pushed", "1.0"))
    assert fake_registry.manifests[("pushed", "1.0")][0] == svc.content.read(img.digest)
    assert svc.get(f"{fake_registry.host}/pushed@{digest}").id == img.id
    async with OciImageService(tmp_path / "other", platform=AMD64) as other:
        assert (await other.pull(fake_registry.ref("pushed", "1.0"))).id == img.id
