"""Watch cache: one store watch per storage prefix, fanned out to every client watch.

Each cache keeps a bounded ring of recent events so a client can resume from any resourceVersion
the ring still covers; older ones get 410 Expired (as kube-apiserver's cacher does). At start the
cache replays up to ``history`` revisions of the store's log, so watches survive a server restart.
A client that falls too far behind is disconnected (it re-watches), so one slow client cannot
grow memory without bound.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from peapod.api import errors, jsoncodec
from peapod.store.base import CompactedError, Event, Store, StoreError

log = logging.getLogger(__name__)


@dataclass
class CachedEvent:
    type: str  # PUT | DELETE
    key: str
    revision: int
    obj: dict[str, Any]  # storage form, resourceVersion set; shared: never mutate
    prev: dict[str, Any] | None
    created: bool
    encoded: dict[str, bytes] = field(default_factory=dict)  # per served form


def _cached(ev: Event) -> CachedEvent:
    obj = jsoncodec.loads(ev.kv.value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(ev.kv.mod_revision)
    prev = None
    if ev.prev is not None:
        prev = jsoncodec.loads(ev.prev.value)
        prev.setdefault("metadata", {})["resourceVersion"] = str(ev.prev.mod_revision)
    return CachedEvent(ev.type, ev.kv.key, ev.kv.mod_revision, obj, prev, ev.created or ev.prev is None)


class Subscription:
    """One client's view of a cache: events with revision > ``after``, in order."""

    def __init__(self, cache: WatchCache, after: int, limit: int) -> None:
        self.cache = cache
        self.after = after
        self.queue: asyncio.Queue[CachedEvent | None] = asyncio.Queue()
        self.limit = limit
        self.closed = False
        self.overflowed = False

    def push(self, ev: CachedEvent) -> None:
        if self.closed or ev.revision <= self.after:
            return
        if self.queue.qsize() >= self.limit:
            self.overflowed = True
            self.close()
            return
        self.queue.put_nowait(ev)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)
            self.cache.subscribers.discard(self)

    async def get(self) -> CachedEvent | None:
        """The next event, or None when the subscription ended (cache stopped or client too slow)."""
        return await self.queue.get()

    def pending(self) -> bool:
        return not self.queue.empty()

    def get_nowait(self) -> CachedEvent | None:
        """The next queued event (call only when ``pending()``), or None when the subscription ended."""
        return self.queue.get_nowait()

    @property
    def progress(self) -> int:
        """A resourceVersion a bookmark may carry: every event up to it has been queued."""
        return max(self.after, self.cache.latest)


class WatchCache:
    def __init__(self, store: Store, prefix: str, *, capacity: int = 1024, history: int = 4096) -> None:
        self.store = store
        self.prefix = prefix
        self.capacity = capacity
        self.history = history
        self.buffer: collections.deque[CachedEvent] = collections.deque()
        self.coverage = 0  # events with revision > coverage are all in the buffer or later
        self.latest = 0  # newest revision this cache has dispatched (or started at)
        self.subscribers: set[Subscription] = set()
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        current = await self.store.current_revision()
        compacted = await self.store.compacted_revision()
        start = max(compacted, current - self.history, 0)
        self.coverage = self.latest = start
        self._task = asyncio.create_task(self._run(), name=f"watchcache {self.prefix}")
        self.ready.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        for sub in list(self.subscribers):
            sub.close()

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            try:
                async for ev in self.store.watch(self.prefix, self.latest):
                    self._dispatch(_cached(ev))
                    backoff = 0.05
            except asyncio.CancelledError:
                raise
            except CompactedError:
                # History we had not read is gone: start over at the present; every watcher relists.
                self._reset(await self._safe_current())
            except (StoreError, OSError, ValueError) as e:
                log.warning("watch cache %s: store watch failed: %s", self.prefix, e)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _safe_current(self) -> int:
        try:
            return await self.store.current_revision()
        except StoreError:
            return self.latest

    def _reset(self, revision: int) -> None:
        self.buffer.clear()
        self.coverage = self.latest = revision
        for sub in list(self.subscribers):
            sub.close()

    def _dispatch(self, ev: CachedEvent) -> None:
        if len(self.buffer) >= self.capacity:
            self.coverage = self.buffer.popleft().revision
        self.buffer.append(ev)
        self.latest = ev.revision
        for sub in list(self.subscribers):
            sub.push(ev)

    def subscribe(self, after: int) -> Subscription:
        """Events after ``after``; 410 Expired when the ring no longer covers it."""
        if after < self.coverage:
            raise errors.gone(f"too old resource version: {after} ({self.coverage})")
        sub = Subscription(self, after, limit=self.capacity + 4096)
        for ev in self.buffer:
            if ev.revision > after:
                sub.queue.put_nowait(ev)
        self.subscribers.add(sub)
        return sub


class WatchCaches:
    """One WatchCache per storage prefix, started on first use."""

    def __init__(self, store: Store, *, capacity: int = 1024, history: int = 4096) -> None:
        self.store = store
        self.capacity = capacity
        self.history = history
        self.caches: dict[str, WatchCache] = {}
        self._lock = asyncio.Lock()

    async def get(self, prefix: str) -> WatchCache:
        cache = self.caches.get(prefix)
        if cache is not None:
            return cache
        async with self._lock:
            cache = self.caches.get(prefix)
            if cache is None:
                cache = WatchCache(self.store, prefix, capacity=self.capacity, history=self.history)
                await cache.start()
                self.caches[prefix] = cache
            return cache

    async def stop(self) -> None:
        for cache in self.caches.values():
            await cache.stop()
        self.caches.clear()
