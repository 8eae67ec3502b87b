"""Per-kind rules applied on create and update, like kube's registry strategies.

PrepareForCreate/PrepareForUpdate: which parts of an object a request may set (status is owned by
the status subresource for kinds that have one), what the server fills in, when generation moves.
"""

from __future__ import annotations

from typing import Any

from peapod.api import jsoncodec
from peapod.api.resources import ResourceInfo

# Kinds whose metadata.generation tracks spec changes (kube sets it in these strategies).
GENERATION_KINDS = {("", "Pod"), ("apps", "ReplicaSet"), ("apps", "Deployment")}

# Kinds that may be created by PUT (kube's AllowCreateOnUpdate): only Events among ours.
CREATE_ON_UPDATE = {("", "Event"), ("events.k8s.io", "Event")}


def tracks_generation(info: ResourceInfo) -> bool:
    return (info.group, info.kind) in GENERATION_KINDS


def allows_create_on_update(info: ResourceInfo) -> bool:
    return (info.group, info.kind) in CREATE_ON_UPDATE


def has_status_subresource(info: ResourceInfo) -> bool:
    return info.subresource("status") is not None


def prepare_for_create(info: ResourceInfo, obj: dict[str, Any]) -> None:
    """Server-owned fields on create (after defaulting, before validation)."""
    meta = obj["metadata"]
    if tracks_generation(info):
        meta["generation"] = 1
    key = (info.group, info.kind)
    if key == ("", "Pod"):
        from peapod.api.defaults import qos_class

        obj["status"] = {"phase": "Pending", "qosClass": qos_class(obj)}
    elif key == ("", "Namespace"):
        obj.setdefault("spec", {})["finalizers"] = ["kubernetes"]
        obj["status"] = {"phase": "Active"}
        _namespace_name_label(obj)
    elif key in (("apps", "Deployment"), ("apps", "ReplicaSet")):
        obj["status"] = {}
    elif key == ("", "Node"):
        pass  # kubelets create their Node with status
    elif has_status_subresource(info):
        obj.pop("status", None)


def prepare_for_update(info: ResourceInfo, new: dict[str, Any], old: dict[str, Any]) -> None:
    """PUT/PATCH of the main resource: status comes from the old object for kinds with /status."""
    if has_status_subresource(info):
        if "status" in old:
            new["status"] = jsoncodec.clone(old["status"])
        else:
            new.pop("status", None)
    if (info.group, info.kind) == ("", "Namespace"):
        _namespace_name_label(new)
        spec = new.setdefault("spec", {})
        old_fin = (old.get("spec") or {}).get("finalizers")
        if old_fin is None:
            spec.pop("finalizers", None)
        else:
            spec["finalizers"] = list(old_fin)
    bump_generation(info, new, old)


def _namespace_name_label(ns: dict[str, Any]) -> None:
    """kube labels every namespace with kubernetes.io/metadata.name=<name> (immutable)."""
    meta = ns["metadata"]
    labels = meta.get("labels")
    if not isinstance(labels, dict):
        labels = meta["labels"] = {}
    labels["kubernetes.io/metadata.name"] = meta.get("name", "")


def bump_generation(info: ResourceInfo, new: dict[str, Any], old: dict[str, Any]) -> None:
    if not tracks_generation(info):
        return
    gen = old.get("metadata", {}).get("generation") or 1
    if new.get("spec") != old.get("spec"):
        gen += 1
    new["metadata"]["generation"] = gen


def status_update(info: ResourceInfo, new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """PUT/PATCH of /status: only status changes; everything else is kept from the old object."""
    out = jsoncodec.clone({k: v for k, v in old.items() if k != "status"})  # old status is replaced
    if "status" in new:
        out["status"] = jsoncodec.clone(new["status"])
    nm = new.get("metadata")
    if isinstance(nm, dict) and "managedFields" in nm:
        out["metadata"]["managedFields"] = nm["managedFields"]
    return out


def finalize_update(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """PUT of namespaces/<n>/finalize: only spec.finalizers changes."""
    out = jsoncodec.clone(old)
    fins = (new.get("spec") or {}).get("finalizers")
    spec = out.setdefault("spec", {})
    if fins:
        spec["finalizers"] = list(fins)
    else:
        spec.pop("finalizers", None)
    return out


def ephemeral_update(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """PUT/PATCH of pods/<n>/ephemeralcontainers: only spec.ephemeralContainers changes."""
    out = jsoncodec.clone(old)
    eph = (new.get("spec") or {}).get("ephemeralContainers")
    if eph:
        out.setdefault("spec", {})["ephemeralContainers"] = jsoncodec.clone(eph)
    else:
        out.get("spec", {}).pop("ephemeralContainers", None)
    return out
