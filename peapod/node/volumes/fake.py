"""Fakes for tests: API reads from dicts, and a mounter that only records."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .types import DownwardValues


@dataclass
class FakeVolumeSources:
    """``configmaps``/``secrets`` keyed by (namespace, name). ``token`` None means no token service;
    ``fail`` maps a method name to the exception it raises. ``calls`` records every read."""

    configmaps: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    secrets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    downward: DownwardValues = field(default_factory=DownwardValues)
    token: str | Callable[[str | None, int], str] | None = None
    fail: dict[str, Exception] = field(default_factory=dict)
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def _maybe_fail(self, method: str) -> None:
        if method in self.fail:
            raise self.fail[method]

    async def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get_configmap", namespace, name))
        self._maybe_fail("get_configmap")
        obj = self.configmaps.get((namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get_secret", namespace, name))
        self._maybe_fail("get_secret")
        obj = self.secrets.get((namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    async def request_token(self, audience: str | None, expiration: int) -> str:
        self.calls.append(("request_token", audience, expiration))
        self._maybe_fail("request_token")
        if self.token is None:
            raise RuntimeError("no token service")
        return self.token(audience, expiration) if callable(self.token) else self.token


class FakeMounter:
    """Records mounts without making them. ``bind_fd`` records where the fd really points."""

    def __init__(self) -> None:
        self.mounted: dict[str, tuple[str, ...]] = {}  # canonical target -> ("tmpfs", size) | ("bind", src)
        self.calls: list[tuple[Any, ...]] = []
        self.fail: dict[str, Exception] = {}

    def _key(self, p: Path) -> str:
        return os.path.realpath(p)

    def mount_tmpfs(self, target: Path, *, size: int | None) -> None:
        self.calls.append(("mount_tmpfs", str(target), size))
        if "mount_tmpfs" in self.fail:
            raise self.fail["mount_tmpfs"]
        self.mounted[self._key(target)] = ("tmpfs", str(size))

    def bind_fd(self, fd: int, target: Path) -> None:
        source = os.readlink(f"/proc/self/fd/{fd}")
        self.calls.append(("bind_fd", source, str(target)))
        if "bind_fd" in self.fail:
            raise self.fail["bind_fd"]
        self.mounted[self._key(target)] = ("bind", source)

    def unmount(self, target: Path) -> None:
        self.calls.append(("unmount", str(target)))
        if "unmount" in self.fail:
            raise self.fail["unmount"]
        self.mounted.pop(self._key(target), None)

    def is_mountpoint(self, target: Path) -> bool:
        return self._key(target) in self.mounted

    def mounts_under(self, root: Path) -> list[Path]:
        r = self._key(root)
        found = [m for m in self.mounted if m == r or m.startswith(r.rstrip("/") + "/")]
        return [Path(m) for m in sorted(found, key=lambda m: m.count("/"), reverse=True)]
