"""The node's image service: pull, store, unpack, mount and collect OCI images.

On-disk layout under ``root`` (every update is write-to-temp + rename, so a crash never leaves a
half image visible)::

    content/blobs/sha256/<hex>   verified manifests, configs and layer blobs
    layers/<chain-hex>/diff      unpacked layers (overlayfs lower dirs), shared by chain ID
    l/<short>                    short links to layer diffs (keeps overlay mount options short)
    containers/<id>/             per-container upper/work/merged + rootfs.json
    images.json                  the image index (id -> Image)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from .archive import ArchiveImage, read_archive
from .auth import Credentials, credentials_for
from .content import ContentStore
from .errors import (
    ImageError,
    ImageInUseError,
    ImageNeverPullError,
    ImageNotFoundError,
    ImagePullError,
    InvalidReferenceError,
    RegistryError,
)
from .layers import LayerStore, chain_ids
from .manifest import ImageManifest, Platform, host_platform
from .model import Image, ImageConfig, ImageIndex
from .reference import Reference, is_image_id, parse_reference
from .registry import ProgressFn, RegistryClient, RegistryConfig
from .rootfs import RootfsManager
from .unpack import UnpackOptions

PullPolicy = Literal["Always", "IfNotPresent", "Never"]


@dataclass
class PruneResult:
    images_removed: list[str] = field(default_factory=list)
    layers_removed: list[str] = field(default_factory=list)
    blobs_removed: list[str] = field(default_factory=list)


@runtime_checkable
class ImageService(Protocol):
    """What the node agent needs from images. Real: :class:`OciImageService`; fake:
    :class:`peapod.testing.fakes_images.FakeImageService`."""

    async def pull(self, ref: str, *, auth: Any = None, progress: ProgressFn | None = None) -> Image:
        """Pull ``ref`` (tag or digest). Raises ImagePullError (message has the registry's error)."""

    def get(self, ref: str) -> Image | None:
        """A local image by name (``busybox``, ``x@sha256:..``) or id (``sha256:<hex>``, prefix)."""

    def list(self) -> list[Image]: ...

    async def remove(self, ref: str) -> None:
        """Untag ``ref`` or remove the image; raises ImageNotFoundError / ImageInUseError."""

    async def ensure(self, ref: str, policy: PullPolicy | None = None, auth: Any = None) -> Image:
        """Make ``ref`` present per the pull policy (None: kubelet's default for the tag)."""

    async def load(self, path: Path | str, *, name: str | None = None) -> list[Image]:
        """Import a docker-archive tar or an OCI layout (dir or tar)."""

    async def prepare_rootfs(self, image: Image | str, container_id: str) -> Path:
        """Mount a fresh overlay rootfs for ``container_id``; idempotent."""

    async def release_rootfs(self, container_id: str) -> None:
        """Unmount and delete ``container_id``'s rootfs; idempotent."""

    async def prune(self, in_use: set[str]) -> PruneResult:
        """Remove images not named in ``in_use`` (refs or ids) and not mounted, then unused layers."""


def default_pull_policy(ref: str) -> PullPolicy:
    """Kubernetes' defaulting: ``Always`` for ``:latest`` or no tag, else ``IfNotPresent``."""
    try:
        parsed = parse_reference(ref, default_tag=None)
    except InvalidReferenceError:
        return "IfNotPresent"
    if parsed.digest:
        return "IfNotPresent"
    return "Always" if parsed.tag in (None, "latest") else "IfNotPresent"


class OciImageService:
    """The real :class:`ImageService` (registry + content store + overlayfs)."""

    def __init__(self, root: Path | str, *, registry: RegistryClient | None = None,
                 registry_config: RegistryConfig | None = None,
                 unpack_options: UnpackOptions | None = None, platform: Platform | None = None,
                 max_concurrent_downloads: int = 3) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.content = ContentStore(self.root / "content")
        self.layers = LayerStore(self.root)
        self.rootfs = RootfsManager(self.root, self.layers)
        self.index = ImageIndex(self.root / "images.json")
        self._own_registry = registry is None
        self.registry = registry or RegistryClient(config=registry_config)
        self.unpack_options = unpack_options or UnpackOptions()
        self.platform = platform or host_platform()
        self._downloads = asyncio.Semaphore(max_concurrent_downloads)
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # key -> (lock, [users])
        self._index_lock = asyncio.Lock()
        self._pending: Counter[str] = Counter()  # blobs and chain ids an in-flight pull relies on

    async def close(self) -> None:
        if self._own_registry:
            await self.registry.close()

    async def __aenter__(self) -> OciImageService:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @contextlib.asynccontextmanager
    async def _lock(self, key: str) -> AsyncIterator[None]:
        entry = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        entry[1][0] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1][0] -= 1
            if entry[1][0] == 0:
                self._locks.pop(key, None)

    @contextlib.contextmanager
    def _pin(self, keys: list[str]) -> Any:
        self._pending.update(keys)
        try:
            yield
        finally:
            self._pending.subtract(keys)
            self._pending += Counter()  # drop zero counts

    # -- queries -----------------------------------------------------------------------------
    def list(self) -> list[Image]:
        return list(self.index.images.values())

    def get(self, ref: str) -> Image | None:
        images = self.index.images
        if is_image_id(ref):
            return images.get(ref if ref.startswith("sha256:") else f"sha256:{ref}")
        if len(ref) >= 12 and all(c in "0123456789abcdef" for c in ref.removeprefix("sha256:")):
            matches = [i for i in images.values() if i.id.removeprefix("sha256:").startswith(
                ref.removeprefix("sha256:"))]
            if len(matches) == 1:
                return matches[0]
        try:
            parsed = parse_reference(ref)
        except InvalidReferenceError:
            return None
        if parsed.digest:
            wanted = f"{parsed.name}@{parsed.digest}"
            for img in images.values():
                if wanted in img.repo_digests:
                    return img
            for img in images.values():
                names = {n.split("@", 1)[0] if "@" in n else n.rsplit(":", 1)[0] for n in img.names}
                if img.digest == parsed.digest and (parsed.name in names or not names):
                    return img
            return None
        wanted = str(parsed)
        for img in images.values():
            if wanted in img.repo_tags:
                return img
        return None

    def config_json(self, image: Image) -> dict[str, Any]:
        """The full OCI image config of ``image``."""
        return json.loads(self.content.read(image.id))

    # -- pull --------------------------------------------------------------------------------
    async def pull(self, ref: str, *, auth: Any = None, progress: ProgressFn | None = None) -> Image:
        parsed = parse_reference(ref)
        try:
            async with self._lock(f"pull:{parsed}"):
                return await self._pull(parsed, auth, progress)
        except (ImageError, OSError, ValueError) as exc:
            if isinstance(exc, InvalidReferenceError):
                raise
            raise ImagePullError(f'failed to pull image "{ref}": {exc}') from exc

    async def _pull(self, ref: Reference, auth: Any, progress: ProgressFn | None) -> Image:
        candidates: list[Credentials | None] = [*credentials_for(ref, auth)] or [None]
        for i, creds in enumerate(candidates):
            try:
                resolved = await self.registry.resolve(ref, creds=creds, platform=self.platform)
                break
            except RegistryError as exc:
                if exc.is_auth and i < len(candidates) - 1:
                    continue  # kubelet tries each matching pull secret in turn
                raise
        manifest = resolved.manifest
        with self._pin([manifest.config.digest, *(d.digest for d in manifest.layers)]):
            if self.content.has(manifest.config.digest):
                config_body = self.content.read(manifest.config.digest)
            else:
                config_body = await self.registry.fetch_blob_bytes(ref, manifest.config, creds=creds)
                self.content.put(config_body, manifest.config.digest)

            async def fetch(desc: Any) -> None:
                async with self._downloads:
                    await self.registry.fetch_blob(
                        ref, desc, lambda: self.content.writer(desc.digest, desc.size),
                        creds=creds, progress=progress)

            repo = ref.name
            tags = (str(ref),) if ref.tag and not ref.digest else ()
            return await self._install(
                names=tags, repo_digests=(f"{repo}@{resolved.repo_digest}",),
                manifest_digest=resolved.manifest_digest, manifest_body=resolved.manifest_body,
                manifest=manifest, config_body=config_body, fetch=fetch,
            )

    async def _install(self, *, names: tuple[str, ...], repo_digests: tuple[str, ...],
                       manifest_digest: str, manifest_body: bytes, manifest: ImageManifest,
                       config_body: bytes, fetch: Callable[[Any], Any], parallel: bool = True) -> Image:
        try:
            config = json.loads(config_body)
            diff_ids = list(config["rootfs"]["diff_ids"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ImageError(f"malformed image config: {exc}") from exc
        if len(diff_ids) != len(manifest.layers):
            raise ImageError(f"image config lists {len(diff_ids)} layers, "
                             f"the manifest {len(manifest.layers)}")
        chains = chain_ids(diff_ids)

        async def one(i: int) -> None:
            chain, desc = chains[i], manifest.layers[i]
            async with self._lock(f"layer:{chain}"):
                if self.layers.has(chain):
                    return
                if not self.content.has(desc.digest):
                    await fetch(desc)
                parent = chains[i - 1] if i else None

                def unpack() -> None:
                    with self.content.open(desc.digest) as fh:
                        self.layers.add(chain, parent, diff_ids[i], fh, self.unpack_options)

                await asyncio.to_thread(unpack)

        with self._pin(chains):
            if parallel:
                try:
                    async with asyncio.TaskGroup() as tg:
                        for i in range(len(chains)):
                            tg.create_task(one(i))
                except ExceptionGroup as group:  # report the first real failure, not the group
                    raise _first_error(group) from None
            else:
                for i in range(len(chains)):
                    await one(i)
            self.content.put(manifest_body, manifest_digest)
            size = sum(self.layers.get(c).size for c in chains)
            image = Image(
                id=manifest.config.digest, digest=manifest_digest, repo_tags=names,
                repo_digests=repo_digests, size=size, config=ImageConfig.from_config_json(config),
                diff_ids=tuple(diff_ids), chain_ids=tuple(chains),
                layer_digests=tuple(d.digest for d in manifest.layers),
                manifest_media_type=manifest.media_type, os=str(config.get("os", "linux")),
                architecture=str(config.get("architecture", "")), created=str(config.get("created", "")),
            )
            async with self._index_lock:
                return self.index.put(image)

    async def ensure(self, ref: str, policy: PullPolicy | None = None, auth: Any = None, *,
                     progress: ProgressFn | None = None) -> Image:
        policy = policy or default_pull_policy(ref)
        if policy != "Always":
            present = self.get(ref)
            if present is not None:
                return present
            if policy == "Never":
                raise ImageNeverPullError(
                    f'Container image "{ref}" is not present with pull policy of Never')
        elif policy not in ("Always", "IfNotPresent", "Never"):
            raise ValueError(f"unknown pull policy {policy!r}")
        return await self.pull(ref, auth=auth, progress=progress)

    # -- load / push -------------------------------------------------------------------------
    async def load(self, path: Path | str, *, name: str | None = None) -> list[Image]:
        archive, found = await asyncio.to_thread(read_archive, Path(path), name=name, platform=self.platform)
        try:
            out = []
            for item in found:
                out.append(await self._load_one(archive, item))
            return out
        finally:
            archive.close()

    async def _load_one(self, archive: Any, item: ArchiveImage) -> Image:
        manifest = item.manifest
        with self._pin([manifest.config.digest, *(d.digest for d in manifest.layers)]):
            self.content.put(item.config_body, manifest.config.digest)

            async def fetch(desc: Any) -> None:
                def copy() -> None:
                    with archive.open_layer(desc.digest) as fh:
                        self.content.put_stream(fh, desc.digest, desc.size)

                await asyncio.to_thread(copy)

            return await self._install(
                names=tuple(item.names), repo_digests=(), manifest_digest=item.digest,
                manifest_body=item.manifest_body, manifest=manifest, config_body=item.config_body,
                fetch=fetch, parallel=False,
            )

    async def push(self, ref: str, dest: str | None = None, *, auth: Any = None) -> str:
        """Push a local image to ``dest`` (default: ``ref``); returns the manifest digest."""
        image = self.get(ref)
        if image is None:
            raise ImageNotFoundError(f"no such image: {ref}")
        target = parse_reference(dest or ref)
        creds = (credentials_for(target, auth) or [None])[0]
        manifest_body = self.content.read(image.digest)
        await self.registry.push_blob(target, image.id, self.content.size(image.id),
                                      self.content.path(image.id), creds=creds)
        for digest in image.layer_digests:
            await self.registry.push_blob(target, digest, self.content.size(digest),
                                          self.content.path(digest), creds=creds)
        digest = await self.registry.push_manifest(target, manifest_body, image.manifest_media_type,
                                                   creds=creds)
        async with self._index_lock:
            tags = (str(target),) if target.tag else ()
            self.index.put(replace(image, repo_tags=tags, repo_digests=(f"{target.name}@{digest}",)))
        return digest

    # -- rootfs ------------------------------------------------------------------------------
    async def prepare_rootfs(self, image: Image | str, container_id: str) -> Path:
        async with self._index_lock:
            img = image if isinstance(image, Image) else self.get(image)
            if img is None or img.id not in self.index.images:
                raise ImageNotFoundError(f"no such image: {image if isinstance(image, str) else image.id}")
            return await asyncio.to_thread(self.rootfs.prepare, container_id, img.id, list(img.chain_ids))

    async def release_rootfs(self, container_id: str) -> None:
        async with self._index_lock:
            await asyncio.to_thread(self.rootfs.release, container_id)

    def rootfs_ids(self) -> list[str]:
        """Container ids that hold a rootfs (the agent releases those of pods it no longer runs)."""
        return self.rootfs.ids()

    # -- removal and garbage collection ------------------------------------------------------
    async def remove(self, ref: str) -> None:
        async with self._index_lock:
            img = self.get(ref)
            if img is None:
                raise ImageNotFoundError(f"no such image: {ref}")
            tag = None
            if not is_image_id(ref):
                with contextlib.suppress(InvalidReferenceError):
                    parsed = parse_reference(ref)
                    tag = str(parsed) if not parsed.digest else None
            if tag and tag in img.repo_tags and len(img.repo_tags) > 1:
                self.index.untag(img.id, tag)
                return
            users = [cid for cid, (iid, _) in self.rootfs.in_use().items() if iid == img.id]
            if users:
                raise ImageInUseError(f"image {img.id} is in use by containers {sorted(users)}")
            self.index.delete(img.id)
            await self._gc()

    async def prune(self, in_use: set[str]) -> PruneResult:
        async with self._index_lock:
            keep = {img.id for ref in in_use if (img := self.get(ref)) is not None}
            keep |= {iid for iid, _ in self.rootfs.in_use().values()}
            result = PruneResult()
            for image_id in list(self.index.images):
                if image_id not in keep:
                    self.index.delete(image_id)
                    result.images_removed.append(image_id)
            result.layers_removed, result.blobs_removed = await self._gc()
            return result

    async def _gc(self) -> tuple[list[str], list[str]]:
        # snapshot in the event loop: pulls change _pending concurrently with the worker thread
        pinned = set(self._pending)
        images = list(self.index.images.values())
        return await asyncio.to_thread(self._collect, pinned, images)

    def _collect(self, pinned: set[str], images: list[Image]) -> tuple[list[str], list[str]]:
        """Delete layers and blobs no image, mounted rootfs or in-flight pull refers to."""
        chains: set[str] = set(pinned)
        blobs: set[str] = set(pinned)
        for img in images:
            chains.update(img.chain_ids)
            blobs.update((img.id, img.digest, *img.layer_digests))
        for _, used in self.rootfs.in_use().values():
            chains.update(used)
        removed_layers = [c for c in self.layers.chain_ids() if c not in chains]
        for c in removed_layers:
            self.layers.remove(c)
        removed_blobs = [d for d in self.content.digests() if d not in blobs]
        for d in removed_blobs:
            self.content.delete(d)
        return removed_layers, removed_blobs


def _first_error(group: BaseExceptionGroup) -> BaseException:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return group
