"""The build cache: which layer a step produced, keyed by everything the step's result depends on.

The key covers the parent layer chain, the instruction (after ARG/ENV expansion), the state the
step runs in (environment, user, working directory, shell, network) and its inputs (a digest of
the COPY/ADD sources' names, modes and contents). Entries live in ``cache.json`` next to the build
store; an entry whose blob is gone counts as a miss.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from peapod.node.images.content import atomic_write_json


def cache_key(*, parent_chain: str | None, instruction: str, state: Mapping[str, Any] | None = None,
              inputs: str = "") -> str:
    """A stable digest of one step (see the module docstring)."""
    doc = {"parent": parent_chain or "", "instruction": instruction, "state": dict(state or {}),
           "inputs": inputs}
    body = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(body).hexdigest()


@dataclass(frozen=True)
class CachedLayer:
    diff_id: str
    digest: str
    """The compressed blob in the build store's content store."""
    size: int
    media_type: str
    created: str
    """When the step first ran (reused, so a fully cached rebuild gives the same image id)."""


class BuildCache:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.entries: dict[str, CachedLayer] = {}
        if self.path.exists():
            try:
                obj = json.loads(self.path.read_text())
                self.entries = {k: CachedLayer(**v) for k, v in (obj.get("layers") or {}).items()}
            except (ValueError, TypeError):
                self.entries = {}  # a damaged cache is only a slower build

    def get(self, key: str) -> CachedLayer | None:
        return self.entries.get(key)

    def put(self, key: str, layer: CachedLayer) -> None:
        self.entries[key] = layer
        atomic_write_json(self.path, {"version": 1, "layers": {k: asdict(v) for k, v in self.entries.items()}})

    def forget(self, key: str) -> None:
        if self.entries.pop(key, None) is not None:
            atomic_write_json(self.path, {"version": 1,
                                          "layers": {k: asdict(v) for k, v in self.entries.items()}})
