"""kubelet's AtomicWriter: publish a set of files so that readers see all-old or all-new, never a mix.

Layout of a target directory::

    ..2024_01_01_00_00_00.123456789/   the payload (a fresh directory per change)
    ..data -> ..2024_01_01_00_00_00.123456789
    key -> ..data/key                  one symlink per top-level name of the payload

A write (1) validates the payload, (2) reads the current ``..data``, (3) skips when no content changed
and no path went away, (4) creates a new timestamped directory, (5) writes the files there, (6) lets
the caller fix ownership, (7) points ``..data_tmp`` at it, (8) renames ``..data_tmp`` over ``..data``
(the single atomic switch), (9) adds user-visible symlinks for new names, (10) removes the old payload
directory and (11) the symlinks of names that went away.

Unlike kubelet, an old payload directory that a subPath bind still shows (``pinned``) is kept until
the bind goes away, so a directory subPath keeps its old files instead of turning empty; stale
directories are removed by the next write, changed or not.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from .types import FileProjection

DATA_DIR = "..data"
DATA_DIR_TMP = "..data_tmp"
MAX_FILE_NAME = 255
MAX_PATH = 4096


def validate_path(target: str) -> None:
    """kubelet's validatePath for payload keys; raises ValueError with its message."""
    if target == "":
        raise ValueError(f'invalid path: must not be empty: "{target}"')
    if target.startswith("/"):
        raise ValueError(f"invalid path: must be relative path: {target}")
    if len(target) > MAX_PATH:
        raise ValueError(f"invalid path: must be less than or equal to {MAX_PATH} characters")
    items = target.split("/")
    for item in items:
        if item == "..":
            raise ValueError(f"invalid path: must not contain '..': {target}")
        if len(item) > MAX_FILE_NAME:
            raise ValueError(
                f"invalid path: filenames must be less than or equal to {MAX_FILE_NAME} characters")
    if items[0].startswith("..") and len(items[0]) > 2:
        raise ValueError(f"invalid path: must not start with '..': {target}")


def _clean(p: str) -> str:
    return os.path.normpath(p) if p else p


def _is_ts_dir(name: str) -> bool:
    return name.startswith("..") and len(name) > 3 and name[2].isdigit()


class AtomicWriter:
    """Writes payloads into ``target_dir`` with kubelet's layout. ``hook(step)`` is for tests."""

    def __init__(self, target_dir: Path, *, now: Callable[[], datetime] | None = None,
                 hook: Callable[[str], None] | None = None) -> None:
        self.target = Path(target_dir)
        self._now = now or (lambda: datetime.now(UTC))
        self._hook = hook or (lambda _step: None)

    def current_dir(self) -> Path | None:
        """The payload directory ``..data`` points at, if any."""
        try:
            return self.target / os.readlink(self.target / DATA_DIR)
        except FileNotFoundError:
            return None

    def write(self, payload: Mapping[str, FileProjection],
              set_perms: Callable[[Path], None] | None = None, *,
              pinned: Callable[[Path], bool] | None = None) -> bool:
        """Publish ``payload`` (relative path -> file); returns whether anything changed on disk.

        ``pinned(old_dir)``: whether an old payload directory must stay (a subPath bind shows it)."""
        clean: dict[str, FileProjection] = {}
        for key, proj in payload.items():
            validate_path(key)
            clean[_clean(key)] = proj
        old = self.current_dir()
        if old is not None and not old.is_dir():
            old = None
        to_remove = self._paths_to_remove(clean, old) if old else set()
        if old is not None and not self._should_write(clean, old) and not to_remove:
            self._create_user_visible(clean)  # repairs a crash between (8) and (9)
            self._remove_stale_ts_dirs(keep=old.name, pinned=pinned)  # a crash before (10), or unpinned
            return False
        ts = self._new_ts_dir()
        self._hook("ts_dir")
        try:
            self._write_payload(clean, ts)
            self._hook("payload")
            if set_perms is not None:
                set_perms(ts)
            tmp_link = self.target / DATA_DIR_TMP
            if tmp_link.is_symlink():
                tmp_link.unlink()
            os.symlink(ts.name, tmp_link)
            self._hook("data_tmp")
        except BaseException:
            shutil.rmtree(ts, ignore_errors=True)
            raise
        os.rename(tmp_link, self.target / DATA_DIR)
        self._hook("swap")
        self._create_user_visible(clean)
        self._hook("visible")
        self._remove_stale_ts_dirs(keep=ts.name, pinned=pinned)
        self._hook("old_removed")
        for p in to_remove:
            if "/" not in p:
                link = self.target / p
                if link.is_symlink():
                    link.unlink()
        self._hook("done")
        return True

    def _new_ts_dir(self) -> Path:
        prefix = self._now().astimezone(UTC).strftime("..%Y_%m_%d_%H_%M_%S.")
        while True:
            p = self.target / f"{prefix}{secrets.randbelow(2**32)}"
            try:
                os.mkdir(p, 0o700)
            except FileExistsError:
                continue
            os.chmod(p, 0o755)  # others must be able to traverse, whatever the umask
            return p

    @staticmethod
    def _write_payload(payload: Mapping[str, FileProjection], ts: Path) -> None:
        for rel, proj in payload.items():
            full = ts / rel
            full.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(proj.data)
                while view:
                    view = view[os.write(fd, view):]
                os.fchmod(fd, proj.mode & 0o7777)
            finally:
                os.close(fd)

    @staticmethod
    def _should_write(payload: Mapping[str, FileProjection], old: Path) -> bool:
        # Like kubelet, only content counts: modes are fixed by the pod spec, and fsGroup changes them.
        for rel, proj in payload.items():
            p = old / rel
            try:
                if p.is_symlink() or not p.is_file() or p.read_bytes() != proj.data:
                    return True
            except OSError:
                return True
        return False

    @staticmethod
    def _paths_to_remove(payload: Mapping[str, FileProjection], old: Path) -> set[str]:
        existing: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(old):
            for n in dirnames + filenames:
                existing.add(os.path.relpath(os.path.join(dirpath, n), old))
        wanted: set[str] = set()
        for rel in payload:
            sub = rel
            while sub:
                wanted.add(sub)
                sub = os.path.dirname(sub)
        return existing - wanted

    def _create_user_visible(self, payload: Mapping[str, FileProjection]) -> None:
        for top in {rel.split("/", 1)[0] for rel in payload}:
            link = self.target / top
            if not os.path.lexists(link):
                os.symlink(os.path.join(DATA_DIR, top), link)

    def _remove_stale_ts_dirs(self, *, keep: str, pinned: Callable[[Path], bool] | None = None) -> None:
        for entry in os.scandir(self.target):
            if entry.name != keep and _is_ts_dir(entry.name) and entry.is_dir(follow_symlinks=False):
                if pinned is not None and pinned(Path(entry.path)):
                    continue
                shutil.rmtree(entry.path, ignore_errors=True)


def file_mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)
