"""Test-only fault injection for the store: a decorator that makes every call slow.

Enabled only by the environment of the ``peapod`` process (the robustness suite sets it):

- ``PEAPOD_FAULT_STORE_DELAY_MS=N`` or ``=MIN-MAX``: every store call (and every watch event) waits N
  milliseconds, or a uniformly random time in [MIN, MAX], before it reaches the real store.

Without the variable :func:`wrap_from_env` returns the store untouched, so production pays nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import AsyncIterator, Callable, Mapping

from peapod.store.base import Event, KeyValue, ListResult, Store

log = logging.getLogger(__name__)

DELAY_ENV = "PEAPOD_FAULT_STORE_DELAY_MS"


def parse_delay(text: str) -> tuple[float, float]:
    """``"50"`` -> (0.05, 0.05); ``"10-200"`` -> (0.01, 0.2). ValueError when malformed or negative."""
    lo_s, sep, hi_s = text.strip().partition("-")
    lo = int(lo_s)
    hi = int(hi_s) if sep else lo
    if lo < 0 or hi < lo:
        raise ValueError(f"{DELAY_ENV}={text!r}: expected N or MIN-MAX milliseconds, MIN <= MAX")
    return lo / 1000, hi / 1000


class DelayingStore:
    """A Store whose every call first sleeps ``delay()`` seconds: a slow disk or a distant etcd."""

    def __init__(
        self, inner: Store, delay: Callable[[], float], *, sleep: Callable[[float], object] = asyncio.sleep
    ) -> None:
        self.inner = inner
        self._delay = delay
        self._sleep = sleep

    async def _wait(self) -> None:
        d = self._delay()
        if d > 0:
            await self._sleep(d)  # type: ignore[misc]

    async def get(self, key: str) -> KeyValue | None:
        await self._wait()
        return await self.inner.get(key)

    async def list(
        self, prefix: str, *, revision: int = 0, limit: int = 0, start_key: str | None = None
    ) -> ListResult:
        await self._wait()
        return await self.inner.list(prefix, revision=revision, limit=limit, start_key=start_key)

    async def create(self, key: str, value: bytes) -> KeyValue:
        await self._wait()
        return await self.inner.create(key, value)

    async def update(self, key: str, value: bytes, expected_revision: int) -> KeyValue:
        await self._wait()
        return await self.inner.update(key, value, expected_revision)

    async def delete(self, key: str, expected_revision: int = 0) -> KeyValue:
        await self._wait()
        return await self.inner.delete(key, expected_revision)

    async def watch(self, prefix: str, after_revision: int) -> AsyncIterator[Event]:
        await self._wait()
        async for ev in self.inner.watch(prefix, after_revision):
            await self._wait()
            yield ev

    async def current_revision(self) -> int:
        await self._wait()
        return await self.inner.current_revision()

    async def compact(self, revision: int) -> None:
        await self._wait()
        await self.inner.compact(revision)

    async def compacted_revision(self) -> int:
        await self._wait()
        return await self.inner.compacted_revision()

    async def close(self) -> None:
        await self.inner.close()


def wrap_from_env(store: Store, environ: Mapping[str, str] | None = None) -> Store:
    """``store`` behind a :class:`DelayingStore` when ``PEAPOD_FAULT_STORE_DELAY_MS`` is set, else itself."""
    env = os.environ if environ is None else environ
    text = env.get(DELAY_ENV, "").strip()
    if not text:
        return store
    lo, hi = parse_delay(text)
    rng = random.Random()
    log.warning("test fault injection: every store call is delayed %s ms", text)
    return DelayingStore(store, (lambda: lo) if lo == hi else (lambda: rng.uniform(lo, hi)))
