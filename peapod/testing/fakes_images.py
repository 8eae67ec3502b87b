"""An in-memory :class:`~peapod.node.images.ImageService` for unit tests of the agent.

It records every call in ``calls`` and can be told to fail::

    images = FakeImageService()
    images.add_remote("busybox", cmd=("sh",))           # pullable ("in the registry")
    images.add_local("nginx:1.25")                      # already present
    images.fail_next("pull", ImagePullError('failed to pull image "x": 401 Unauthorized'))
    images.fail_always("prepare_rootfs", ImageError("disk full"))
    images.pull_gate = asyncio.Event()                  # pulls wait until the test sets it

Pulling an unknown reference fails like a registry would (``manifest unknown``).
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from peapod.node.images.errors import (
    ImageInUseError,
    ImageNeverPullError,
    ImageNotFoundError,
    ImagePullError,
)
from peapod.node.images.model import Image, ImageConfig
from peapod.node.images.reference import is_image_id, parse_reference
from peapod.node.images.service import PruneResult, PullPolicy, default_pull_policy


def fake_image(ref: str, *, size: int = 1 << 20, **config: Any) -> Image:
    """An :class:`Image` for ``ref`` with deterministic ids; ``config`` fills :class:`ImageConfig`."""
    parsed = parse_reference(ref)
    seed = hashlib.sha256(str(parsed.with_tag(parsed.tag or "latest")).encode()).hexdigest()
    manifest = hashlib.sha256(seed.encode()).hexdigest()
    cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    return Image(
        id=f"sha256:{seed}", digest=f"sha256:{manifest}",
        repo_tags=(str(parsed),) if parsed.tag else (),
        repo_digests=(f"{parsed.name}@sha256:{manifest}",), size=size, config=ImageConfig(**cfg),
        diff_ids=(f"sha256:{seed}",), chain_ids=(f"sha256:{seed}",), os="linux", architecture="amd64",
    )


class FakeImageService:
    def __init__(self, *, rootfs_dir: Path | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.remote: dict[str, Image] = {}
        self.local: dict[str, Image] = {}
        self.prepared: dict[str, tuple[str, Path]] = {}
        self.pull_gate: asyncio.Event | None = None
        self.rootfs_dir = rootfs_dir
        self._fail_next: dict[str, list[BaseException]] = {}
        self._fail_always: dict[str, BaseException] = {}

    # -- test controls -----------------------------------------------------------------------
    def add_remote(self, ref: str, **config: Any) -> Image:
        img = fake_image(ref, **config)
        self.remote[str(parse_reference(ref))] = img
        return img

    def add_local(self, ref: str, **config: Any) -> Image:
        img = fake_image(ref, **config)
        self.local[img.id] = img
        return img

    def fail_next(self, method: str, exc: BaseException) -> None:
        self._fail_next.setdefault(method, []).append(exc)

    def fail_always(self, method: str, exc: BaseException | None) -> None:
        if exc is None:
            self._fail_always.pop(method, None)
        else:
            self._fail_always[method] = exc

    def calls_to(self, method: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == method]

    def _maybe_fail(self, method: str) -> None:
        queued = self._fail_next.get(method)
        if queued:
            raise queued.pop(0)
        if method in self._fail_always:
            raise self._fail_always[method]

    # -- ImageService ------------------------------------------------------------------------
    async def pull(self, ref: str, *, auth: Any = None, progress: Any = None) -> Image:
        self.calls.append(("pull", ref, auth))
        if self.pull_gate is not None:
            await self.pull_gate.wait()
        self._maybe_fail("pull")
        key = str(parse_reference(ref))
        img = self.remote.get(key)
        if img is None:
            raise ImagePullError(f'failed to pull image "{ref}": 404 Not Found: manifest unknown '
                                 "(MANIFEST_UNKNOWN)")
        self.local[img.id] = img
        return img

    def get(self, ref: str) -> Image | None:
        if is_image_id(ref):
            return self.local.get(ref if ref.startswith("sha256:") else f"sha256:{ref}")
        parsed = parse_reference(ref)
        for img in self.local.values():
            if str(parsed) in img.repo_tags or (
                parsed.digest and f"{parsed.name}@{parsed.digest}" in img.repo_digests
            ):
                return img
        return None

    def list(self) -> list[Image]:
        return list(self.local.values())

    async def remove(self, ref: str) -> None:
        self.calls.append(("remove", ref))
        self._maybe_fail("remove")
        img = self.get(ref)
        if img is None:
            raise ImageNotFoundError(f"no such image: {ref}")
        if any(iid == img.id for iid, _ in self.prepared.values()):
            raise ImageInUseError(f"image {img.id} is in use")
        del self.local[img.id]

    async def ensure(self, ref: str, policy: PullPolicy | None = None, auth: Any = None, *,
                     progress: Any = None) -> Image:
        self.calls.append(("ensure", ref, policy, auth))
        self._maybe_fail("ensure")
        policy = policy or default_pull_policy(ref)
        if policy != "Always":
            present = self.get(ref)
            if present is not None:
                return present
            if policy == "Never":
                raise ImageNeverPullError(f'Container image "{ref}" is not present with pull policy of Never')
        return await self.pull(ref, auth=auth)

    async def load(self, path: Path | str, *, name: str | None = None) -> list[Image]:
        self.calls.append(("load", str(path), name))
        self._maybe_fail("load")
        img = fake_image(name or "loaded")
        self.local[img.id] = img
        return [img]

    async def prepare_rootfs(self, image: Image | str, container_id: str) -> Path:
        self.calls.append(("prepare_rootfs", image if isinstance(image, str) else image.id, container_id))
        self._maybe_fail("prepare_rootfs")
        img = image if isinstance(image, Image) else self.get(image)
        if img is None:
            raise ImageNotFoundError(f"no such image: {image}")
        if container_id in self.prepared:
            return self.prepared[container_id][1]
        base = self.rootfs_dir or Path("/nonexistent/peapod-fake-rootfs")
        path = base / container_id
        if self.rootfs_dir is not None:
            path.mkdir(parents=True, exist_ok=True)
        self.prepared[container_id] = (img.id, path)
        return path

    async def release_rootfs(self, container_id: str) -> None:
        self.calls.append(("release_rootfs", container_id))
        self._maybe_fail("release_rootfs")
        entry = self.prepared.pop(container_id, None)
        if entry and self.rootfs_dir is not None and entry[1].exists():
            entry[1].rmdir()

    async def prune(self, in_use: set[str]) -> PruneResult:
        self.calls.append(("prune", frozenset(in_use)))
        self._maybe_fail("prune")
        keep = {img.id for ref in in_use if (img := self.get(ref)) is not None}
        keep |= {iid for iid, _ in self.prepared.values()}
        result = PruneResult()
        for image_id in list(self.local):
            if image_id not in keep:
                del self.local[image_id]
                result.images_removed.append(image_id)
        return result
