"""The distribution client against an in-process fake registry on loopback."""

from __future__ import annotations

import pytest

from peapod.node.images.auth import Credentials
from peapod.node.images.content import ContentStore
from peapod.node.images.errors import DigestMismatchError, RegistryError
from peapod.node.images.manifest import DOCKER_MANIFEST, OCI_MANIFEST, Platform
from peapod.node.images.reference import parse_reference
from peapod.node.images.registry import RegistryClient, RegistryConfig, is_insecure, is_loopback_host
from peapod.testing.images import build_image, busybox_image, make_layer, multi_arch_index

AMD64 = Platform("linux", "amd64")


@pytest.fixture
async def client():
    c = RegistryClient()
    yield c
    await c.close()


def small_image(docker: bool = False, arch: str = "amd64", text: str = "hi"):
    return build_image([make_layer({"/etc/msg": text}, docker=docker)], cmd=["cat", "/etc/msg"],
                       architecture=arch, docker=docker)


@pytest.mark.parametrize("docker", [False, True])
async def test_resolve_by_tag_and_digest(fake_registry, client, docker):
    img = small_image(docker)
    fake_registry.add("app", "v1", img)
    res = await client.resolve(parse_reference(fake_registry.ref("app", "v1")), platform=AMD64)
    assert res.manifest_digest == img.manifest_digest and res.index_digest is None
    assert res.manifest.media_type == (DOCKER_MANIFEST if docker else OCI_MANIFEST)
    by_digest = parse_reference(f"{fake_registry.host}/app@{img.manifest_digest}")
    assert (await client.resolve(by_digest, platform=AMD64)).manifest_body == img.manifest


async def test_index_selects_platform(fake_registry, client):
    amd, arm = small_image(text="amd"), small_image(arch="arm64", text="arm")
    index = multi_arch_index([arm, amd], docker=True)
    fake_registry.add("multi", "latest", index)
    ref = parse_reference(fake_registry.ref("multi"))
    res = await client.resolve(ref, platform=AMD64)
    assert res.manifest_digest == amd.manifest_digest and res.index_digest == index.digest
    assert res.repo_digest == index.digest
    res = await client.resolve(ref, platform=Platform("linux", "arm64", "v8"))
    assert res.manifest_digest == arm.manifest_digest


async def test_lying_registry_manifest_digest(fake_registry, client):
    img, other = small_image(text="a"), small_image(text="b")
    fake_registry.add("app", "v1", img)
    fake_registry.manifests[("app", img.manifest_digest)] = (other.manifest, OCI_MANIFEST)
    with pytest.raises(DigestMismatchError):
        await client.resolve(parse_reference(f"{fake_registry.host}/app@{img.manifest_digest}"))


async def test_corrupt_blob_is_not_stored(fake_registry, client, tmp_path):
    img = small_image()
    fake_registry.add("app", "v1", img)
    layer = img.layers[0]
    fake_registry.corrupt_blobs.add(layer.digest)
    store = ContentStore(tmp_path)
    res = await client.resolve(parse_reference(fake_registry.ref("app", "v1")), platform=AMD64)
    with pytest.raises(DigestMismatchError):
        await client.fetch_blob(parse_reference(fake_registry.ref("app", "v1")), res.manifest.layers[0],
                                lambda: store.writer(layer.digest, len(layer.blob)))
    assert not store.has(layer.digest) and list(store.digests()) == []


async def test_not_found_message_carries_registry_error(fake_registry, client):
    with pytest.raises(RegistryError) as info:
        await client.resolve(parse_reference(fake_registry.ref("nope", "v9")))
    assert info.value.status == 404 and info.value.is_not_found
    assert str(info.value) == "404 Not Found: manifest unknown (MANIFEST_UNKNOWN)"


async def test_bearer_token_flow_and_cache(fake_registry, client, tmp_path):
    fake_registry.auth, fake_registry.users = "bearer", {"alice": "pw"}
    img = small_image()
    fake_registry.add("team/app", "v1", img)
    ref = parse_reference(fake_registry.ref("team/app", "v1"))
    creds = Credentials("alice", "pw")
    res = await client.resolve(ref, creds=creds, platform=AMD64)
    store = ContentStore(tmp_path)
    await client.fetch_blob_bytes(ref, res.manifest.config, creds=creds)
    await client.fetch_blob(ref, res.manifest.layers[0], lambda: store.writer(img.layers[0].digest),
                            creds=creds)
    assert fake_registry.token_requests == [
        {"user": "alice", "scope": "repository:team/app:pull", "service": "fake-registry"}]
    authed = [r["auth"] for r in fake_registry.requests if r["auth"]]
    assert authed and all(a == "Bearer tok-alice" for a in authed)


