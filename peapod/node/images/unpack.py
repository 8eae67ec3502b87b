"""Safe extraction of one OCI layer tar into its own directory (an overlayfs lower layer).

Every path is resolved inside the layer root with :func:`safepath.open_in_root`, and the last
component is always created or replaced with ``*at`` calls on the parent's fd and ``O_NOFOLLOW``, so
no symlink is ever followed out of the root. Hostile entries are handled like this:

* absolute names are taken relative to the root (neutralised); names whose ``..`` climb above the
  root and hardlinks whose target does are refused (:class:`UnsafeLayerError`);
* symlinks are created as they are (their targets only matter inside the container's root);
* hardlinks must point at an existing non-directory inside this layer;
* character/block devices are skipped unless ``allow_devices``; FIFOs are kept;
* setuid/setgid bits and ``security.capability`` are stripped unless ``allow_setid``;
* only ``user.*`` (and, with ``allow_setid``, ``security.capability``) xattrs are applied, so a layer
  can never forge ``trusted.overlay.*``;
* OCI whiteouts become overlayfs whiteouts: ``.wh.<name>`` -> char device 0/0 named ``<name>``,
  ``.wh..wh..opq`` -> ``trusted.overlay.opaque=y`` on the directory;
* the decompressed stream, each file and the entry count are bounded (decompression bombs).

The uncompressed stream is hashed while reading, giving the layer's diff_id.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from .errors import ImageError, LayerTooLargeError, UnsafeLayerError
from .safepath import open_in_root

try:
    import zstandard

    _ZSTD_ERRORS: tuple[type[Exception], ...] = (zstandard.ZstdError,)
except ImportError:  # pragma: no cover
    zstandard = None  # type: ignore[assignment]
    _ZSTD_ERRORS = ()
_CORRUPT = (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error, *_ZSTD_ERRORS)

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_CHUNK = 1 << 20
_GIB = 1 << 30


@dataclass(frozen=True)
class UnpackOptions:
    max_layer_bytes: int = 64 * _GIB
    """Upper bound on the decompressed tar stream (decompression bombs)."""
    max_file_bytes: int | None = None
    """Upper bound on one file's size; defaults to ``max_layer_bytes``."""
    max_entries: int = 2_000_000
    allow_devices: bool = False
    allow_setid: bool = False
    preserve_ownership: bool = field(default_factory=lambda: os.geteuid() == 0)
    """Apply the tar's uid/gid (needs root; the default when running as root)."""
    force_userspace_resolve: bool = False
    """Use the userspace path walk even where openat2 exists (tests)."""


@dataclass
class UnpackResult:
    diff_id: str
    uncompressed_size: int
    entries: int
    skipped: list[str] = field(default_factory=list)


class _Counting(io.RawIOBase):
    """Hashes and counts the decompressed stream, aborting past ``limit`` bytes."""

    def __init__(self, inner: BinaryIO, limit: int) -> None:
        self._inner = inner
        self._limit = limit
        self.hash = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(buf))
        n = len(data)
        self.count += n
        if self.count > self._limit:
            raise LayerTooLargeError(f"layer decompresses to more than {self._limit} bytes")
        self.hash.update(data)
        buf[:n] = data
        return n


def decompressed(stream: BinaryIO) -> BinaryIO:
    """Wrap ``stream`` in a decompressor chosen by its magic bytes (gzip, zstd or plain tar)."""
    buffered = stream if isinstance(stream, io.BufferedReader) else io.BufferedReader(stream)  # type: ignore[arg-type]
    magic = buffered.peek(4)[:4]
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
    if magic == b"\x28\xb5\x2f\xfd":
        if zstandard is None:  # pragma: no cover - zstandard is a dependency
            raise ImageError("zstd-compressed layer but the zstandard package is missing")
        return zstandard.ZstdDecompressor().stream_reader(buffered, read_across_frames=True)  # type: ignore[return-value]
    return buffered  # type: ignore[return-value]


def clean_name(name: str) -> list[str]:
    """Split a tar member name into components inside the root.

    A leading ``/`` is dropped (absolute names are neutralised); ``..`` that would climb above the
    root raises :class:`UnsafeLayerError`.
    """
    parts: list[str] = []
    for comp in name.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                raise UnsafeLayerError(f"tar entry {name!r} escapes the layer root")
            parts.pop()
            continue
        parts.append(comp)
    return parts


