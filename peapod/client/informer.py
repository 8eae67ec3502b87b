"""Informer: a list+watch cache of one resource, with event handlers (client-go's SharedInformer).

``run()`` lists, then watches from the list's resourceVersion with bookmarks; when the watch ends
it resumes from the last seen resourceVersion, and on 410 Gone it relists and reports the
difference to the handlers (deletions it missed included). Handlers must be quick and
non-blocking: they typically only enqueue keys.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from peapod.api.errors import ApiError
from peapod.api.resources import ResourceInfo
from peapod.client.rest import ApiClient
from peapod.clock import Clock

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def object_key(obj: Obj) -> str:
    md = obj.get("metadata", {})
    ns = md.get("namespace")
    return f"{ns}/{md.get('name')}" if ns else str(md.get("name"))


class EventHandlers:
    """Add/update/delete handlers, called in the order they were added (shared by the informers)."""

    def __init__(self) -> None:
        self._on_add: list[Callable[[Obj], None]] = []
        self._on_update: list[Callable[[Obj, Obj], None]] = []
        self._on_delete: list[Callable[[Obj], None]] = []

    def add_handlers(
        self, on_add: Callable[[Obj], None] | None = None,
        on_update: Callable[[Obj, Obj], None] | None = None, on_delete: Callable[[Obj], None] | None = None,
    ) -> None:
        if on_add:
            self._on_add.append(on_add)
        if on_update:
            self._on_update.append(on_update)
        if on_delete:
            self._on_delete.append(on_delete)

    def remove_handlers(
        self, on_add: Callable[[Obj], None] | None = None,
        on_update: Callable[[Obj, Obj], None] | None = None, on_delete: Callable[[Obj], None] | None = None,
    ) -> None:
        """Stop calling handlers given to :meth:`add_handlers` (client-go's RemoveEventHandler)."""
        for handlers, h in ((self._on_add, on_add), (self._on_update, on_update), (self._on_delete, on_delete)):
            if h is not None and h in handlers:
                handlers.remove(h)  # type: ignore[arg-type]

    def _emit_add(self, obj: Obj) -> None:
        for h in self._on_add:
            h(obj)

    def _emit_update(self, old: Obj, new: Obj) -> None:
        for h in self._on_update:
            h(old, new)

    def _emit_delete(self, obj: Obj) -> None:
        for h in self._on_delete:
            h(obj)


class Informer(EventHandlers):
    def __init__(
        self, client: ApiClient, info: ResourceInfo, *, clock: Clock, namespace: str | None = None,
        label_selector: str | None = None, field_selector: str | None = None, watch_timeout: int = 300,
    ) -> None:
        self.client = client
        self.info = info
        self._clock = clock
        self._namespace = namespace
        self._label_selector = label_selector
        self._field_selector = field_selector
        self._watch_timeout = watch_timeout
        super().__init__()
        self._items: dict[str, Obj] = {}
        self.synced = asyncio.Event()
        self.resource_version = ""

    # -- cache reads -----------------------------------------------------------------------------
    def get(self, key: str) -> Obj | None:
        return self._items.get(key)

    def list(self, namespace: str | None = None) -> list[Obj]:
        if namespace is None:
            return list(self._items.values())
        return [o for o in self._items.values() if o["metadata"].get("namespace") == namespace]

    def keys(self) -> list[str]:
        return list(self._items)

    # -- the loop --------------------------------------------------------------------------------
    async def run(self) -> None:
        backoff = 0.2
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                await self._watch_once()
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                if e.code == 410:
                    need_list = True
                    continue
                log.info("%s informer: %s; retrying", self.info.resource, e.message)
                await self._clock.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            except Exception as e:
                log.info("%s informer: %s; retrying", self.info.resource, e)
                await self._clock.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _relist(self) -> None:
        items: list[Obj] = []
        cont: str | None = None
        while True:
            page = await self.client.list(
                self.info, self._namespace, label_selector=self._label_selector,
                field_selector=self._field_selector, limit=500, continue_=cont,
            )
            kind = self.info.kind
            for it in page.get("items", []):
                it.setdefault("kind", kind)
                it.setdefault("apiVersion", self.info.api_version)
                items.append(it)
            cont = page.get("metadata", {}).get("continue")
            if not cont:
                self.resource_version = page["metadata"]["resourceVersion"]
                break
        fresh = {object_key(o): o for o in items}
        old = self._items
        self._items = fresh
        for key, obj in old.items():
            if key not in fresh:
                self._emit_delete(obj)
        for key, obj in fresh.items():
            if key in old:
                if old[key]["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                    self._emit_update(old[key], obj)
            else:
                self._emit_add(obj)
        self.synced.set()

    async def _watch_once(self) -> None:
        async for typ, obj in self.client.watch(
            self.info, self._namespace, resource_version=self.resource_version,
            label_selector=self._label_selector, field_selector=self._field_selector,
            timeout_seconds=self._watch_timeout,
        ):
            if typ == "ERROR":
                raise ApiError(int(obj.get("code") or 500), obj.get("reason", ""), obj.get("message", ""))
            rv = obj.get("metadata", {}).get("resourceVersion")
            if typ == "BOOKMARK":
                if rv:
                    self.resource_version = rv
                continue
            obj.setdefault("kind", self.info.kind)
            obj.setdefault("apiVersion", self.info.api_version)
            key = object_key(obj)
            if typ == "DELETED":
                self._items.pop(key, None)
                self._emit_delete(obj)
            else:
                old = self._items.get(key)
                self._items[key] = obj
                if old is None:
                    self._emit_add(obj)
                else:
                    self._emit_update(old, obj)
            if rv:
                self.resource_version = rv
