"""Build OCI test images locally, without downloading anything.

The base image is BusyBox from Debian's ``busybox-static`` (``/bin/busybox``, applet symlinks from
``busybox --list-full``, ``/etc/passwd`` and ``/etc/group`` with root, a user 1000 and nobody 65534,
and ``/tmp``). Images are deterministic (fixed mtimes, sorted entries, gzip without timestamps), so the
same inputs always give the same digests.

Typical use in an end-to-end test::

    image = busybox_image(cmd=["sh", "-c", "echo hi"], extra_files={"/etc/motd": "hello\\n"})
    async with LoopbackRegistry() as reg:                     # peapod.testing.registry
        await push_image(reg.ref("app", "v1"), image)          # now pullable as reg.ref("app", "v1")
    write_oci_layout(tmp_path / "layout", {"app:v1": image})  # or load it from disk

Everything returned is plain bytes plus digests; :meth:`BuiltImage.blobs` gives every blob.
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from peapod.node.images.auth import Credentials
from peapod.node.images.content import digest_bytes
from peapod.node.images.manifest import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
)
from peapod.node.images.reference import parse_reference
from peapod.node.images.registry import RegistryClient, RegistryConfig

BUSYBOX = Path("/bin/busybox")
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MTIME = 1_700_000_000  # a fixed timestamp keeps digests stable
PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "user:x:1000:1000:user:/home/user:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = "root:x:0:\nuser:x:1000:\nnobody:x:65534:\n"

Compression = Literal["gzip", "zstd", "none"]


@dataclass(frozen=True)
class Entry:
    """One tar entry. Use the helpers :func:`file`, :func:`directory`, :func:`symlink`, :func:`hardlink`."""

    kind: Literal["file", "dir", "symlink", "hardlink"] = "file"
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    target: str = ""


def file(data: bytes | str, *, mode: int = 0o644, uid: int = 0, gid: int = 0) -> Entry:
    return Entry("file", data.encode() if isinstance(data, str) else data, mode, uid, gid)


def directory(*, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
    return Entry("dir", b"", mode, uid, gid)


def symlink(target: str) -> Entry:
    return Entry("symlink", b"", 0o777, target=target)


def hardlink(target: str) -> Entry:
    return Entry("hardlink", b"", 0o644, target=target)


@dataclass(frozen=True)
class Layer:
    tar: bytes
    """The uncompressed tar (its sha256 is the diff_id)."""
    blob: bytes
    """What is stored in the registry (compressed unless ``compression="none"``)."""
    media_type: str
    digest: str
    diff_id: str

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.blob)}


@dataclass(frozen=True)
class BuiltImage:
    manifest: bytes
    manifest_digest: str
    media_type: str
    config: bytes
    config_digest: str
    layers: tuple[Layer, ...]
    platform: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """The image id the node will report: the config digest."""
        return self.config_digest

    def blobs(self) -> dict[str, bytes]:
        out = {self.config_digest: self.config, self.manifest_digest: self.manifest}
        out.update({layer.digest: layer.blob for layer in self.layers})
        return out

    def descriptor(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.manifest_digest,
                             "size": len(self.manifest)}
        if self.platform:
            d["platform"] = dict(self.platform)
        return d


@dataclass(frozen=True)
class BuiltIndex:
    index: bytes
    digest: str
    media_type: str
    images: tuple[BuiltImage, ...]

    def blobs(self) -> dict[str, bytes]:
        out = {self.digest: self.index}
        for img in self.images:
            out.update(img.blobs())
        return out

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.index)}


def _parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def tar_bytes(entries: Mapping[str, Entry | bytes | str]) -> bytes:
    """A deterministic tar from ``{path: entry}``; missing parent directories are added (0755)."""
    norm: dict[str, Entry] = {}
    for path, entry in entries.items():
        p = path.strip("/")
        norm[p] = entry if isinstance(entry, Entry) else file(entry)
    for p in list(norm):
        for parent in _parents(p):
            norm.setdefault(parent, directory())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        order = {"dir": 0, "file": 1, "symlink": 1, "hardlink": 2}  # link targets before hardlinks
        for p in sorted(norm, key=lambda x: (order[norm[x].kind], x.count("/") if norm[x].kind == "dir"
                                             else 0, x)):
            e = norm[p]
            info = tarfile.TarInfo(p)
            info.mtime, info.uid, info.gid, info.mode = MTIME, e.uid, e.gid, e.mode
            info.uname = info.gname = ""
            if e.kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif e.kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, e.target
                tar.addfile(info)
            elif e.kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, e.target.strip("/")
                tar.addfile(info)
            else:
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
    return buf.getvalue()


def layer_from_tar(tar: bytes, *, compression: Compression = "gzip", docker: bool = False) -> Layer:
    if compression == "gzip":
        blob = gzip.compress(tar, mtime=0)
        media = DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP
    elif compression == "zstd":
        import zstandard

        blob = zstandard.ZstdCompressor().compress(tar)
        media = OCI_LAYER_ZSTD
    else:
        blob, media = tar, OCI_LAYER
    return Layer(tar=tar, blob=blob, media_type=media, digest=digest_bytes(blob), diff_id=digest_bytes(tar))


def make_layer(entries: Mapping[str, Entry | bytes | str], *, compression: Compression = "gzip",
               docker: bool = False) -> Layer:
    """A layer holding ``entries`` (paths may start with ``/``)."""
    return layer_from_tar(tar_bytes(entries), compression=compression, docker=docker)


@functools.cache
def _busybox_entries() -> tuple[tuple[str, Entry], ...]:
    if not BUSYBOX.exists():
        raise RuntimeError("/bin/busybox is missing: apt-get install busybox-static")
    out: dict[str, Entry] = {
        "bin/busybox": file(BUSYBOX.read_bytes(), mode=0o755),
        "etc/passwd": file(PASSWD),
        "etc/group": file(GROUP),
        "tmp": directory(mode=0o1777),
        "root": directory(mode=0o700),
        "home/user": directory(mode=0o755, uid=1000, gid=1000),
        "dev": directory(), "proc": directory(), "sys": directory(), "var": directory(),
        "etc/hostname": file(""), "etc/hosts": file(""), "etc/resolv.conf": file(""),
    }
    listing = subprocess.run([str(BUSYBOX), "--list-full"], capture_output=True, text=True, check=True)
    for applet in listing.stdout.split():
        if applet and applet != "bin/busybox":
            out[applet] = symlink("/bin/busybox")
    return tuple(out.items())


@functools.cache
def busybox_layer(compression: Compression = "gzip") -> Layer:
    """The BusyBox base layer (built once per process)."""
    return make_layer(dict(_busybox_entries()), compression=compression)


def build_image(layers: list[Layer] | tuple[Layer, ...], *, entrypoint: list[str] | None = None,
                cmd: list[str] | None = None, env: list[str] | None = None, working_dir: str = "",
                user: str = "", stop_signal: str = "", exposed_ports: list[str] | tuple[str, ...] = (),
                labels: dict[str, str] | None = None, volumes: list[str] | tuple[str, ...] = (),
                os_name: str = "linux", architecture: str = "amd64", variant: str = "",
                docker: bool = False) -> BuiltImage:
    """An image manifest + config over ``layers`` (OCI media types, or Docker schema 2)."""
    cfg: dict[str, Any] = {"Env": env if env is not None else [DEFAULT_PATH]}
    if entrypoint is not None:
        cfg["Entrypoint"] = entrypoint
    if cmd is not None:
        cfg["Cmd"] = cmd
    if working_dir:
        cfg["WorkingDir"] = working_dir
    if user:
        cfg["User"] = user
    if stop_signal:
        cfg["StopSignal"] = stop_signal
    if exposed_ports:
        cfg["ExposedPorts"] = {p: {} for p in exposed_ports}
    if labels:
        cfg["Labels"] = dict(labels)
    if volumes:
        cfg["Volumes"] = {v: {} for v in volumes}
    config_obj: dict[str, Any] = {
        "architecture": architecture, "os": os_name, "created": "2023-11-14T22:13:20Z", "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "peapod.testing.images"}
                    for _ in layers],
    }
    if variant:
        config_obj["variant"] = variant
    config = json.dumps(config_obj, sort_keys=True, separators=(",", ":")).encode()
    config_digest = digest_bytes(config)
    media = DOCKER_MANIFEST if docker else "application/vnd.oci.image.manifest.v1+json"
    manifest_obj = {
        "schemaVersion": 2, "mediaType": media,
        "config": {"mediaType": DOCKER_CONFIG if docker else OCI_CONFIG, "digest": config_digest,
                   "size": len(config)},
        "layers": [layer.descriptor() for layer in layers],
    }
    manifest = json.dumps(manifest_obj, sort_keys=True, separators=(",", ":")).encode()
    platform = {"architecture": architecture, "os": os_name}
    if variant:
        platform["variant"] = variant
    return BuiltImage(manifest=manifest, manifest_digest=digest_bytes(manifest), media_type=media,
                      config=config, config_digest=config_digest, layers=tuple(layers), platform=platform)


def busybox_image(*, extra_files: Mapping[str, Entry | bytes | str] | None = None,
                  cmd: list[str] | None = None, compression: Compression = "gzip",
                  **config: Any) -> BuiltImage:
    """BusyBox, plus an optional second layer with ``extra_files``; ``config`` goes to
    :func:`build_image` (entrypoint, env, user, working_dir, stop_signal, labels, architecture...)."""
    layers = [busybox_layer(compression)]
    if extra_files:
        layers.append(make_layer(extra_files, compression=compression))
    return build_image(layers, cmd=cmd if cmd is not None else ["sh"], **config)


def multi_arch_index(images: list[BuiltImage] | tuple[BuiltImage, ...], *, docker: bool = False,
                     extra: list[dict[str, Any]] | None = None) -> BuiltIndex:
    """A manifest list (``docker=True``) or OCI index over ``images`` (each carries its platform).
    ``extra`` descriptors (e.g. attestation manifests) are appended verbatim."""
    media = DOCKER_LIST if docker else OCI_INDEX
    obj = {"schemaVersion": 2, "mediaType": media,
           "manifests": [img.descriptor() for img in images] + list(extra or [])}
    body = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return BuiltIndex(index=body, digest=digest_bytes(body), media_type=media, images=tuple(images))


def write_oci_layout(path: Path, images: Mapping[str, BuiltImage | BuiltIndex]) -> Path:
    """Write an OCI image layout directory. Keys are names for ``org.opencontainers.image.ref.name``
    (``"v1"`` or a full reference like ``"localhost/app:v1"``)."""
    path = Path(path)
    (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    manifests = []
    for name, item in images.items():
        for digest, data in item.blobs().items():
            (path / "blobs" / "sha256" / digest.split(":", 1)[1]).write_bytes(data)
        desc = item.descriptor()
        desc["annotations"] = {"org.opencontainers.image.ref.name": name}
        manifests.append(desc)
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                 "manifests": manifests}))
    return path


def write_tar_of_dir(src: Path, dest: Path) -> Path:
    """Pack a directory (an OCI layout) into a tar, entries relative to the directory."""
    with tarfile.open(dest, "w") as tar:
        for root, dirs, files in os.walk(src):
            dirs.sort()
            for name in sorted(files):
                full = Path(root) / name
                tar.add(full, arcname=str(full.relative_to(src)))
    return dest


def write_docker_archive(path: Path, image: BuiltImage, repo_tags: list[str]) -> Path:
    """A ``docker save``-style tar (uncompressed layer tars, ``manifest.json``)."""
    buf_dir = Path(str(path) + ".d")
    buf_dir.mkdir(parents=True, exist_ok=True)
    try:
        cfg_name = image.config_digest.split(":", 1)[1] + ".json"
        (buf_dir / cfg_name).write_bytes(image.config)
        layer_names = []
        for layer in image.layers:
            name = f"{layer.diff_id.split(':', 1)[1]}/layer.tar"
            (buf_dir / name).parent.mkdir(exist_ok=True)
            (buf_dir / name).write_bytes(layer.tar)
            layer_names.append(name)
        (buf_dir / "manifest.json").write_text(json.dumps(
            [{"Config": cfg_name, "RepoTags": repo_tags, "Layers": layer_names}]))
        return write_tar_of_dir(buf_dir, Path(path))
    finally:
        shutil.rmtree(buf_dir, ignore_errors=True)


async def push_image(ref: str, item: BuiltImage | BuiltIndex, *, creds: Credentials | None = None,
                     client: RegistryClient | None = None) -> str:
    """Push ``item`` to ``ref`` (e.g. ``LoopbackRegistry.ref("app", "v1")``); returns its digest."""
    target = parse_reference(ref)
    own = client is None
    client = client or RegistryClient(config=RegistryConfig())
    try:
        images = item.images if isinstance(item, BuiltIndex) else (item,)
        for img in images:
            for blob_digest, data in img.blobs().items():
                if blob_digest != img.manifest_digest:
                    await client.push_blob(target, blob_digest, len(data), data, creds=creds)
            if isinstance(item, BuiltIndex):
                await client.push_manifest(target.with_digest(img.manifest_digest), img.manifest,
                                           img.media_type, creds=creds)
        if isinstance(item, BuiltIndex):
            return await client.push_manifest(target, item.index, item.media_type, creds=creds)
        return await client.push_manifest(target, item.manifest, item.media_type, creds=creds)
    finally:
        if own:
            await client.close()
