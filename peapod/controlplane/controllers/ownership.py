"""API calls shared by controllers that adopt and release their dependents (kube's ControllerRef)."""

from __future__ import annotations

from typing import Any

from peapod.api.errors import ApiError
from peapod.api.resources import ResourceInfo
from peapod.client.rest import ApiClient

Obj = dict[str, Any]


async def owner_can_adopt(client: ApiClient, info: ResourceInfo, owner: Obj) -> bool:
    """Recheck with a live read: never adopt for an owner that is gone, replaced or being deleted."""
    md = owner.get("metadata") or {}
    try:
        fresh = await client.get(info, md["name"], md.get("namespace"))
    except ApiError as e:
        if e.code == 404:
            return False
        raise
    fmd = fresh.get("metadata") or {}
    return fmd.get("uid") == md.get("uid") and not fmd.get("deletionTimestamp")


async def patch_dependent(client: ApiClient, info: ResourceInfo, obj: Obj, patch: list[Obj]) -> Obj | None:
    """Apply an adopt/release json-patch; None when the object is gone. A 409/422 (the patch's test
    op failed: it changed under us) propagates, and the requeued sync decides again."""
    md = obj.get("metadata") or {}
    try:
        return await client.patch(info, md["name"], patch, md.get("namespace"), patch_type="json")
    except ApiError as e:
        if e.code == 404:
            return None
        raise
