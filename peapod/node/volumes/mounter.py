"""Mount syscalls behind a small Protocol: the real one uses libc through ctypes, the fake records.

Bind mounts from a file descriptor go through ``/proc/self/fd/N`` (kubelet's safe subpath: the fd was
opened without following symlinks, so what gets mounted is exactly the checked inode).
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path
from typing import Protocol

MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_BIND = 0x1000
MNT_DETACH = 0x2


class Mounter(Protocol):
    def mount_tmpfs(self, target: Path, *, size: int | None) -> None:
        """Mount a fresh tmpfs on the existing directory ``target``."""

    def bind_fd(self, fd: int, target: Path) -> None:
        """Bind-mount the file or directory open as ``fd`` onto the existing ``target``."""

    def unmount(self, target: Path) -> None:
        """Unmount ``target``; not mounted is not an error."""

    def is_mountpoint(self, target: Path) -> bool: ...

    def mounts_under(self, root: Path) -> list[Path]:
        """Mount points at or below ``root``, deepest first."""


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_points(mountinfo: str | None = None) -> list[str]:
    """Mount points of this process's mount namespace, from /proc/self/mountinfo."""
    text = mountinfo if mountinfo is not None else Path("/proc/self/mountinfo").read_text()
    return [_unescape(line.split()[4]) for line in text.splitlines() if line.strip()]


def _canonical(p: Path) -> str:
    return os.path.realpath(p)


def _under(mp: str, root: str) -> bool:
    return mp == root or mp.startswith(root.rstrip("/") + "/")


class LinuxMounter:
    """mount(2)/umount2(2) in this process's mount namespace (needs CAP_SYS_ADMIN)."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                                     ctypes.c_char_p]
        self._libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

    def _mount(self, source: str, target: Path, fstype: str | None, flags: int, data: str | None) -> None:
        rc = self._libc.mount(source.encode(), os.fsencode(target), fstype.encode() if fstype else None,
                              flags, data.encode() if data else None)
        if rc != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")

    def mount_tmpfs(self, target: Path, *, size: int | None) -> None:
        data = f"size={size}" if size else None
        self._mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, data)

    def bind_fd(self, fd: int, target: Path) -> None:
        self._mount(f"/proc/self/fd/{fd}", target, None, MS_BIND, None)

    def unmount(self, target: Path) -> None:
        path = os.fsencode(target)
        if self._libc.umount2(path, 0) == 0:
            return
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):  # not a mount point / gone
            return
        if err == errno.EBUSY and self._libc.umount2(path, MNT_DETACH) == 0:
            return
        err = ctypes.get_errno() or err
        raise OSError(err, f"unmount {target}: {os.strerror(err)}")

    def is_mountpoint(self, target: Path) -> bool:
        return _canonical(target) in set(mount_points())

    def mounts_under(self, root: Path) -> list[Path]:
        r = _canonical(root)
        found = {mp for mp in mount_points() if _under(mp, r)}
        return [Path(mp) for mp in sorted(found, key=lambda m: m.count("/"), reverse=True)]
