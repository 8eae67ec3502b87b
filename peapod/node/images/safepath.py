"""Resolve paths strictly inside a directory, never following a symlink out of it.

The primary mechanism is ``openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`` (Linux >= 5.6) through
ctypes: the kernel treats the root fd as ``/`` for every symlink and ``..`` met while resolving. On
kernels without openat2 a userspace walk does the same one component at a time with
``O_NOFOLLOW``, reading each symlink and re-resolving its target against the root.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat

_SYS_OPENAT2 = 437  # the same number on every Linux architecture (added after the syscall table merge)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
_MAX_LINKS = 40


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_openat2_ok: bool | None = None


def _openat2(dirfd: int, path: str, flags: int) -> int:
    how = _OpenHow(flags | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    raw = os.fsencode(path)
    for _ in range(16):  # EAGAIN: a concurrent rename raced with ".." resolution; retry
        fd = _libc.syscall(_SYS_OPENAT2, ctypes.c_int(dirfd), ctypes.c_char_p(raw), ctypes.byref(how),
                           ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err != errno.EAGAIN:
            raise OSError(err, os.strerror(err), path)
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN), path)


def openat2_available() -> bool:
    global _openat2_ok
    if _openat2_ok is None:
        try:
            os.close(_openat2(os.open("/", os.O_PATH | os.O_DIRECTORY), ".", os.O_PATH))
            _openat2_ok = True
        except OSError as exc:
            _openat2_ok = exc.errno not in (errno.ENOSYS, errno.EPERM, errno.EINVAL)
    return _openat2_ok


def _walk_in_root(rootfd: int, path: str, flags: int) -> int:
    """Userspace RESOLVE_IN_ROOT: returns an fd for ``path`` opened with ``flags``."""
    stack = [os.dup(rootfd)]
    pending = [p for p in path.split("/") if p not in ("", ".")]
    links = 0
    try:
        while pending:
            name = pending.pop(0)
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            last = not pending
            st = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > _MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                target = os.readlink(name, dir_fd=stack[-1])
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                pending[:0] = [p for p in target.split("/") if p not in ("", ".")]
                continue
            if not last:
                if not stat.S_ISDIR(st.st_mode):
                    raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
                stack.append(os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                     dir_fd=stack[-1]))
            else:
                stack.append(os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1]))
        if len(stack) == 1:  # the path resolved to the root itself: reopen it with the requested flags
            fd = os.open(".", flags | os.O_CLOEXEC, dir_fd=stack[0])
            stack.append(fd)
        return stack.pop()
    finally:
        for fd in stack:
            os.close(fd)


def open_in_root(rootfd: int, path: str, flags: int, *, force_userspace: bool = False) -> int:
    """Open ``path`` (relative; a leading ``/`` means the root) resolved inside ``rootfd``."""
    path = path.lstrip("/") or "."
    if not force_userspace and openat2_available():
        return _openat2(rootfd, path, flags)
    return _walk_in_root(rootfd, path, flags)