async def test_bearer_without_credentials_fails_with_token_error(fake_registry, client):
    fake_registry.auth, fake_registry.users = "bearer", {"alice": "pw"}
    fake_registry.add("app", "v1", small_image())
    with pytest.raises(RegistryError, match="token request failed: 401"):
        await client.resolve(parse_reference(fake_registry.ref("app", "v1")))


async def test_basic_auth(fake_registry, client):
    fake_registry.auth, fake_registry.users = "basic", {"bob": "secret"}
    fake_registry.add("app", "v1", small_image())
    ref = parse_reference(fake_registry.ref("app", "v1"))
    with pytest.raises(RegistryError) as info:
        await client.resolve(ref, creds=Credentials("bob", "wrong"))
    assert info.value.status == 401 and "authentication required" in str(info.value)
    res = await client.resolve(ref, creds=Credentials("bob", "secret"), platform=AMD64)
    assert res.manifest_digest


async def test_redirect_does_not_leak_credentials(fake_registry, client, tmp_path):
    fake_registry.auth, fake_registry.users = "basic", {"bob": "secret"}
    fake_registry.redirect_blobs = True
    img = small_image()
    fake_registry.add("app", "v1", img)
    ref = parse_reference(fake_registry.ref("app", "v1"))
    creds = Credentials("bob", "secret")
    res = await client.resolve(ref, creds=creds, platform=AMD64)
    store = ContentStore(tmp_path)
    await client.fetch_blob(ref, res.manifest.layers[0], lambda: store.writer(img.layers[0].digest),
                            creds=creds)
    assert store.read(img.layers[0].digest) == img.layers[0].blob
    storage = [r for r in fake_registry.requests if r["path"].startswith("/storage/")]
    assert storage and all(r["auth"] is None for r in storage)


async def test_server_errors_are_retried_then_reported(fake_registry, tmp_path):
    img = small_image()
    fake_registry.add("app", "v1", img)
    fake_registry.fail_status["/blobs/"] = 503
    store = ContentStore(tmp_path)
    async with RegistryClient(config=RegistryConfig(retries=2)) as client:
        res = await client.resolve(parse_reference(fake_registry.ref("app", "v1")), platform=AMD64)
        with pytest.raises(RegistryError, match="injected failure 503"):
            await client.fetch_blob(parse_reference(fake_registry.ref("app", "v1")), res.manifest.layers[0],
                                    lambda: store.writer(img.layers[0].digest))
    blob_gets = [r for r in fake_registry.requests if "/blobs/" in r["path"]]
    assert len(blob_gets) == 2


async def test_push_blob_and_manifest(fake_registry, client):
    img = busybox_image(extra_files={"/hello": "world"})
    ref = parse_reference(fake_registry.ref("pushed", "v2"))
    for digest, data in img.blobs().items():
        if digest != img.manifest_digest:
            await client.push_blob(ref, digest, len(data), data)
    assert await client.push_manifest(ref, img.manifest, img.media_type) == img.manifest_digest
    assert fake_registry.manifests[("pushed", "v2")][0] == img.manifest
    assert fake_registry.blobs[img.layers[1].digest] == img.layers[1].blob
    posts = len([r for r in fake_registry.requests if r["method"] == "POST"])
    await client.push_blob(ref, img.config_digest, len(img.config), img.config)  # exists: HEAD only
    assert len([r for r in fake_registry.requests if r["method"] == "POST"]) == posts


@pytest.mark.parametrize(
    ("host", "insecure"),
    [("localhost:5000", True), ("127.0.0.1", True), ("127.9.9.9:80", True), ("[::1]:5000", True),
     ("registry.localhost", True), ("10.1.2.3:5000", False), ("example.com", False),
     ("localhost.example.com", False)],
)
def test_plain_http_only_for_loopback(host, insecure):
    assert is_loopback_host(host) is insecure
    assert is_insecure(host, RegistryConfig()) is insecure


def test_insecure_list_by_name_and_cidr():
    cfg = RegistryConfig(insecure_registries=("10.0.0.0/8", "myreg.lan:5000"))
    assert is_insecure("10.1.2.3:5000", cfg) and is_insecure("myreg.lan:5000", cfg)
    assert not is_insecure("11.0.0.1", cfg) and not is_insecure("other.lan", cfg)
