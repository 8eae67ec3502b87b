"""Between the wire form of a resource and the form kept in the store.

Most resources are stored exactly as served. events.k8s.io/v1 Events share storage with core/v1
Events and are converted on the way in and out.
"""

from __future__ import annotations

from typing import Any

from peapod.api import jsoncodec
from peapod.api.resources import ResourceInfo
from peapod.apiserver.events_conversion import core_to_events_v1, events_v1_to_core


def shares_core_events(info: ResourceInfo) -> bool:
    return info.group == "events.k8s.io" and info.resource == "events"


def to_storage(info: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
    if shares_core_events(info):
        return events_v1_to_core(obj)
    obj["apiVersion"] = info.api_version
    obj["kind"] = info.kind
    return obj


def stored_copy(info: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
    """The storage form of ``obj`` without changing ``obj``: the top level and metadata (what storage
    writes into: apiVersion, kind, resourceVersion) are copied, the rest is shared, not deep-copied."""
    if shares_core_events(info):
        return events_v1_to_core(jsoncodec.clone(obj))
    out = dict(obj)
    out["metadata"] = dict(obj.get("metadata") or {})
    return to_storage(info, out)


def from_storage(info: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
    """The served form of a stored object (the stored dict is not modified)."""
    if shares_core_events(info):
        return core_to_events_v1(obj)
    out = dict(obj)
    out["apiVersion"] = info.api_version
    out["kind"] = info.kind
    return out
