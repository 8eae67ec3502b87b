import json

import pytest

from peapod.node.images import manifest as m
from peapod.node.images.errors import UnsupportedManifestError
from peapod.node.images.manifest import Descriptor, Platform, select_platform


def desc(arch, variant="", os="linux", digest=None, media=m.OCI_MANIFEST):
    return Descriptor(media, digest or f"sha256:{arch}{variant}", 1, Platform(os, arch, variant))


INDEX = [
    desc("arm", "v6"), desc("arm", "v7"), desc("arm64", "v8"), desc("amd64"), desc("ppc64le"),
    desc("unknown", os="unknown", digest="sha256:attestation"),
    desc("amd64", os="windows", digest="sha256:win"),
]


@pytest.mark.parametrize(
    ("want", "digest"),
    [
        (Platform("linux", "amd64"), "sha256:amd64"),
        (Platform("linux", "arm64"), "sha256:arm64v8"),
        (Platform("linux", "arm64", "v8"), "sha256:arm64v8"),
        (Platform("linux", "arm", "v7"), "sha256:armv7"),
        (Platform("linux", "arm", "v6"), "sha256:armv6"),
        (Platform("windows", "amd64"), "sha256:win"),
    ],
)
def test_select_platform(want, digest):
    assert select_platform(INDEX, want).digest == digest


def test_arm64_without_variant_is_v8_and_variant_mismatch_loses():
    novariant = desc("arm64", digest="sha256:novariant")
    assert select_platform([novariant], Platform("linux", "arm64", "v8")).digest == "sha256:novariant"
    entries = [desc("arm", "v5", digest="sha256:v5"), desc("arm", "", digest="sha256:plain"),
               desc("arm", "v7", digest="sha256:v7")]
    assert select_platform(entries, Platform("linux", "arm", "v7")).digest == "sha256:v7"
    assert select_platform(entries[:2], Platform("linux", "arm", "v7")).digest == "sha256:plain"


def test_arm_v7_host_can_run_v6_only_image():
    assert select_platform([desc("arm", "v6")], Platform("linux", "arm", "v7")).digest == "sha256:armv6"
    with pytest.raises(UnsupportedManifestError):
        select_platform([desc("arm", "v7")], Platform("linux", "arm", "v6"))


def test_no_match_lists_available():
    with pytest.raises(UnsupportedManifestError, match="arm64"):
        select_platform([desc("arm64", "v8")], Platform("linux", "amd64"))


def test_attestations_and_foreign_media_types_never_match():
    entries = [desc("unknown", os="unknown", digest="sha256:att")]
    with pytest.raises(UnsupportedManifestError):
        select_platform(entries, Platform("linux", "amd64"))
    entries = [Descriptor("application/vnd.in-toto+json", "sha256:x", 1, Platform("linux", "amd64"))]
    with pytest.raises(UnsupportedManifestError):
        select_platform(entries, Platform("linux", "amd64"))


def test_host_platform_maps_machine(monkeypatch):
    monkeypatch.setattr(m._platform, "machine", lambda: "x86_64")
    assert m.host_platform() == Platform("linux", "amd64", "")
    monkeypatch.setattr(m._platform, "machine", lambda: "aarch64")
    assert m.host_platform() == Platform("linux", "arm64", "v8")
    monkeypatch.setattr(m._platform, "machine", lambda: "armv7l")
    assert m.host_platform() == Platform("linux", "arm", "v7")


def test_media_type_detection():
    assert m.media_type_of(json.dumps({"mediaType": m.DOCKER_LIST}).encode()) == m.DOCKER_LIST
    assert m.media_type_of(b'{"schemaVersion":2,"manifests":[]}') == m.OCI_INDEX
    assert m.media_type_of(b'{"schemaVersion":2,"config":{},"layers":[]}') == m.OCI_MANIFEST
    assert m.media_type_of(b"{}", m.DOCKER_MANIFEST + "; charset=utf-8") == m.DOCKER_MANIFEST
    with pytest.raises(UnsupportedManifestError):
        m.media_type_of(b"not json")


def test_schema1_and_unknown_layers_rejected():
    with pytest.raises(UnsupportedManifestError, match="schema 1"):
        m.parse_image_manifest(b'{"schemaVersion":1}', m.DOCKER_SCHEMA1_SIGNED)
    body = json.dumps({"config": {"mediaType": m.OCI_CONFIG, "digest": "sha256:" + "a" * 64, "size": 2},
                       "layers": [{"mediaType": "application/x-weird", "digest": "sha256:" + "b" * 64,
                                   "size": 3}]}).encode()
    with pytest.raises(UnsupportedManifestError, match="layer media type"):
        m.parse_image_manifest(body, m.OCI_MANIFEST)
