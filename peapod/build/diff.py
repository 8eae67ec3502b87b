"""Turn an overlayfs upper directory into an OCI layer tar (the build step's changes).

The upper dir holds exactly what a step changed: new and modified files, overlayfs whiteouts
(character devices 0/0) for deletions and ``trusted.overlay.opaque=y`` on directories that replaced
a lower one. In the tar those become ``.wh.<name>`` entries and a ``.wh..wh..opq`` entry in the
directory (the OCI image-spec's whiteouts). Entries are sorted (parents first) and hard links
inside the layer are kept as links, so the same upper dir always gives the same tar.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .errors import BuildError

OPAQUE_XATTR = "trusted.overlay.opaque"
REDIRECT_XATTR = "trusted.overlay.redirect"
METACOPY_XATTR = "trusted.overlay.metacopy"
WHITEOUT_PREFIX = ".wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
_KEEP_XATTRS = ("user.", "security.capability")
_CHUNK = 1 << 20


def _xattr(path: str, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
            return None
        raise


def _kept_xattrs(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for name in sorted(os.listxattr(path, follow_symlinks=False)):
            if name.startswith(_KEEP_XATTRS[0]) or name == _KEEP_XATTRS[1]:
                with contextlib.suppress(OSError):
                    value = os.getxattr(path, name, follow_symlinks=False)
                    out[f"SCHILY.xattr.{name}"] = value.decode("utf-8", "surrogateescape")
    return out


def _walk_from(root: Path, rel: str) -> Iterator[tuple[str, os.stat_result]]:
    names = sorted(os.listdir(os.path.join(root, rel)))
    for name in names:
        child = f"{rel}/{name}"
        st = os.lstat(os.path.join(root, child))
        yield child, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk_from(root, child)


@dataclass(frozen=True)
class DiffResult:
    diff_id: str
    """sha256 of the uncompressed tar."""
    size: int
    """Bytes of the uncompressed tar."""
    entries: int


class _Hashing:
    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.inner.write(data)

    def flush(self) -> None:
        self.inner.flush()


def write_diff(upper: Path | str, out: BinaryIO, *, skip: Callable[[str], bool] | None = None) -> DiffResult:
    """Write the changes in ``upper`` as an uncompressed OCI layer tar to ``out``.

    ``skip(rel_path)`` leaves out an entry and everything below it (mount points a runtime created).
    """
    root = Path(upper)
    hashing = _Hashing(out)
    inodes: dict[tuple[int, int], str] = {}
    count = 0
    skipped_dirs: list[str] = []
    with tarfile.open(fileobj=hashing, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for rel, st in _walk_from_root(root):
            if any(rel == d or rel.startswith(d + "/") for d in skipped_dirs):
                continue
            if skip is not None and skip(rel):
                skipped_dirs.append(rel)
                continue
            full = os.path.join(root, rel)
            parent, _, name = rel.rpartition("/")
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # overlayfs whiteout: a deletion
                info = tarfile.TarInfo((f"{parent}/" if parent else "") + WHITEOUT_PREFIX + name)
                info.mtime = int(st.st_mtime)
                info.mode = 0o644
                tar.addfile(info)
                count += 1
                continue
            if _xattr(full, METACOPY_XATTR) is not None:
                raise BuildError(f"{rel}: overlayfs metacopy is not supported by the layer differ")
            info = tarfile.TarInfo(rel)
            info.mode = stat.S_IMODE(st.st_mode)
            info.uid, info.gid = st.st_uid, st.st_gid
            info.mtime = int(st.st_mtime)
            info.pax_headers = _kept_xattrs(full)
            fh = None
            if stat.S_ISDIR(st.st_mode):
                if _xattr(full, REDIRECT_XATTR) is not None:
                    raise BuildError(f"{rel}: a renamed lower directory (overlayfs redirect_dir) "
                                     "is not supported by the layer differ")
                info.type = tarfile.DIRTYPE
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in inodes:
                    info.type = tarfile.LNKTYPE
                    info.linkname = inodes[key]
                else:
                    inodes[key] = rel
                    info.size = st.st_size
                    fh = open(full, "rb")
            elif stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(full)
            elif stat.S_ISFIFO(st.st_mode):
                info.type = tarfile.FIFOTYPE
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            else:
                continue  # sockets are not content
            try:
                tar.addfile(info, fh)
            finally:
                if fh is not None:
                    fh.close()
            count += 1
            if info.type == tarfile.DIRTYPE and _xattr(full, OPAQUE_XATTR) == b"y":
                opq = tarfile.TarInfo(f"{rel}/{WHITEOUT_OPAQUE}")
                opq.mtime = int(st.st_mtime)
                opq.mode = 0o644
                tar.addfile(opq)
                count += 1
    return DiffResult(diff_id=f"sha256:{hashing.hash.hexdigest()}", size=hashing.size, entries=count)


def _walk_from_root(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    for name in sorted(os.listdir(root)):
        st = os.lstat(os.path.join(root, name))
        yield name, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk_from(root, name)


def gzip_file(src: Path, dest: Path) -> None:
    """Compress ``src`` to ``dest`` deterministically (no name, mtime 0)."""
    with open(src, "rb") as fin, open(dest, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
        while chunk := fin.read(_CHUNK):
            gz.write(chunk)
