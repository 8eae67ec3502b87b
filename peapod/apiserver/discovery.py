"""API discovery documents generated from the resource registry.

Legacy discovery (``/api``, ``/apis``, ``/api/v1``, ``/apis/<g>/<v>``) and aggregated discovery
(``apidiscovery.k8s.io`` ``v2``/``v2beta1``, one request for everything). Like kube-apiserver, a
group is listed only when it serves resources of its own: ``autoscaling`` (Scale) and
``authentication.k8s.io`` (TokenRequest) appear only as the group/version of subresources.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from peapod.api.resources import REGISTRY, Registry, ResourceInfo, Subresource

DISCOVERY_GROUP = "apidiscovery.k8s.io"
DISCOVERY_VERSIONS = ("v2", "v2beta1")
_AS = "APIGroupDiscoveryList"


def storage_version_hash(group: str, version: str, kind: str) -> str:
    """kube-apiserver's storageVersionHash: base64 of the first 8 bytes of sha256("g/v/K")."""
    digest = hashlib.sha256(f"{group}/{version}/{kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def _gv(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


# -- legacy discovery ---------------------------------------------------------------------------


def api_versions(server_address: str) -> dict[str, Any]:
    """``GET /api``: APIVersions for the core group."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _groups(registry: Registry) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for group, version in registry.group_versions():
        if group:
            out.setdefault(group, []).append(version)
    return out


def _api_group(group: str, versions: list[str]) -> dict[str, Any]:
    vs = [{"groupVersion": _gv(group, v), "version": v} for v in versions]
    return {"name": group, "versions": vs, "preferredVersion": vs[0]}


def api_group_list(registry: Registry = REGISTRY) -> dict[str, Any]:
    """``GET /apis``: APIGroupList of every named group that serves resources."""
    groups = [_api_group(g, vs) for g, vs in _groups(registry).items()]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(group: str, registry: Registry = REGISTRY) -> dict[str, Any] | None:
    """``GET /apis/<group>``: APIGroup, or None when the group is not served."""
    versions = _groups(registry).get(group)
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_api_group(group, versions)}


def _api_resource(r: ResourceInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": r.resource,
        "singularName": r.singular_name,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": list(r.verbs),
    }
    if r.short_names:
        out["shortNames"] = list(r.short_names)
    if r.categories:
        out["categories"] = list(r.categories)
    out["storageVersionHash"] = storage_version_hash(r.group, r.version, r.kind)
    return out


def _api_subresource(r: ResourceInfo, s: Subresource) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": f"{r.resource}/{s.name}",
        "singularName": "",
        "namespaced": r.namespaced,
    }
    if s.group or s.version:
        out["group"] = s.group
        out["version"] = s.version
    out["kind"] = s.kind
    out["verbs"] = list(s.verbs)
    return out


def api_resource_list(group: str, version: str, registry: Registry = REGISTRY) -> dict[str, Any] | None:
    """``GET /api/v1`` or ``/apis/<g>/<v>``: APIResourceList, None for an unknown group/version."""
    resources = sorted(registry.in_group_version(group, version), key=lambda r: r.resource)
    if not resources:
        return None
    items: list[dict[str, Any]] = []
    for r in resources:
        items.append(_api_resource(r))
        for s in sorted(r.subresources, key=lambda s: s.name):
            items.append(_api_subresource(r, s))
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": _gv(group, version),
        "resources": items,
    }


# -- aggregated discovery -----------------------------------------------------------------------


def _discovery_resource(r: ResourceInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resource": r.resource,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": "Namespaced" if r.namespaced else "Cluster",
        "singularResource": r.singular_name,
        "verbs": list(r.verbs),
    }
    if r.short_names:
        out["shortNames"] = list(r.short_names)
    if r.categories:
        out["categories"] = list(r.categories)
    if r.subresources:
        out["subresources"] = [
            {
                "subresource": s.name,
                "responseKind": {
                    "group": s.group if (s.group or s.version) else r.group,
                    "version": s.version or r.version,
                    "kind": s.kind,
                },
                "verbs": list(s.verbs),
            }
            for s in sorted(r.subresources, key=lambda s: s.name)
        ]
    return out


def _discovery_group(group: str, versions: list[str], registry: Registry) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": group} if group else {}
    metadata["creationTimestamp"] = None
    return {
        "metadata": metadata,
        "versions": [
            {
                "version": v,
                "resources": [
                    _discovery_resource(r)
                    for r in sorted(registry.in_group_version(group, v), key=lambda r: r.resource)
                ],
                "freshness": "Current",
            }
            for v in versions
        ],
    }


def aggregated_discovery(core: bool, version: str = "v2", registry: Registry = REGISTRY) -> dict[str, Any]:
    """APIGroupDiscoveryList for ``/api`` (``core=True``) or ``/apis``; ``version`` is v2 or v2beta1."""
    if version not in DISCOVERY_VERSIONS:
        raise ValueError(f"unknown aggregated discovery version {version!r}")
    if core:
        core_versions = [v for g, v in registry.group_versions() if g == ""]
        items = [_discovery_group("", core_versions, registry)] if core_versions else []
    else:
        items = [_discovery_group(g, vs, registry) for g, vs in _groups(registry).items()]
    return {
        "kind": _AS,
        "apiVersion": f"{DISCOVERY_GROUP}/{version}",
        "metadata": {},
        "items": items,
    }


def _media_ranges(accept: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        if not fields[0]:
            continue
        params: dict[str, str] = {}
        for f in fields[1:]:
            k, _, v = f.partition("=")
            params[k.strip().lower()] = v.strip().strip('"')
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 1.0
        out.append((fields[0].lower(), params, q))
    return out


def negotiate_discovery(accept_header: str | None) -> tuple[str | None, str]:
    """Pick the discovery format for an Accept header.

    Returns ``("v2"|"v2beta1", content_type)`` for aggregated discovery (the content type to echo,
    which client-go checks), or ``(None, "application/json")`` for legacy discovery. Only JSON is
    offered: a protobuf aggregated range is skipped in favour of the next acceptable one.
    """
    ranges = _media_ranges(accept_header or "")
    # Stable sort by quality keeps the client's order among equals (kube's negotiation does the same).
    for mtype, params, q in sorted(ranges, key=lambda r: -r[2]):
        if q <= 0:
            continue
        if mtype != "application/json":
            continue
        if (
            params.get("g") == DISCOVERY_GROUP
            and params.get("as") == _AS
            and params.get("v") in DISCOVERY_VERSIONS
        ):
            v = params["v"]
            return v, f"application/json;g={DISCOVERY_GROUP};v={v};as={_AS}"
        if not params.get("as"):
            return None, "application/json"
    return None, "application/json"
