"""A work queue of keys, written once (client-go's workqueue, in asyncio).

A key queued many times is processed once; a key is never processed by two workers at once (if it
is queued while being processed, it runs again afterwards); failures are retried with per-key
exponential backoff on the injected clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable

from peapod.clock import Clock

log = logging.getLogger(__name__)


class WorkQueue:
    def __init__(self, *, clock: Clock, base_delay: float = 0.005, max_delay: float = 300.0) -> None:
        self._clock = clock
        self._base = base_delay
        self._max = max_delay
        self._queue: asyncio.Queue[Hashable] = asyncio.Queue()
        self._queued: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._dirty_while_processing: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        self._delayed: dict[Hashable, asyncio.Task[None]] = {}
        self._shutdown = False

    def add(self, key: Hashable) -> None:
        if self._shutdown:
            return
        if key in self._processing:
            self._dirty_while_processing.add(key)
            return
        if key in self._queued:
            return
        self._queued.add(key)
        self._queue.put_nowait(key)

    def add_after(self, key: Hashable, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        if key in self._delayed:
            return

        async def later() -> None:
            try:
                await self._clock.sleep(delay)
                self._delayed.pop(key, None)
                self.add(key)
            except asyncio.CancelledError:
                self._delayed.pop(key, None)

        self._delayed[key] = asyncio.create_task(later())

    def add_rate_limited(self, key: Hashable) -> None:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        self.add_after(key, min(self._base * (2**n), self._max))

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def retries(self, key: Hashable) -> int:
        return self._failures.get(key, 0)

    def __len__(self) -> int:
        return len(self._queued)

    async def get(self) -> Hashable:
        key = await self._queue.get()
        self._queued.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: Hashable) -> None:
        self._processing.discard(key)
        if key in self._dirty_while_processing:
            self._dirty_while_processing.discard(key)
            self.add(key)

    def shutdown(self) -> None:
        self._shutdown = True
        for t in self._delayed.values():
            t.cancel()

    async def run_workers(self, sync: Callable[[Hashable], Awaitable[None]], workers: int = 1) -> None:
        """Run ``sync(key)`` for queued keys until cancelled; errors requeue with backoff."""

        async def worker() -> None:
            while True:
                key = await self.get()
                try:
                    await sync(key)
                except asyncio.CancelledError:
                    self.done(key)
                    raise
                except Exception as e:  # retried: a controller error is never fatal
                    log.info("sync %s failed (retry %d): %s", key, self.retries(key) + 1, e)
                    self.done(key)
                    self.add_rate_limited(key)
                else:
                    self.forget(key)
                    self.done(key)

        tasks = [asyncio.create_task(worker()) for _ in range(workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            self.shutdown()
