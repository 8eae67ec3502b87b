"""Container root filesystems: one overlayfs mount per container over the image's layer dirs.

``<root>/containers/<id>/`` holds ``upper/``, ``work/``, ``merged/`` (the mount point) and
``rootfs.json`` (the image and chain IDs, written before mounting so garbage collection always sees
which layers a container uses). Prepare and release are idempotent.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from .content import atomic_write_json
from .errors import ImageError
from .layers import LayerStore

_MNT_DETACH = 2
_PAGE_LIMIT = 4000  # mount(2) data must fit in one page (4096 incl. NUL); keep a margin
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def mount_points() -> set[str]:
    """Mount points of this mount namespace (octal escapes in mountinfo decoded)."""
    out: set[str] = set()
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            fields = line.split(" ")
            if len(fields) > 4:
                out.add(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4]))
    return out


def is_mounted(path: Path) -> bool:
    return str(path) in mount_points()


def _umount(path: Path) -> None:
    if _libc.umount2(os.fsencode(path), 0) == 0:
        return
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOENT):  # not a mount point (any more)
        return
    if err == errno.EBUSY and _libc.umount2(os.fsencode(path), _MNT_DETACH) == 0:
        return
    raise OSError(err, f"umount {path}: {os.strerror(err)}")


class RootfsManager:
    def __init__(self, root: Path, layers: LayerStore) -> None:
        self.root = Path(root)
        self.containers_dir = self.root / "containers"
        self.containers_dir.mkdir(parents=True, exist_ok=True)
        self.layers = layers
        self._empty = self.root / "empty"
        self._empty.mkdir(exist_ok=True)

    def dir(self, container_id: str) -> Path:
        if not _ID.match(container_id):
            raise ImageError(f"invalid container id {container_id!r}")
        return self.containers_dir / container_id

    def ids(self) -> list[str]:
        """Every container id with a rootfs directory (prepared, or half-made by a crash)."""
        return sorted(d.name for d in self.containers_dir.iterdir() if d.is_dir() and _ID.match(d.name))

    def in_use(self) -> dict[str, tuple[str, list[str]]]:
        """container id -> (image id, chain ids) for every prepared rootfs."""
        out: dict[str, tuple[str, list[str]]] = {}
        for d in self.containers_dir.iterdir():
            with contextlib.suppress(OSError, ValueError, KeyError):
                meta = json.loads((d / "rootfs.json").read_text())
                out[d.name] = (meta["image_id"], list(meta["chain_ids"]))
        return out

    def prepare(self, container_id: str, image_id: str, chain_ids: list[str]) -> Path:
        """Mount the rootfs for ``container_id`` and return its path (the ``merged`` directory)."""
        d = self.dir(container_id)
        merged = d / "merged"
        if is_mounted(merged):
            return merged
        missing = [c for c in chain_ids if not self.layers.has(c)]
        if missing:
            raise ImageError(f"image {image_id} is missing unpacked layers {missing}")
        for sub in ("upper", "work", "merged"):
            (d / sub).mkdir(parents=True, exist_ok=True, mode=0o755)
        atomic_write_json(d / "rootfs.json", {"image_id": image_id, "chain_ids": list(chain_ids)})
        shorts = [self.layers.get(c).short for c in reversed(chain_ids)]  # overlay: top layer first
        if not shorts:
            lower_abs = [str(self._empty)]
            shorts_rel = [os.path.relpath(self._empty, self.layers.links_dir)]
        else:
            lower_abs = [str(self.layers.links_dir / s) for s in shorts]
            shorts_rel = shorts
        tail = f",upperdir={d / 'upper'},workdir={d / 'work'},index=off"
        data = "lowerdir=" + ":".join(lower_abs) + tail
        if len(data) <= _PAGE_LIMIT:
            if _libc.mount(b"overlay", os.fsencode(merged), b"overlay", 0, os.fsencode(data)) != 0:
                err = ctypes.get_errno()
                raise ImageError(f"mounting overlay for {container_id}: {os.strerror(err)}")
        else:
            # too long for one page with absolute paths: mount from inside l/ with relative names
            data = "lowerdir=" + ":".join(shorts_rel) + tail
            if len(data) > _PAGE_LIMIT:
                raise ImageError(f"image {image_id} has too many layers ({len(chain_ids)}) to mount")
            proc = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", data, str(merged)],
                                  cwd=self.layers.links_dir, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise ImageError(f"mounting overlay for {container_id}: {proc.stderr.strip()}")
        return merged

    def release(self, container_id: str) -> None:
        """Unmount and delete everything of ``container_id``; a no-op if it is gone already."""
        d = self.dir(container_id)
        if not d.exists():
            return
        merged = d / "merged"
        for _ in range(16):  # a rootfs may have been mounted more than once (stacked)
            if not is_mounted(merged):
                break
            _umount(merged)
        else:
            raise ImageError(f"cannot unmount {merged}")
        shutil.rmtree(d)
