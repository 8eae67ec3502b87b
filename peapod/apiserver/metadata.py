"""ObjectMeta bookkeeping the server owns: uid, timestamps, names, managed fields."""

from __future__ import annotations

import copy
import re
import uuid
from typing import Any

# System fields a client cannot change on update (kube resets them from the stored object).
_SYSTEM_FIELDS = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink")

_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def new_uid() -> str:
    return str(uuid.uuid4())


def reset_for_create(meta: dict[str, Any], now: str) -> None:
    meta["uid"] = new_uid()
    meta["creationTimestamp"] = now
    for k in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "generation"):
        meta.pop(k, None)


def keep_system_fields(new_meta: dict[str, Any], old_meta: dict[str, Any]) -> None:
    for k in _SYSTEM_FIELDS:
        if k in old_meta:
            new_meta[k] = copy.deepcopy(old_meta[k])
        else:
            new_meta.pop(k, None)
    if "generation" in old_meta:
        new_meta["generation"] = old_meta["generation"]
    else:
        new_meta.pop("generation", None)
    if "managedFields" not in new_meta and "managedFields" in old_meta:
        new_meta["managedFields"] = copy.deepcopy(old_meta["managedFields"])


def remove_path(obj: Any, path: str) -> None:
    """Remove the field at a decode-style path (``spec.containers[0].foo``); silently skip misses."""
    tokens: list[str | int] = [
        m.group(1) if m.group(1) is not None else int(m.group(2)) for m in _PATH_TOKEN.finditer(path)
    ]
    if not tokens:
        return
    node = obj
    for t in tokens[:-1]:
        try:
            node = node[t]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            return
    last = tokens[-1]
    if isinstance(node, dict) and isinstance(last, str):
        node.pop(last, None)


def same_ignoring_managed(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two objects differ only in managedFields and resourceVersion (a no-op write)."""

    def strip(o: dict[str, Any]) -> dict[str, Any]:
        o = dict(o)
        m = dict(o.get("metadata") or {})
        m.pop("managedFields", None)
        m.pop("resourceVersion", None)
        o["metadata"] = m
        return o

    return strip(a) == strip(b)


def user_agent_manager(user_agent: str | None) -> str:
    """Default fieldManager: the user agent's first path segment, like kube (max 128 bytes)."""
    ua = (user_agent or "").strip()
    name = ua.split("/", 1)[0] if ua else "unknown"
    return name[:128] or "unknown"
