"""Removing a finalizer safely: read, drop it, write back with the read resourceVersion."""

from __future__ import annotations

from peapod.api.errors import ApiError
from peapod.api.resources import ResourceInfo
from peapod.client.rest import ApiClient


async def remove_finalizer(
    client: ApiClient, info: ResourceInfo, namespace: str | None, name: str, finalizer: str, uid: str
) -> bool:
    """Drop ``finalizer`` from the object if it is still the same object (uid). True if removed."""
    for _ in range(5):
        try:
            obj = await client.get(info, name, namespace)
        except ApiError as e:
            if e.code == 404:
                return False
            raise
        md = obj["metadata"]
        if md.get("uid") != uid or finalizer not in md.get("finalizers", []):
            return False
        md["finalizers"] = [f for f in md["finalizers"] if f != finalizer]
        try:
            await client.update(info, obj)
            return True
        except ApiError as e:
            if e.code == 404:
                return False
            if e.code != 409:
                raise
    raise ApiError(409, "Conflict", f"could not remove finalizer {finalizer} from {name}: too many conflicts")
