"""Shared informers (client-go's SharedInformerFactory): one list+watch and one cache per resource.

Every controller and the scheduler in a control-plane process want pods, nodes, namespaces...
Giving each its own :class:`Informer` means one watch stream, one JSON decode of every event and
one full copy of every object per consumer: at 30,000 pods that is gigabytes and most of a core.
``InformerFactory.informer(...)`` instead hands each consumer a :class:`SharedInformer` view with the
``Informer`` interface (``add_handlers``, ``run``, ``synced``, ``get``, ``list``, ``keys``) over one
underlying informer per (resource, namespace, selectors). The underlying informer runs while at
least one view runs; a view that starts after it synced first receives every cached object as an
add (as client-go replays to a late handler) and stops receiving events once its ``run()`` ends.

Objects in the shared cache are shared between consumers: handlers and readers must not mutate
them (copy first), exactly the rule client-go's listers impose.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from peapod.api.resources import ResourceInfo
from peapod.client.informer import EventHandlers, Informer
from peapod.client.rest import ApiClient
from peapod.clock import Clock

Obj = dict[str, Any]
_Key = tuple[str, str, str, str | None, str | None, str | None]


class _Source:
    """The one underlying informer behind every view with the same key, run while views run."""

    def __init__(self, make: Callable[[], Informer]) -> None:
        self._make = make
        self.informer = make()
        self._task: asyncio.Task[None] | None = None
        self._stale = False  # it ran and stopped: a fresh one lists again instead of trusting old state
        self._runners = 0

    def acquire(self) -> Informer:
        self._runners += 1
        if self._task is None or self._task.done():
            if self._stale:
                self.informer = self._make()
            self._stale = True
            self._task = asyncio.create_task(self.informer.run(), name=f"informer {self.informer.info.resource}")
        return self.informer

    async def release(self) -> None:
        self._runners -= 1
        if self._runners > 0 or self._task is None:
            return
        task, self._task = self._task, None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


class SharedInformer(EventHandlers):
    """One consumer's view of a shared informer; the same interface as :class:`Informer`."""

    def __init__(self, source: _Source, info: ResourceInfo) -> None:
        super().__init__()
        self._source = source
        self.info = info
        self._attached: Informer | None = None
        self.synced = asyncio.Event()

    def add_handlers(
        self, on_add: Callable[[Obj], None] | None = None,
        on_update: Callable[[Obj, Obj], None] | None = None, on_delete: Callable[[Obj], None] | None = None,
    ) -> None:
        if self._attached is not None:
            raise RuntimeError("add handlers before the shared informer's run() starts")
        super().add_handlers(on_add, on_update, on_delete)

    # -- cache reads (empty until the underlying informer has listed) -----------------------------
    @property
    def cache(self) -> Informer:
        """The underlying informer (read-only use)."""
        return self._attached or self._source.informer

    def get(self, key: str) -> Obj | None:
        return self.cache.get(key)

    def list(self, namespace: str | None = None) -> list[Obj]:
        return self.cache.list(namespace)

    def keys(self) -> list[str]:
        return self.cache.keys()

    @property
    def resource_version(self) -> str:
        return self.cache.resource_version

    # -- running ---------------------------------------------------------------------------------
    async def run(self) -> None:
        """Receive events until cancelled (the underlying informer stops when its last view stops)."""
        informer = self._source.acquire()
        try:
            await informer.synced.wait()
            # No await from here to the attach: the replay and the live events neither overlap nor leave a gap.
            for obj in informer.list():
                self._emit_add(obj)
            informer.add_handlers(*self._handlers())
            self._attached = informer
            self.synced.set()
            await asyncio.Event().wait()
        finally:
            if self._attached is not None:
                self._attached.remove_handlers(*self._handlers())
            self._attached = None
            self.synced.clear()
            await self._source.release()

    def _handlers(self) -> tuple[Callable[[Obj], None], Callable[[Obj, Obj], None], Callable[[Obj], None]]:
        return self._emit_add, self._emit_update, self._emit_delete


class InformerFactory:
    """Hands out :class:`SharedInformer` views; one underlying informer per distinct list+watch."""

    def __init__(self, client: ApiClient, *, clock: Clock) -> None:
        self.client = client
        self.clock = clock
        self._sources: dict[_Key, _Source] = {}

    def informer(
        self, info: ResourceInfo, *, namespace: str | None = None, label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> SharedInformer:
        key: _Key = (info.group, info.version, info.resource, namespace, label_selector, field_selector)
        source = self._sources.get(key)
        if source is None:
            def make() -> Informer:
                return Informer(self.client, info, clock=self.clock, namespace=namespace,
                                label_selector=label_selector, field_selector=field_selector)
            source = self._sources[key] = _Source(make)
        return SharedInformer(source, info)
