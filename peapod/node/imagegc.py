"""Unused-image garbage collection, kubelet style.

When the filesystem holding the images is at least ``high``% full, remove images no container uses,
least recently used first, until usage would drop below ``low``% (kubelet's
``imageGCHighThresholdPercent`` / ``imageGCLowThresholdPercent``, defaults 85 / 80; ``high=100``
disables it). An image counts as used at the last check a container used it, or when it was first
seen; images younger than ``min_age`` (kubelet's ``imageMinimumGCAge``) are kept, so an image
pulled for a pod that has not started yet survives. Sizes are the images' uncompressed sizes, as
kubelet does; layers shared by several images make that an overestimate, and the next round
catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peapod.clock import Clock
from peapod.node.images import Image, ImageInUseError, ImageNotFoundError, ImageService, InvalidReferenceError
from peapod.node.images.reference import is_image_id, parse_reference

log = logging.getLogger(__name__)


def _normalized(refs: set[str]) -> set[str]:
    out = set(refs)
    for ref in refs:
        if is_image_id(ref):
            out.add(ref if ref.startswith("sha256:") else f"sha256:{ref}")
            continue
        with contextlib.suppress(InvalidReferenceError):
            out.add(str(parse_reference(ref)))
    return out


def _used(img: Image, in_use: set[str]) -> bool:
    return img.id in in_use or any(name in in_use for name in img.names)


def plan_image_gc(images: list[Image], in_use: set[str], usage_bytes: int, capacity_bytes: int, *,
                  high: int = 85, low: int = 80, last_used: dict[str, float], now: float,
                  min_age: float = 0.0) -> list[str]:
    """Ids of the images to remove, least recently used first (ties: by id).

    Nothing when usage is below ``high``% of capacity; otherwise enough images to bring usage under
    ``low``% (or every candidate, if that is not enough). Never an image named in ``in_use`` (ids or
    references), never one used or first seen less than ``min_age`` seconds before ``now``.
    ``last_used`` maps image id -> time on the same clock as ``now``; a missing id counts as ``now``.
    """
    if not 0 <= low < high <= 100:
        raise ValueError(f"image GC thresholds need 0 <= low < high <= 100, got low={low} high={high}")
    if high == 100 or capacity_bytes <= 0 or usage_bytes * 100 < high * capacity_bytes:
        return []
    to_free = usage_bytes - math.floor(low * capacity_bytes / 100)
    used = _normalized(in_use)
    candidates = [img for img in images
                  if not _used(img, used) and now - last_used.get(img.id, now) >= min_age]
    candidates.sort(key=lambda img: (last_used.get(img.id, now), img.id))
    out: list[str] = []
    freed = 0
    for img in candidates:
        if freed >= to_free:
            break
        out.append(img.id)
        freed += img.size
    return out


def fs_usage(path: Path, statfs: Callable[[Any], Any] = os.statvfs) -> tuple[int, int]:
    """(used, capacity) bytes of the filesystem holding ``path``; blocks only root may use count as
    used (kubelet measures ``available``)."""
    st = statfs(path)
    capacity = st.f_blocks * st.f_frsize
    return capacity - st.f_bavail * st.f_frsize, capacity


class ImageGC:
    """One image GC with its memory of when each image was last used (see :func:`run_image_gc`)."""

    def __init__(self, images: ImageService, *, in_use: Callable[[], set[str]], clock: Clock,
                 data_dir: Path, high: int = 85, low: int = 80, min_age: float = 120.0,
                 statfs: Callable[[Any], Any] = os.statvfs) -> None:
        if not 0 <= low < high <= 100:
            raise ValueError(f"image GC thresholds need 0 <= low < high <= 100, got low={low} high={high}")
        self.images = images
        self.in_use = in_use
        self.clock = clock
        self.data_dir = Path(data_dir)
        self.high, self.low, self.min_age = high, low, min_age
        self.statfs = statfs
        self.last_used: dict[str, float] = {}

    def detect(self) -> tuple[list[Image], set[str]]:
        """Record use: images in use now, and images seen for the first time, get ``now``."""
        now = self.clock.monotonic()
        images = self.images.list()
        in_use = _normalized(set(self.in_use()))
        present = {img.id for img in images}
        for gone in set(self.last_used) - present:
            del self.last_used[gone]
        for img in images:
            if img.id not in self.last_used or _used(img, in_use):
                self.last_used[img.id] = now
        return images, in_use

    async def run_once(self) -> list[str]:
        """One round: measure, plan, remove. Returns the ids removed."""
        images, in_use = self.detect()
        usage, capacity = fs_usage(self.data_dir, self.statfs)  # one fast syscall
        plan = plan_image_gc(images, in_use, usage, capacity, high=self.high, low=self.low,
                             last_used=self.last_used, now=self.clock.monotonic(), min_age=self.min_age)
        removed: list[str] = []
        for image_id in plan:
            try:
                await self.images.remove(image_id)
            except ImageNotFoundError:
                continue
            except ImageInUseError as exc:  # a container started on it since in_use() was read
                log.info("image GC: keeping %s: %s", image_id, exc)
                continue
            removed.append(image_id)
            self.last_used.pop(image_id, None)
        if plan:
            log.info("image GC: filesystem of %s at %d%% (high %d%%): removed %d image(s): %s",
                     self.data_dir, usage * 100 // max(capacity, 1), self.high, len(removed), removed)
        return removed


async def run_image_gc(images: ImageService, *, in_use: Callable[[], set[str]], clock: Clock,
                       interval: float = 300, high: int = 85, low: int = 80, data_dir: Path,
                       min_age: float = 120.0, statfs: Callable[[Any], Any] = os.statvfs) -> None:
    """Run image GC now and every ``interval`` seconds until cancelled. ``data_dir`` is the
    directory whose filesystem is measured (the images dir, ``DATA/node/images``); ``in_use()``
    returns the image refs or ids the node's containers use."""
    gc = ImageGC(images, in_use=in_use, clock=clock, data_dir=data_dir, high=high, low=low,
                 min_age=min_age, statfs=statfs)
    while True:
        try:
            await gc.run_once()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failed round must not end GC for the agent's lifetime
            log.warning("image GC: %s", exc)
        await clock.sleep(interval)