class _Extractor:
    def __init__(self, rootfd: int, options: UnpackOptions) -> None:
        self.rootfd = rootfd
        self.opts = options
        self.max_file = options.max_layer_bytes if options.max_file_bytes is None else options.max_file_bytes
        self.skipped: list[str] = []
        self.dir_times: list[tuple[str, int]] = []

    # -- path helpers -------------------------------------------------------------------------
    def _resolve(self, path: str) -> int:
        return open_in_root(self.rootfd, path, os.O_PATH | os.O_DIRECTORY,
                            force_userspace=self.opts.force_userspace_resolve)

    def _parent(self, parts: list[str]) -> int:
        """An O_PATH fd for the directory holding ``parts[-1]``, creating missing directories (0755).

        Resolution is always from the layer root with RESOLVE_IN_ROOT semantics. When a missing
        directory sits behind a symlink, the symlink's target is created instead (inside the root),
        which is what Docker's chrooted MkdirAll does.
        """
        want = list(parts[:-1])
        for _ in range(64):
            try:
                return self._resolve("/".join(want))
            except FileNotFoundError:
                pass
            i = 0  # find the first missing component; everything before it resolves
            while i < len(want):
                try:
                    os.close(self._resolve("/".join(want[: i + 1])))
                except FileNotFoundError:
                    break
                i += 1
            pfd = self._resolve("/".join(want[:i]))
            try:
                st = self._lstat(pfd, want[i])
                if st is None:
                    os.mkdir(want[i], 0o755, dir_fd=pfd)
                elif stat.S_ISLNK(st.st_mode):  # dangling symlink: follow it textually, inside the root
                    target = os.readlink(want[i], dir_fd=pfd)
                    head = [] if target.startswith("/") else want[:i]
                    want = head + [c for c in target.split("/") if c] + want[i + 1:]
                else:
                    raise UnsafeLayerError(f"cannot create directory {'/'.join(parts[:-1])!r}")
            finally:
                os.close(pfd)
        raise UnsafeLayerError(f"too many symlinks creating {'/'.join(parts[:-1])!r}")

    @staticmethod
    def _lstat(pfd: int, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def _remove(self, pfd: int, name: str, *, keep_dir: bool = False) -> None:
        st = self._lstat(pfd, name)
        if st is None:
            return
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return
            shutil.rmtree(name, dir_fd=pfd)
        else:
            os.unlink(name, dir_fd=pfd)

    def _mode(self, member: tarfile.TarInfo) -> int:
        mode = member.mode & 0o7777
        if not self.opts.allow_setid and not member.isdir():  # setgid on a directory only sets group
            mode &= ~(stat.S_ISUID | stat.S_ISGID)
        return mode

    def _xattrs(self, fd: int, member: tarfile.TarInfo) -> None:
        for key, value in member.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            name = key[len("SCHILY.xattr."):]
            if not (name.startswith("user.") or (name == "security.capability" and self.opts.allow_setid)):
                continue
            with contextlib.suppress(OSError):
                os.setxattr(fd, name, value.encode("utf-8", "surrogateescape"))

    def _owner_fd(self, fd: int, member: tarfile.TarInfo) -> None:
        if self.opts.preserve_ownership:
            os.fchown(fd, member.uid, member.gid)

    # -- entries ------------------------------------------------------------------------------
    def entry(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = clean_name(member.name)
        if not parts:
            return  # the root itself ("./"): its metadata belongs to the image, not the layer
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parts, member)
            return
        if member.ischr() or member.isblk():
            if not self.opts.allow_devices:
                self.skipped.append(member.name)
                return
        if member.isfile() and member.size > self.max_file:
            raise LayerTooLargeError(
                f"tar entry {member.name!r} is {member.size} bytes, more than the limit {self.max_file}"
            )
        pfd = self._parent(parts)
        try:
            if member.isdir():
                self._dir(pfd, base, parts, member)
            elif member.isfile():
                self._file(pfd, base, tar, member)
            elif member.issym():
                self._remove(pfd, base)
                os.symlink(member.linkname, base, dir_fd=pfd)
                if self.opts.preserve_ownership:
                    os.chown(base, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
                os.utime(base, ns=(member.mtime * 10**9,) * 2, dir_fd=pfd, follow_symlinks=False)
            elif member.islnk():
                self._hardlink(pfd, base, member)
            elif member.isfifo() or member.isdev():
                self._remove(pfd, base)
                kind = {tarfile.CHRTYPE: stat.S_IFCHR, tarfile.BLKTYPE: stat.S_IFBLK}.get(
                    member.type, stat.S_IFIFO)
                os.mknod(base, kind | self._mode(member), os.makedev(member.devmajor, member.devminor)
                         if kind != stat.S_IFIFO else 0, dir_fd=pfd)
                if self.opts.preserve_ownership:
                    os.chown(base, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
            else:
                self.skipped.append(member.name)
        finally:
            os.close(pfd)

    def _dir(self, pfd: int, base: str, parts: list[str], member: tarfile.TarInfo) -> None:
        self._remove(pfd, base, keep_dir=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(base, 0o700, dir_fd=pfd)
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            self._owner_fd(fd, member)
            os.fchmod(fd, self._mode(member))
            self._xattrs(fd, member)
        finally:
            os.close(fd)
        self.dir_times.append(("/".join(parts), member.mtime))

    def _file(self, pfd: int, base: str, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        self._remove(pfd, base)
        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=pfd)
        try:
            src = tar.extractfile(member)
            remaining = member.size
            if src is not None:
                while remaining > 0:
                    chunk = src.read(min(_CHUNK, remaining))
                    if not chunk:
                        raise UnsafeLayerError(f"tar entry {member.name!r} is truncated")
                    _write_all(fd, chunk)
                    remaining -= len(chunk)
            self._owner_fd(fd, member)
            os.fchmod(fd, self._mode(member))  # after chown, which clears setuid bits
            self._xattrs(fd, member)
            os.utime(fd, ns=(member.mtime * 10**9,) * 2)
        finally:
            os.close(fd)

    def _hardlink(self, pfd: int, base: str, member: tarfile.TarInfo) -> None:
        target = clean_name(member.linkname)
        if not target:
            raise UnsafeLayerError(f"hardlink {member.name!r} points at the layer root")
        tpfd = self._parent_existing(target, member)
        try:
            st = self._lstat(tpfd, target[-1])
            if st is None:
                raise UnsafeLayerError(
                    f"hardlink {member.name!r} -> {member.linkname!r}: target is not in this layer")
            if stat.S_ISDIR(st.st_mode):
                raise UnsafeLayerError(f"hardlink {member.name!r} points at a directory")
            existing = self._lstat(pfd, base)
            if existing is not None and os.path.samestat(st, existing):
                return  # already the same inode
            self._remove(pfd, base)
            os.link(target[-1], base, src_dir_fd=tpfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tpfd)

    def _parent_existing(self, parts: list[str], member: tarfile.TarInfo) -> int:
        try:
            return open_in_root(self.rootfd, "/".join(parts[:-1]), os.O_PATH | os.O_DIRECTORY,
                                force_userspace=self.opts.force_userspace_resolve)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise UnsafeLayerError(
                f"hardlink {member.name!r} -> {member.linkname!r}: target is not in this layer") from exc

    def _whiteout(self, parts: list[str], member: tarfile.TarInfo) -> None:
        base = parts[-1]
        if base == WHITEOUT_OPAQUE:
            pfd = self._parent(parts)
            try:
                dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
                try:
                    os.setxattr(dfd, OPAQUE_XATTR, b"y")
                finally:
                    os.close(dfd)
            finally:
                os.close(pfd)
            return
        if base.startswith(WHITEOUT_META_PREFIX):
            self.skipped.append(member.name)  # aufs bookkeeping (.wh..wh.plnk etc.): not content
            return
        name = base[len(WHITEOUT_PREFIX):]
        if name in ("", ".", ".."):
            raise UnsafeLayerError(f"invalid whiteout {member.name!r}")
        pfd = self._parent(parts)
        try:
            self._remove(pfd, name)
            os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=pfd)
        finally:
            os.close(pfd)

    def finish(self) -> None:
        for rel, mtime in reversed(self.dir_times):
            try:
                fd = open_in_root(self.rootfd, rel, os.O_RDONLY | os.O_DIRECTORY,
                                  force_userspace=self.opts.force_userspace_resolve)
            except OSError:
                continue  # replaced or removed by a later entry
            try:
                os.utime(fd, ns=(mtime * 10**9,) * 2)
            finally:
                os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def unpack_layer(stream: BinaryIO, dest: Path, options: UnpackOptions | None = None) -> UnpackResult:
    """Extract the (possibly compressed) layer ``stream`` into the existing directory ``dest``."""
    opts = options or UnpackOptions()
    counting = _Counting(decompressed(stream), opts.max_layer_bytes)
    reader = io.BufferedReader(counting, buffer_size=_CHUNK)
    rootfd = os.open(dest, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    ex = _Extractor(rootfd, opts)
    entries = 0
    try:
        try:
            with tarfile.open(fileobj=reader, mode="r|", errorlevel=2) as tar:
                for member in tar:
                    entries += 1
                    if entries > opts.max_entries:
                        raise LayerTooLargeError(f"layer has more than {opts.max_entries} entries")
                    ex.entry(tar, member)
            while reader.read(_CHUNK):  # the diff_id covers the whole stream, padding included
                pass
        except _CORRUPT as exc:
            raise UnsafeLayerError(f"malformed layer tar: {exc}") from exc
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EXDEV, errno.ENOTDIR, errno.EEXIST):
                raise UnsafeLayerError(f"layer entry could not be placed safely: {exc}") from exc
            raise
        ex.finish()
    finally:
        os.close(rootfd)
    return UnpackResult(diff_id=f"sha256:{counting.hash.hexdigest()}", uncompressed_size=counting.count,
                        entries=entries, skipped=ex.skipped)

