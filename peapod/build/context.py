"""The build context: finding COPY/ADD sources, hashing them for the cache, copying them into a rootfs.

Sources are paths relative to the context directory (wildcards allowed, ``..`` may not leave it);
``.containerignore`` / ``.dockerignore`` patterns exclude files. Writing into the step's rootfs goes
through file descriptors resolved with ``RESOLVE_IN_ROOT`` (:mod:`peapod.node.images.safepath`), so
a symlink in the image can never redirect a copy onto the host.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import hashlib
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from peapod.node.images.safepath import open_in_root

from .errors import BuildError

_CHUNK = 1 << 20
_GLOB = set("*?[")


@dataclass(frozen=True)
class Ignore:
    """Docker's ignore file semantics (the last matching pattern wins; ``!`` re-includes)."""

    patterns: tuple[tuple[str, bool], ...] = ()

    @classmethod
    def load(cls, context: Path) -> Ignore:
        for name in (".containerignore", ".dockerignore"):
            path = context / name
            if path.is_file():
                out = []
                for line in path.read_text().splitlines():
                    line = line.strip()
                    if not line or line.startswith("#"):
                        continue
                    neg = line.startswith("!")
                    pat = posixpath.normpath(line.lstrip("!").strip().lstrip("/"))
                    out.append((pat, neg))
                return cls(tuple(out))
        return cls()

    def excluded(self, rel: str) -> bool:
        result = False
        for pat, neg in self.patterns:
            if fnmatch.fnmatchcase(rel, pat) or any(
                    fnmatch.fnmatchcase("/".join(rel.split("/")[:i]), pat) for i in range(1, rel.count("/") + 1)):
                result = not neg
        return result


@dataclass(frozen=True)
class Source:
    path: Path
    """Absolute path in the context (top-level symlinks followed)."""
    rel: str
    """Path relative to the context, as matched."""

    @property
    def is_dir(self) -> bool:
        return self.path.is_dir() and not self.path.is_symlink()


def _inside(context: Path, path: Path) -> bool:
    return path == context or path.is_relative_to(context)


def resolve_sources(context: Path, patterns: list[str], ignore: Ignore) -> list[Source]:
    """The sources a COPY/ADD names; raises BuildError for missing ones or paths outside the context."""
    context = context.resolve()
    out: list[Source] = []
    for pattern in patterns:
        norm = posixpath.normpath("/" + pattern).lstrip("/") or "."
        if pattern.startswith("..") or posixpath.normpath(pattern).startswith(".."):
            raise BuildError(f"{pattern}: forbidden path outside the build context")
        if _GLOB & set(norm):
            rels = sorted(glob.glob(norm, root_dir=context, include_hidden=True))
            rels = [r for r in rels if not ignore.excluded(r)]
            if not rels:
                raise BuildError(f"{pattern}: no source files were specified (nothing matches in the "
                                 "build context)")
        else:
            if not os.path.lexists(context / norm) or (norm != "." and ignore.excluded(norm)):
                raise BuildError(f"{pattern}: no such file or directory in the build context")
            rels = [norm]
        for rel in rels:
            real = (context / rel).resolve()
            if not _inside(context, real):
                raise BuildError(f"{pattern}: forbidden path outside the build context ({rel} -> {real})")
            if not real.exists():
                raise BuildError(f"{pattern}: {rel} is a dangling symlink")
            out.append(Source(real, rel))
    return out


def walk(src: Source, ignore: Ignore, context: Path) -> list[tuple[str, os.stat_result]]:
    """(relative path, lstat) of a directory source's contents, parents first; [("", st)] for a file."""
    if not src.is_dir:
        return [("", src.path.stat())]
    out: list[tuple[str, os.stat_result]] = []
    base = src.path
    ctx = context.resolve()

    def rec(rel: str) -> None:
        for name in sorted(os.listdir(base / rel if rel else base)):
            child = f"{rel}/{name}" if rel else name
            full = base / child
            ctx_rel = str(full.relative_to(ctx)) if full.is_relative_to(ctx) else child
            if ignore.excluded(ctx_rel):
                continue
            st = os.lstat(full)
            out.append((child, st))
            if stat.S_ISDIR(st.st_mode):
                rec(child)

    rec("")
    return out


def sources_digest(sources: list[Source], ignore: Ignore, context: Path) -> str:
    """A digest over names, types, modes and contents of the sources (not times: Docker's rule)."""
    h = hashlib.sha256()
    for src in sources:
        h.update(f"source {src.rel} {'dir' if src.is_dir else 'file'}\0".encode())
        for rel, st in walk(src, ignore, context):
            full = src.path / rel if rel else src.path
            h.update(f"{rel}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode):o}\0".encode())
            if stat.S_ISREG(st.st_mode):
                with open(full, "rb") as fh:
                    while chunk := fh.read(_CHUNK):
                        h.update(chunk)
            elif stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(full).encode())
            h.update(b"\0")
    return f"sha256:{h.hexdigest()}"


# -- writing into a rootfs ------------------------------------------------------------------------

def _parts(path: str) -> list[str]:
    return [p for p in posixpath.normpath("/" + path).split("/") if p]


def open_dir(rootfd: int, path: str) -> int:
    return open_in_root(rootfd, "/".join(_parts(path)), os.O_PATH | os.O_DIRECTORY)


