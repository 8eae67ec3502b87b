"""Patch-relevant facts about a field, read from the upstream schema.

A "type" here is a raw schema dict as found in a property (it may be a ``$ref`` that carries
``x-kubernetes-*`` extensions next to it) or ``None`` when nothing is known; unknown types behave
like structured-merge-diff's deduced type: maps are merged key by key, lists are atomic.
"""

from __future__ import annotations

from typing import Any

from peapod.api import schema

Type = dict[str, Any] | None

# Defaults of list-map key fields that the upstream OpenAPI declares (ports' protocol).
_KEY_DEFAULTS = {"protocol": "TCP"}


def root(group: str, version: str, kind: str) -> Type:
    return schema.kind_schema(group, version, kind)


def _ext(t: Type, name: str) -> Any:
    if t is None:
        return None
    if name in t:
        return t[name]
    r = schema.resolve(t)
    return r.get(name) if r else None


def field(t: Type, name: str) -> Type:
    """Type of ``name`` inside an object type (a declared property or the map's value type)."""
    return schema.child(t, name) if t is not None else None


def is_declared(t: Type, name: str) -> bool:
    """True for a struct field (declared property), False for a map key or an unknown type."""
    r = schema.resolve(t) if t is not None else None
    return bool(r and name in (r.get("properties") or {}))


def item(t: Type) -> Type:
    return schema.items(t) if t is not None else None


def patch_meta(t: Type) -> tuple[list[str], str]:
    """Strategic-merge strategies (e.g. ["merge", "retainKeys"]) and merge key of a field."""
    strategy = _ext(t, "x-kubernetes-patch-strategy") or ""
    key = _ext(t, "x-kubernetes-patch-merge-key") or ""
    return ([s for s in strategy.split(",") if s], key)


def list_semantics(t: Type) -> tuple[str, list[str]]:
    """Server-side-apply list type: ("atomic"|"set"|"map", map keys)."""
    list_type = _ext(t, "x-kubernetes-list-type")
    if list_type == "map":
        return "map", list(_ext(t, "x-kubernetes-list-map-keys") or [])
    if list_type in ("set", "atomic"):
        return list_type, []
    strategies, key = patch_meta(t)
    if "merge" in strategies:
        return ("map", [key]) if key else ("set", [])
    return "atomic", []


def map_is_atomic(t: Type) -> bool:
    return _ext(t, "x-kubernetes-map-type") == "atomic"


def key_default(name: str) -> Any:
    return _KEY_DEFAULTS.get(name)
