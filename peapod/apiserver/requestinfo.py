"""Parse a resource URL the way kube-apiserver's RequestInfoFactory does."""

from __future__ import annotations

from dataclasses import dataclass

_NAMESPACE_SUBRESOURCES = {"status", "finalize"}


@dataclass(frozen=True)
class RequestInfo:
    group: str
    version: str
    resource: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    watch_path: bool = False  # legacy /watch/ prefix


def parse_resource_path(path: str) -> RequestInfo | None:
    """``/api/v1/namespaces/ns/pods/x/log`` -> RequestInfo; None when the path is not a resource path."""
    parts = [p for p in path.split("/") if p != ""]
    if not parts:
        return None
    if parts[0] == "api":
        if len(parts) < 3:
            return None
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis":
        if len(parts) < 4:
            return None
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    watch = False
    if rest and rest[0] == "watch":
        watch = True
        rest = rest[1:]
        if not rest:
            return None
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
        else:
            # The namespace object itself: /namespaces/<name>[/status|/finalize]
            name = rest[1]
            sub = rest[2] if len(rest) > 2 else None
            if len(rest) > 3:
                return None
            return RequestInfo(group, version, "namespaces", None, name, sub, watch)
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if len(rest) > 3:
        return None
    return RequestInfo(group, version, resource, namespace, name, sub, watch)
