"""Where a build keeps its things: ``DATA/build/`` (the node agent's store is never written here).

``images/`` is an :class:`OciImageService` of its own holding base images and every step's layer
(unpacked, so the next step can mount it), ``cache.json`` the layer cache, ``state/`` the RUN
containers' runtime state. Base images are found in the node's store ``DATA/node/images`` first
(read only: its blobs are immutable once visible), then here, then pulled from their registry.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peapod.node.images import Image, OciImageService, RegistryConfig, UnpackOptions
from peapod.node.images.content import split_digest
from peapod.node.images.manifest import OCI_INDEX
from peapod.node.images.model import ImageIndex

from .cache import BuildCache


def _blob_path(root: Path, digest: str) -> Path:
    alg, hexpart = split_digest(digest)
    return root / "content" / "blobs" / alg / hexpart


class NodeImages:
    """Read-only view of the node's image store (the agent may be running and owns it)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.index = ImageIndex(self.root / "images.json") if (self.root / "images.json").exists() else None

    def get(self, ref: str) -> Image | None:
        if self.index is None:
            return None
        return OciImageService.get(self, ref)  # type: ignore[arg-type]  # only reads self.index

    def blob(self, digest: str) -> Path:
        return _blob_path(self.root, digest)


def link_or_copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        return
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def write_layout(dest: Path, blobs: dict[str, Path], manifest_desc: dict[str, Any],
                 names: list[str]) -> Path:
    """An OCI image layout at ``dest`` holding one image (listed once per name, for its tags)."""
    for digest, src in blobs.items():
        alg, hexpart = split_digest(digest)
        link_or_copy(src, dest / "blobs" / alg / hexpart)
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    manifests = []
    for name in names or [""]:
        desc = dict(manifest_desc)
        if name:
            desc["annotations"] = {"io.containerd.image.name": name,
                                   "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1]}
        manifests.append(desc)
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                 "manifests": manifests}))
    return dest


@dataclass
class BuildStore:
    work_dir: Path
    node_images: Path
    registry_config: RegistryConfig

    def __post_init__(self) -> None:
        self.work_dir = Path(self.work_dir)
        self.images = OciImageService(self.work_dir / "images", registry_config=self.registry_config,
                                      unpack_options=UnpackOptions(allow_setid=True, allow_devices=True))
        self.cache = BuildCache(self.work_dir / "cache.json")
        self.tmp = self.work_dir / "tmp"
        shutil.rmtree(self.tmp, ignore_errors=True)  # leftovers of an interrupted build
        self.tmp.mkdir(parents=True, exist_ok=True)
        for leftover in list(self.images.rootfs.in_use()):
            with contextlib.suppress(Exception):
                self.images.rootfs.release(leftover)

    async def close(self) -> None:
        await self.images.close()

    async def base_image(self, ref: str, *, say: Callable[[str], None],
                         progress: Callable[[dict[str, Any]], None] | None = None) -> Image:
        """``ref`` in the build store: copied from the node's store, already here, or pulled."""
        node = NodeImages(self.node_images)
        found = node.get(ref)
        if found is not None:
            have = self.images.get(found.id)
            if have is not None and self.images.content.has(found.digest):
                return have
            layout = self.tmp / f"base-{found.id.split(':', 1)[1][:16]}"
            blobs = {d: node.blob(d) for d in (found.digest, found.id, *found.layer_digests)}
            desc = {"mediaType": found.manifest_media_type, "digest": found.digest,
                    "size": node.blob(found.digest).stat().st_size}
            try:
                write_layout(layout, blobs, desc, [])
                loaded = await self.images.load(layout)
            finally:
                shutil.rmtree(layout, ignore_errors=True)
            return loaded[0]
        have = self.images.get(ref)
        if have is not None:
            return have
        say(f"Trying to pull {ref}...")
        return await self.images.pull(ref, progress=progress)
