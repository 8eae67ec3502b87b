"""Objects in the Store: (de)serialization, keys and store errors mapped to API errors.

Stored values are the JSON object without ``metadata.resourceVersion``; the resourceVersion is the
key's ``mod_revision`` and is filled in when an object is read (as kube-apiserver does on etcd).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import contextmanager
from typing import Any

from peapod.api import errors, jsoncodec
from peapod.api.resources import ResourceInfo
from peapod.store.base import (
    CompactedError,
    ConflictError,
    Event,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    ListResult,
    Store,
    StoreError,
    StoreUnavailableError,
)

_METADATA_PREFIX = b'{"metadata":{'


def encode(obj: dict[str, Any]) -> bytes:
    """The stored form: metadata first and without resourceVersion (the store revision is the
    resourceVersion), no apiVersion/kind (the resource says them). Starting with ``{"metadata":{``
    lets an unfiltered LIST splice stored bytes into its answer without decoding them (raw_item)."""
    meta = dict(obj.get("metadata") or {})
    meta.pop("resourceVersion", None)
    out: dict[str, Any] = {"metadata": meta}
    for k, v in obj.items():
        if k not in ("metadata", "apiVersion", "kind"):
            out[k] = v
    return jsoncodec.dumps(out)


def raw_item(kv: KeyValue, head: bytes) -> bytes | None:
    """The served JSON of a stored object without decoding it: ``head`` (apiVersion and kind) and
    the resourceVersion spliced in front of the stored metadata. None if the value is not in the
    stored form (then the caller decodes)."""
    raw = kv.value
    if not raw.startswith(_METADATA_PREFIX):
        return None
    n = len(_METADATA_PREFIX)
    sep = b"" if raw[n : n + 1] == b"}" else b","
    return head + b'"metadata":{"resourceVersion":"' + str(kv.mod_revision).encode() + b'"' + sep + raw[n:]


def decode(kv: KeyValue) -> dict[str, Any]:
    obj = jsoncodec.loads(kv.value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
    return obj


def decode_event(ev: Event) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(object, previous object) of a store event; a DELETE's object carries the delete revision."""
    obj = jsoncodec.loads(ev.kv.value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(ev.kv.mod_revision)
    prev = None
    if ev.prev is not None:
        prev = decode(ev.prev)
    return obj, prev


class Conflict(Exception):
    """CAS lost: the caller re-reads and retries (or answers 409 when the client gave a resourceVersion)."""


@contextmanager
def store_errors(info: ResourceInfo, name: str = "") -> Any:
    try:
        yield
    except KeyExistsError:
        raise errors.already_exists(info.group, info.resource, name) from None
    except KeyNotFoundError:
        raise errors.not_found(info.group, info.resource, name) from None
    except ConflictError:
        raise Conflict() from None
    except CompactedError as e:
        raise errors.gone(f"The resourceVersion for the provided list is too old. ({e})") from None
    except FutureRevisionError as e:
        err = errors.ApiError(
            504,
            "Timeout",
            f"Timeout: Too large resource version: {e.requested}, current: {e.current}",
            {
                "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                "retryAfterSeconds": 1,
            },
        )
        raise err from None
    except StoreUnavailableError as e:
        raise errors.ApiError(503, "ServiceUnavailable", f"storage is unavailable: {e}") from None
    except StoreError as e:
        raise errors.internal(str(e)) from None


class Storage:
    """Typed access to one Store for every resource."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def get(
        self, info: ResourceInfo, namespace: str | None, name: str
    ) -> tuple[dict[str, Any], int] | None:
        with store_errors(info, name):
            kv = await self.store.get(info.key(namespace, name))
        if kv is None:
            return None
        return decode(kv), kv.mod_revision

    async def list(
        self,
        info: ResourceInfo,
        namespace: str | None,
        *,
        revision: int = 0,
        limit: int = 0,
        start_key: str | None = None,
    ) -> ListResult:
        with store_errors(info):
            return await self.store.list(
                info.prefix(namespace), revision=revision, limit=limit, start_key=start_key
            )

    async def create(
        self, info: ResourceInfo, namespace: str | None, name: str, obj: dict[str, Any]
    ) -> dict[str, Any]:
        with store_errors(info, name):
            kv = await self.store.create(info.key(namespace, name), encode(obj))
        obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
        return obj

    async def update(
        self, info: ResourceInfo, namespace: str | None, name: str, obj: dict[str, Any], expected: int
    ) -> dict[str, Any]:
        with store_errors(info, name):
            kv = await self.store.update(info.key(namespace, name), encode(obj), expected)
        obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
        return obj

    async def delete(
        self, info: ResourceInfo, namespace: str | None, name: str, expected: int
    ) -> dict[str, Any]:
        with store_errors(info, name):
            kv = await self.store.delete(info.key(namespace, name), expected)
        return decode(kv)

    async def current_revision(self) -> int:
        with store_errors(ResourceInfo("", "v1", "", "", False)):
            return await self.store.current_revision()

    def watch(self, prefix: str, after: int) -> AsyncIterator[Event]:
        return self.store.watch(prefix, after)
