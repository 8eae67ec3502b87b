"""Parsed JSON files, re-read only when the file changed.

The agent asks for the state of every container every second (its PLEG relist); runc's state.json
(the container's whole config, tens of KB) and peapod's meta.json rarely change, so parsing them
each time costs more CPU than the rest of the relist. A file is re-parsed when its inode, size or
mtime differ from what was cached; a vanished file is dropped from the cache.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class JsonFileCache:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[tuple[int, int, int], Any]] = {}

    def load(self, path: Path | str) -> Any:
        """The parsed content of ``path``. Raises FileNotFoundError, OSError or json.JSONDecodeError
        like reading and parsing it would. Callers must not mutate the returned value."""
        key = os.fspath(path)
        try:
            st = os.stat(key)
        except FileNotFoundError:
            self._entries.pop(key, None)
            raise
        sig = (st.st_ino, st.st_size, st.st_mtime_ns)
        hit = self._entries.get(key)
        if hit is not None and hit[0] == sig:
            return hit[1]
        with open(key, "rb") as f:
            value = json.loads(f.read())
        self._entries[key] = (sig, value)
        return value

    def forget(self, path: Path | str) -> None:
        self._entries.pop(os.fspath(path), None)

    def __len__(self) -> int:
        return len(self._entries)
