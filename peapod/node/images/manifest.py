"""Manifest media types, parsing, and platform selection from manifest lists / OCI indexes."""

from __future__ import annotations

import json
import platform as _platform
from dataclasses import dataclass
from typing import Any

from .errors import UnsupportedManifestError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

IMAGE_MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join((*IMAGE_MANIFESTS, *INDEXES))
LAYER_TYPES = (
    OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, OCI_LAYER_NONDIST_GZIP, DOCKER_LAYER, DOCKER_LAYER_GZIP,
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
)

_GOARCH = {
    "x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
    "armv6l": "arm", "i386": "386", "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x",
    "riscv64": "riscv64", "loongarch64": "loong64", "mips64": "mips64le",
}
_VARIANT = {"armv7l": "v7", "armv6l": "v6", "aarch64": "v8", "arm64": "v8"}


@dataclass(frozen=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def host_platform() -> Platform:
    """This node's platform in Go terms: ``platform.machine()`` mapped to GOARCH."""
    machine = _platform.machine().lower()
    arch = _GOARCH.get(machine, machine)
    return Platform("linux", arch, _VARIANT.get(machine, ""))


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] | None = None
    urls: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Descriptor:
        try:
            plat = obj.get("platform")
            return cls(
                media_type=str(obj.get("mediaType", "")),
                digest=str(obj["digest"]),
                size=int(obj.get("size", -1)),
                platform=(
                    Platform(str(plat.get("os", "")), str(plat.get("architecture", "")),
                             str(plat.get("variant", "")))
                    if isinstance(plat, dict) else None
                ),
                annotations=dict(obj.get("annotations") or {}) or None,
                urls=tuple(obj.get("urls") or ()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UnsupportedManifestError(f"malformed descriptor: {exc}") from exc

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            p: dict[str, str] = {"architecture": self.platform.architecture, "os": self.platform.os}
            if self.platform.variant:
                p["variant"] = self.platform.variant
            out["platform"] = p
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True)
class ImageManifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


def media_type_of(body: bytes, header_type: str = "") -> str:
    """The manifest's media type: its own ``mediaType`` field, else the Content-Type header."""
    try:
        obj = json.loads(body)
    except ValueError as exc:
        raise UnsupportedManifestError(f"manifest is not JSON: {exc}") from exc
    mt = obj.get("mediaType") if isinstance(obj, dict) else None
    if mt:
        return str(mt)
    header_type = header_type.split(";")[0].strip()
    if header_type in (*IMAGE_MANIFESTS, *INDEXES):
        return header_type
    if isinstance(obj, dict):  # OCI allows omitting mediaType; guess from the shape
        if "manifests" in obj:
            return OCI_INDEX
        if "config" in obj and "layers" in obj:
            return OCI_MANIFEST
        if obj.get("schemaVersion") == 1:
            return DOCKER_SCHEMA1
    return header_type


def parse_image_manifest(body: bytes, media_type: str) -> ImageManifest:
    if media_type in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED):
        raise UnsupportedManifestError("Docker image manifest schema 1 is not supported")
    if media_type not in IMAGE_MANIFESTS:
        raise UnsupportedManifestError(f"unsupported manifest media type {media_type!r}")
    obj = json.loads(body)
    try:
        layers = tuple(Descriptor.from_json(d) for d in obj.get("layers") or ())
        config = Descriptor.from_json(obj["config"])
    except (KeyError, TypeError) as exc:
        raise UnsupportedManifestError(f"malformed image manifest: {exc}") from exc
    for layer in layers:
        if layer.media_type not in LAYER_TYPES:
            raise UnsupportedManifestError(f"unsupported layer media type {layer.media_type!r}")
    return ImageManifest(media_type=media_type, config=config, layers=layers)


def parse_index(body: bytes) -> list[Descriptor]:
    obj = json.loads(body)
    try:
        return [Descriptor.from_json(d) for d in obj.get("manifests") or ()]
    except (AttributeError, TypeError) as exc:
        raise UnsupportedManifestError(f"malformed image index: {exc}") from exc


def select_platform(manifests: list[Descriptor], want: Platform) -> Descriptor:
    """Pick the best manifest for ``want`` like containerd's platform matcher.

    The os and architecture must match; a matching variant beats a missing one, and for arm64 a
    missing variant is taken as v8. Entries without a platform match only when nothing else does
    and there is exactly one (single-image OCI layouts). Attestation entries (``unknown/unknown``)
    never match.
    """
    best: Descriptor | None = None
    best_score = -1
    for desc in manifests:
        if desc.media_type and desc.media_type not in (*IMAGE_MANIFESTS, *INDEXES):
            continue
        p = desc.platform
        if p is None:
            continue
        if p.os != want.os or p.architecture != want.architecture:
            continue
        variant = p.variant or ("v8" if p.architecture == "arm64" else "")
        wanted = want.variant or ("v8" if want.architecture == "arm64" else "")
        if variant == wanted:
            score = 2
        elif not variant:
            score = 1
        elif want.architecture == "arm" and _arm_compatible(variant, wanted):
            score = 0
        else:
            continue
        if score > best_score:
            best, best_score = desc, score
    if best is not None:
        return best
    unplatformed = [d for d in manifests if d.platform is None]
    if len(unplatformed) == 1 and len(manifests) == 1:
        return unplatformed[0]
    available = ", ".join(str(d.platform) for d in manifests if d.platform) or "none"
    raise UnsupportedManifestError(f"no matching manifest for {want} in the manifest list entries "
                                   f"(available: {available})")


def _arm_compatible(have: str, want: str) -> bool:
    """An arm v7 host can run v6 and v5 images."""
    order = ["v5", "v6", "v7", "v8"]
    try:
        return order.index(have) <= order.index(want)
    except ValueError:
        return False
