"""Reading image archives for ``load``: OCI image layouts (directory or tar) and ``docker save`` tars.

Nothing here trusts the archive: every blob read through :meth:`Archive.open_blob` is verified by the
content store when it is imported, and layer contents go through the same safe unpacker as pulls.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .content import digest_bytes, split_digest
from .errors import ImageError, InvalidReferenceError
from .manifest import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    INDEXES,
    Descriptor,
    ImageManifest,
    Platform,
    host_platform,
    media_type_of,
    parse_image_manifest,
    parse_index,
    select_platform,
)
from .reference import parse_reference

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
_MAX_JSON = 32 << 20


@dataclass
class ArchiveImage:
    names: list[str]
    manifest_body: bytes
    manifest: ImageManifest
    config_body: bytes
    digest: str


class Archive:
    """Random access to the files of an archive (a directory or a tar)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._tar: tarfile.TarFile | None = None
        self.layer_paths: dict[str, str] = {}
        """docker-archive layers: digest -> path inside the archive."""
        if self.path.is_dir():
            return
        try:
            self._tar = tarfile.open(self.path, "r:*")
        except (tarfile.TarError, OSError) as exc:
            raise ImageError(f"{path}: not an image archive: {exc}") from exc

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def exists(self, name: str) -> bool:
        if self._tar is None:
            return (self.path / name).is_file()
        try:
            self._tar.getmember(name)
            return True
        except KeyError:
            return False

    def open(self, name: str) -> BinaryIO:
        name = name.lstrip("/")
        if ".." in name.split("/"):
            raise ImageError(f"archive path {name!r} escapes the archive")
        if self._tar is None:
            path = self.path / name
            if not path.resolve().is_relative_to(self.path.resolve()):
                raise ImageError(f"archive path {name!r} escapes the archive")
            return open(path, "rb")
        try:
            fh = self._tar.extractfile(name)
        except KeyError as exc:
            raise ImageError(f"archive has no {name!r}") from exc
        if fh is None:
            raise ImageError(f"archive member {name!r} is not a file")
        return fh  # type: ignore[return-value]

    def read(self, name: str, limit: int = _MAX_JSON) -> bytes:
        with self.open(name) as fh:
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise ImageError(f"archive member {name!r} is too large")
        return data

    def open_blob(self, digest: str) -> BinaryIO:
        alg, hexpart = split_digest(digest)
        return self.open(f"blobs/{alg}/{hexpart}")

    def open_layer(self, digest: str) -> BinaryIO:
        """Open a layer blob of either archive format."""
        if digest in self.layer_paths:
            return self.open(self.layer_paths[digest])
        return self.open_blob(digest)

    def read_blob(self, digest: str) -> bytes:
        data = self.read("blobs/{}/{}".format(*split_digest(digest)))
        if digest_bytes(data, digest.split(":", 1)[0]) != digest:
            raise ImageError(f"archive blob {digest} does not match its digest")
        return data


def _names(annotations: dict[str, str] | None, name: str | None) -> list[str]:
    ann = annotations or {}
    full = ann.get(ANNOTATION_CONTAINERD_NAME)
    if full:
        return [str(parse_reference(full))]
    ref_name = ann.get(ANNOTATION_REF_NAME)
    if ref_name:
        if "/" in ref_name or (":" in ref_name and not ref_name.startswith(":")):
            try:
                return [str(parse_reference(ref_name))]
            except InvalidReferenceError:
                pass
        if name:  # a bare tag: name the repository the caller gave
            return [str(parse_reference(name).with_tag(ref_name))]
        return []
    return [str(parse_reference(name))] if name else []


def read_oci_layout(archive: Archive, *, name: str | None = None,
                    platform: Platform | None = None) -> list[ArchiveImage]:
    """Images of an OCI layout: index entries (nested indexes resolved for ``platform``)."""
    want = platform or host_platform()
    index = json.loads(archive.read("index.json"))
    descs = [Descriptor.from_json(d) for d in index.get("manifests") or []]
    flat = [d for d in descs if d.media_type in INDEXES or d.platform is None
            or (d.platform.os == want.os and d.platform.architecture == want.architecture)]
    out: list[ArchiveImage] = []
    for desc in flat:
        names = _names(desc.annotations, name)
        body = archive.read_blob(desc.digest)
        media_type = media_type_of(body, desc.media_type)
        digest = desc.digest
        for _ in range(3):
            if media_type not in INDEXES:
                break
            chosen = select_platform(parse_index(body), want)
            body = archive.read_blob(chosen.digest)
            media_type = media_type_of(body, chosen.media_type)
            digest = chosen.digest
        manifest = parse_image_manifest(body, media_type)
        config = archive.read_blob(manifest.config.digest)
        out.append(ArchiveImage(names, body, manifest, config, digest))
    if not out:
        raise ImageError(f"{archive.path}: no image for {want} in the OCI layout")
    return out


def read_docker_archive(archive: Archive, *, name: str | None = None) -> list[ArchiveImage]:
    """``docker save`` format: ``manifest.json`` lists config and layer tar paths; we synthesize a
    Docker v2 manifest (layer digests are computed from the layer files)."""
    entries = json.loads(archive.read("manifest.json"))
    out: list[ArchiveImage] = []
    for entry in entries:
        config = archive.read(entry["Config"])
        config_desc = Descriptor(DOCKER_CONFIG, digest_bytes(config), len(config))
        layers = [_describe_layer(archive, p) for p in entry.get("Layers") or []]
        manifest_obj = {
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": config_desc.to_json(),
            "layers": [d.to_json() for d in layers],
        }
        body = json.dumps(manifest_obj, separators=(",", ":")).encode()
        names = [str(parse_reference(t)) for t in entry.get("RepoTags") or []]
        if not names and name:
            names = [str(parse_reference(name))]
        out.append(ArchiveImage(names, body, parse_image_manifest(body, DOCKER_MANIFEST), config,
                                digest_bytes(body)))
    return out


def _describe_layer(archive: Archive, path: str) -> Descriptor:
    hasher = hashlib.sha256()
    size = 0
    with archive.open(path) as fh:
        head = fh.read(2)
        hasher.update(head)
        size += len(head)
        while chunk := fh.read(1 << 20):
            hasher.update(chunk)
            size += len(chunk)
    digest = f"sha256:{hasher.hexdigest()}"
    archive.layer_paths[digest] = path
    media = DOCKER_LAYER_GZIP if head == b"\x1f\x8b" else DOCKER_LAYER
    return Descriptor(media, digest, size)


def read_archive(path: Path, *, name: str | None = None,
                 platform: Platform | None = None) -> tuple[Archive, list[ArchiveImage]]:
    """Open ``path`` and list its images; the caller closes the returned :class:`Archive`."""
    archive = Archive(path)
    try:
        if archive.exists("index.json") and archive.exists("oci-layout"):
            return archive, read_oci_layout(archive, name=name, platform=platform)
        if archive.exists("manifest.json"):
            return archive, read_docker_archive(archive, name=name)
        raise ImageError(f"{path}: neither an OCI layout nor a docker-archive tar")
    except BaseException:
        archive.close()
        raise
