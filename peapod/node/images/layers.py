"""Unpacked layers, one directory per chain ID (like containers/storage), shared by every image.

``<root>/layers/<chain-hex>/diff`` holds the layer's files as an overlayfs lower directory and
``layer.json`` its metadata. A layer is unpacked into ``<root>/layers/.tmp-*`` and renamed into place
only after its diff_id checked out, so a crash never leaves a half layer visible; leftovers are
removed when the store opens. ``<root>/l/<short>`` are short symlinks to the ``diff`` directories so
overlay mount options stay under the kernel's page-size limit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .content import atomic_write_json, fsync_dir
from .errors import DigestMismatchError
from .unpack import UnpackOptions, unpack_layer


def chain_ids(diff_ids: list[str] | tuple[str, ...]) -> list[str]:
    """OCI chain IDs: ``chain[0] = diff[0]``, ``chain[i] = sha256(chain[i-1] + " " + diff[i])``."""
    out: list[str] = []
    for diff in diff_ids:
        if not out:
            out.append(diff)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff}".encode()).hexdigest())
    return out


@dataclass(frozen=True)
class LayerInfo:
    chain_id: str
    diff_id: str
    parent: str | None
    size: int
    short: str


def _hex(digest: str) -> str:
    alg, _, hexpart = digest.partition(":")
    if alg != "sha256" or len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
        raise ValueError(f"invalid layer id {digest!r}")
    return hexpart


class LayerStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.layers_dir = self.root / "layers"
        self.links_dir = self.root / "l"
        self.layers_dir.mkdir(parents=True, exist_ok=True)
        self.links_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.layers_dir.glob(".tmp-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        for entry in self.layers_dir.iterdir():  # a layer without metadata never finished
            if not entry.name.startswith(".") and not (entry / "layer.json").exists():
                shutil.rmtree(entry, ignore_errors=True)

    def dir(self, chain_id: str) -> Path:
        return self.layers_dir / _hex(chain_id)

    def diff_dir(self, chain_id: str) -> Path:
        return self.dir(chain_id) / "diff"

    def link(self, chain_id: str) -> Path:
        return self.links_dir / self.get(chain_id).short

    def has(self, chain_id: str) -> bool:
        return (self.dir(chain_id) / "layer.json").exists()

    def get(self, chain_id: str) -> LayerInfo:
        obj = json.loads((self.dir(chain_id) / "layer.json").read_text())
        return LayerInfo(obj["chain_id"], obj["diff_id"], obj.get("parent"), int(obj["size"]), obj["short"])

    def chain_ids(self) -> list[str]:
        return [f"sha256:{p.name}" for p in self.layers_dir.iterdir()
                if not p.name.startswith(".") and (p / "layer.json").exists()]

    def _short(self, chain_id: str) -> str:
        hexpart = _hex(chain_id)
        for n in range(12, 65):
            short = hexpart[:n]
            target = self.links_dir / short
            if not target.is_symlink() or os.readlink(target) == f"../layers/{hexpart}/diff":
                return short
        raise RuntimeError("cannot allocate a short layer link")  # pragma: no cover

    def add(self, chain_id: str, parent: str | None, diff_id: str, stream: BinaryIO,
            options: UnpackOptions | None = None) -> LayerInfo:
        """Unpack ``stream`` as layer ``chain_id``; the diff_id must match. Idempotent."""
        if self.has(chain_id):
            return self.get(chain_id)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.layers_dir))
        try:
            diff = tmp / "diff"
            diff.mkdir(mode=0o755)
            result = unpack_layer(stream, diff, options)
            if result.diff_id != diff_id:
                raise DigestMismatchError(
                    f"layer diff_id mismatch: config says {diff_id}, content is {result.diff_id}")
            short = self._short(chain_id)
            info = LayerInfo(chain_id, diff_id, parent, result.uncompressed_size, short)
            atomic_write_json(tmp / "layer.json", info.__dict__)
            os.chmod(tmp, 0o700)
            dest = self.dir(chain_id)
            try:
                os.rename(tmp, dest)
            except OSError:
                if self.has(chain_id):  # another unpack won the race
                    return self.get(chain_id)
                raise
            fsync_dir(self.layers_dir)
            link = self.links_dir / short
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            os.symlink(f"../layers/{_hex(chain_id)}/diff", link)
            return info
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def remove(self, chain_id: str) -> None:
        d = self.dir(chain_id)
        if not d.exists():
            return
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError, json.JSONDecodeError):
            (self.links_dir / self.get(chain_id).short).unlink()
        # rename first so a crash mid-delete leaves a .tmp- dir (cleaned at start), not a half layer
        doomed = self.layers_dir / f".tmp-rm-{d.name}"
        os.rename(d, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