def mkdir_all(rootfd: int, path: str, *, uid: int = 0, gid: int = 0, mode: int = 0o755) -> int:
    """An O_PATH fd of directory ``path`` inside the root, creating missing directories."""
    parts = _parts(path)
    fd = os.dup(rootfd)
    try:
        for i in range(len(parts)):
            try:
                nxt = open_in_root(rootfd, "/".join(parts[:i + 1]), os.O_PATH | os.O_DIRECTORY)
            except FileNotFoundError:
                try:
                    os.mkdir(parts[i], mode, dir_fd=fd)
                except FileExistsError:
                    raise BuildError(f"cannot create directory /{'/'.join(parts[:i + 1])}: a dangling "
                                     "symlink or another file is in the way") from None
                os.chown(parts[i], uid, gid, dir_fd=fd, follow_symlinks=False)
                os.chmod(parts[i], mode, dir_fd=fd)  # not subject to the umask
                nxt = open_in_root(rootfd, "/".join(parts[:i + 1]), os.O_PATH | os.O_DIRECTORY)
            except NotADirectoryError:
                raise BuildError(f"/{'/'.join(parts[:i + 1])} is not a directory") from None
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def is_dir_in_root(rootfd: int, path: str) -> bool:
    try:
        os.close(open_dir(rootfd, path))
        return True
    except (FileNotFoundError, NotADirectoryError):
        return False


def read_file_in_root(rootfd: int, path: str) -> str:
    """A text file of the rootfs ('' when missing)."""
    try:
        fd = open_in_root(rootfd, "/".join(_parts(path)), os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return ""
    with os.fdopen(fd, "rb") as fh:
        return fh.read(1 << 20).decode(errors="replace")


@dataclass(frozen=True)
class Owner:
    uid: int = 0
    gid: int = 0
    preserve: bool = False
    """Keep the source's owner (ADD of an archive without --chown)."""

    def of(self, st: os.stat_result) -> tuple[int, int]:
        return (st.st_uid, st.st_gid) if self.preserve else (self.uid, self.gid)


def _remove(pfd: int, name: str, *, keep_dir: bool) -> bool:
    """Remove ``name`` unless it is a directory and ``keep_dir``; True if a directory stays."""
    try:
        st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        if keep_dir:
            return True
        raise BuildError(f"cannot replace directory {name!r} with a file")
    os.unlink(name, dir_fd=pfd)
    return False


def _put(pfd: int, name: str, full: Path, st: os.stat_result, owner: Owner, chmod: int | None) -> None:
    uid, gid = owner.of(st)
    mode = chmod if chmod is not None else stat.S_IMODE(st.st_mode)
    times = (st.st_atime_ns, st.st_mtime_ns)
    if stat.S_ISDIR(st.st_mode):
        existed = _remove(pfd, name, keep_dir=True)
        if not existed:
            os.mkdir(name, 0o700, dir_fd=pfd)
            os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
            os.chmod(name, mode, dir_fd=pfd)
        return
    _remove(pfd, name, keep_dir=False)
    if stat.S_ISREG(st.st_mode):
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=pfd)
        try:
            with open(full, "rb") as src:
                while chunk := src.read(_CHUNK):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)  # after chown, which clears setuid bits
            os.utime(fd, ns=times)
        finally:
            os.close(fd)
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(full), name, dir_fd=pfd)
        os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
        os.utime(name, ns=times, dir_fd=pfd, follow_symlinks=False)
    elif stat.S_ISFIFO(st.st_mode):
        os.mkfifo(name, mode, dir_fd=pfd)
        os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
    # sockets and device nodes in a build context are not copied (Docker skips sockets too)


def copy_tree(rootfd: int, src_dir: Path, entries: list[tuple[str, os.stat_result]], dest: str,
              owner: Owner, chmod: int | None) -> None:
    """Copy ``entries`` (from :func:`walk`) of directory ``src_dir`` into directory ``dest``."""
    os.close(mkdir_all(rootfd, dest, uid=owner.uid, gid=owner.gid))
    dir_times: list[tuple[str, int, int]] = []
    for rel, st in entries:
        parent, _, name = rel.rpartition("/")
        pfd = open_dir(rootfd, posixpath.join(dest, parent))
        try:
            _put(pfd, name, src_dir / rel, st, owner, chmod)
        finally:
            os.close(pfd)
        if stat.S_ISDIR(st.st_mode):
            dir_times.append((posixpath.join(dest, rel), st.st_atime_ns, st.st_mtime_ns))
    for path, atime, mtime in reversed(dir_times):  # after their contents changed them
        with contextlib.suppress(OSError):
            fd = open_dir(rootfd, path)
            try:
                os.utime(f"/proc/self/fd/{fd}", ns=(atime, mtime))
            finally:
                os.close(fd)


def copy_file(rootfd: int, src: Path, dest: str, owner: Owner, chmod: int | None) -> None:
    """Copy one file to the path ``dest`` (its parent directories are created)."""
    parent, name = posixpath.split(posixpath.normpath("/" + dest))
    pfd = mkdir_all(rootfd, parent, uid=owner.uid, gid=owner.gid)
    try:
        _put(pfd, name, src, src.stat(), owner, chmod)
    finally:
        os.close(pfd)


def is_archive(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def extract_archive(rootfd: int, archive: Path, dest: str, owner: Owner, chmod: int | None,
                    scratch: Path) -> None:
    """ADD's local tar handling: unpack (gzip/bzip2/xz/plain) into ``dest``, merging directories."""
    tmp = Path(tempfile.mkdtemp(prefix="add-", dir=scratch))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                tar.extractall(tmp, filter="tar")
        except (tarfile.TarError, OSError) as exc:
            raise BuildError(f"ADD {archive.name}: cannot extract: {exc}") from None
        entries = walk(Source(tmp, archive.name), Ignore(), tmp)
        copy_tree(rootfd, tmp, entries, dest, owner, chmod)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
