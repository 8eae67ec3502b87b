"""Safe subPath (kubelet's pkg/volume/util/subpath, Linux).

The subPath is resolved once (symlinks inside the volume are allowed as long as the result stays in
the volume), then re-walked from the volume root one component at a time with O_PATH|O_NOFOLLOW,
refusing any symlink: a component swapped for a symlink after the check cannot redirect the walk.
The final fd is bind-mounted through /proc/self/fd/N onto an agent-owned path, so what the container
gets is exactly the inode that was checked.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from .mounter import Mounter

_OPEN = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class SubPathError(ValueError):
    pass


def validate_subpath(sub: str) -> None:
    """kubelet's makeMounts checks (after subPathExpr expansion)."""
    if os.path.isabs(sub):
        raise SubPathError(f"error SubPath `{sub}` must not be an absolute path")
    if ".." in sub.split("/"):
        raise SubPathError(f"unable to provision SubPath `{sub}`: must not contain '..'")


def expand(expr: str, mapping: Callable[[str], str]) -> str:
    """apimachinery's third_party/forked/golang/expansion.Expand: ``$(VAR)`` replaced, ``$$`` -> ``$``,
    anything else kept."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    n = len(expr)
    while cursor < n:
        if expr[cursor] == "$" and cursor + 1 < n:
            out.append(expr[checkpoint:cursor])
            rest = expr[cursor + 1:]
            if rest[0] == "$":
                read, is_var, advance = "$", False, 1
            elif rest[0] == "(":
                close = rest.find(")", 1)
                if close == -1:
                    read, is_var, advance = "$(", False, 1
                else:
                    read, is_var, advance = rest[1:close], True, close + 1
            else:
                read, is_var, advance = "$" + rest[0], False, 1
            out.append(mapping(read) if is_var else read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + expr[checkpoint:]


def expand_subpath_expr(expr: str, env: Mapping[str, str]) -> str:
    """kubelet's ExpandContainerVolumeMounts: every referenced variable must be set and non-empty."""
    missing: set[str] = set()

    def lookup(key: str) -> str:
        value = env.get(key, "")
        if not value:
            missing.add(key)
        return value

    out = expand(expr, lookup)
    if missing:
        raise SubPathError(f"missing value for {', '.join(sorted(missing))}")
    return out


def _within(path: str, base: str) -> bool:
    rel = os.path.relpath(path, base)
    return rel == "." or not (rel == ".." or rel.startswith("../") or os.path.isabs(rel))


def safe_mkdir(volume_root: Path, sub: str, perm: int = 0o755) -> None:
    """Create the missing directories of ``sub`` inside the volume without following symlinks out."""
    base = os.path.realpath(volume_root)
    full = os.path.join(base, sub)
    existing = full
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    resolved = os.path.realpath(existing)
    if not _within(resolved, base):
        raise SubPathError(f'path "{resolved}" is not within "{base}"')
    rest = os.path.relpath(full, existing)
    if rest == ".":
        return
    fd = _walk(base, os.path.relpath(resolved, base))
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            raise SubPathError(f"{resolved} is not a directory")
        for seg in rest.split("/"):
            with contextlib.suppress(FileExistsError):
                os.mkdir(seg, perm, dir_fd=fd)
            child = os.open(seg, _OPEN, dir_fd=fd)
            os.close(fd)
            fd = child
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise SubPathError(f"unexpected symlink found {os.path.join(resolved, seg)}")
    finally:
        os.close(fd)


def _walk(base: str, rel: str) -> int:
    """Open ``base/rel`` component by component, refusing any symlink; returns an O_PATH fd."""
    fd = os.open(base, _OPEN)
    current = base
    try:
        if stat.S_ISLNK(os.fstat(fd).st_mode):
            raise SubPathError(f"unexpected symlink found {base}")
        for seg in [] if rel == "." else rel.split("/"):
            current = os.path.join(current, seg)
            try:
                child = os.open(seg, _OPEN, dir_fd=fd)
            except OSError as e:
                raise SubPathError(f"cannot open {current}: {e.strerror}") from e
            os.close(fd)
            fd = child
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise SubPathError(f"unexpected symlink found {current}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def safe_open_subpath(volume_root: Path, sub: str, *, after_check: Callable[[], None] | None = None) -> int:
    """An O_PATH fd of ``volume_root/sub`` that is guaranteed to be inside the volume.

    ``after_check`` runs between the resolution and the walk (tests use it to race a symlink swap).
    """
    try:
        base = os.path.realpath(volume_root, strict=True)
    except OSError as e:
        raise SubPathError(f'error resolving symlinks in "{volume_root}": {e.strerror}') from e
    full_in = os.path.join(volume_root, sub)
    try:
        full = os.path.realpath(full_in, strict=True)
    except OSError as e:
        raise SubPathError(f'error resolving symlinks in "{full_in}": {e.strerror}') from e
    if not _within(full, base):
        raise SubPathError(f'subpath "{full}" not within volume path "{base}"')
    if after_check is not None:
        after_check()
    return _walk(base, os.path.relpath(full, base))


def _same_inode(fd: int, target: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(target)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def bind_subpath(volume_root: Path, sub: str, target: Path, mounter: Mounter, *,
                 after_check: Callable[[], None] | None = None) -> Path:
    """Bind ``volume_root/sub`` (checked) onto ``target`` and return ``target``; reuses a good bind."""
    fd = safe_open_subpath(volume_root, sub, after_check=after_check)
    try:
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        if mounter.is_mountpoint(target):
            if _same_inode(fd, target):
                return target
            mounter.unmount(target)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        if is_dir:
            if os.path.lexists(target) and not target.is_dir():
                target.unlink()
            target.mkdir(exist_ok=True, mode=0o750)
        elif not os.path.lexists(target):
            os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_RDONLY, 0o640))
        elif target.is_dir() or target.is_symlink():
            raise SubPathError(f"subpath target {target} has the wrong type")
        mounter.bind_fd(fd, target)
        return target
    finally:
        os.close(fd)
