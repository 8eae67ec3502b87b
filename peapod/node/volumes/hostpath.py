"""hostPath type checks with kubelet's behaviour and messages (pkg/volume/hostpath)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

HOST_PATH_TYPES = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice",
                   "BlockDevice")


def _mode(path: str) -> int | None:
    try:
        return os.stat(path).st_mode  # follows symlinks, like os.Stat in the checker
    except FileNotFoundError:
        return None


def _make_file(path: str) -> None:
    # Like kubelet: the parent must already exist; a racing creator is fine.
    fd = os.open(path, os.O_CREAT | os.O_CLOEXEC | os.O_RDONLY, 0o644)
    os.close(fd)


_CHECKS: dict[str, tuple[Callable[[int], bool], str]] = {
    "Directory": (stat.S_ISDIR, "a directory"),
    "File": (stat.S_ISREG, "a file"),
    "Socket": (stat.S_ISSOCK, "a socket file"),
    "CharDevice": (stat.S_ISCHR, "a character device"),
    "BlockDevice": (stat.S_ISBLK, "a block device"),
}


def check_host_path(path: str, path_type: str | None) -> None:
    """Create (…OrCreate) or check the path; raises ValueError with kubelet's message."""
    kind = path_type or ""
    if kind == "":
        return
    if kind not in HOST_PATH_TYPES:
        raise ValueError(f"{kind} is an invalid volume type")
    if kind == "DirectoryOrCreate":
        if _mode(path) is None:
            os.makedirs(path, 0o755, exist_ok=True)
            return
        kind = "Directory"
    elif kind == "FileOrCreate":
        if _mode(path) is None:
            _make_file(path)
            return
        kind = "File"
    test, what = _CHECKS[kind]
    mode = _mode(path)
    if mode is None or not test(mode):
        raise ValueError(f"hostPath type check failed: {path} is not {what}")
