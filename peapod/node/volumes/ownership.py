"""fsGroup ownership, kubelet's SetVolumeOwnership: group-own everything, make it group-accessible,
setgid on directories so new files inherit the group."""

from __future__ import annotations

import os
import stat
from pathlib import Path

RW_MASK = 0o660
RO_MASK = 0o440
EXEC_MASK = 0o110


def _change(path: str, fs_group: int, read_only: bool) -> None:
    st = os.lstat(path)
    os.lchown(path, -1, fs_group)
    if stat.S_ISLNK(st.st_mode):
        return  # chmod would follow the link and undo the plugin's modes
    mask = RO_MASK if read_only else RW_MASK
    if stat.S_ISDIR(st.st_mode):
        mask |= stat.S_ISGID | EXEC_MASK
    os.chmod(path, stat.S_IMODE(st.st_mode) | mask, follow_symlinks=False)


def set_volume_ownership(root: Path, fs_group: int, *, read_only: bool) -> None:
    """Walk ``root`` (never following symlinks) and apply ``fs_group`` like kubelet."""
    _change(str(root), fs_group, read_only)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            _change(os.path.join(dirpath, name), fs_group, read_only)


def root_matches(root: Path, fs_group: int, *, read_only: bool) -> bool:
    """fsGroupChangePolicy OnRootMismatch: the root already has the group, setgid and the mode bits."""
    st = os.lstat(root)
    mask = (RO_MASK if read_only else RW_MASK) | EXEC_MASK | stat.S_ISGID
    return st.st_gid == fs_group and stat.S_IMODE(st.st_mode) & mask == mask


def pod_fs_group(pod: dict) -> int | None:
    sc = (pod.get("spec") or {}).get("securityContext") or {}
    g = sc.get("fsGroup")
    return int(g) if g is not None else None


def fs_group_change_policy(pod: dict) -> str:
    sc = (pod.get("spec") or {}).get("securityContext") or {}
    return sc.get("fsGroupChangePolicy") or "Always"
