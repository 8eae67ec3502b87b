"""The test-only slow-store hook: off unless the environment asks, and then every call waits first."""

from __future__ import annotations

from pathlib import Path

import pytest

from peapod.store.faults import DELAY_ENV, DelayingStore, parse_delay, wrap_from_env
from peapod.store.sqlite import SQLiteStore


def test_parse_delay() -> None:
    assert parse_delay("50") == (0.05, 0.05)
    assert parse_delay("10-200") == (0.01, 0.2)
    for bad in ("x", "-5", "9-3", ""):
        with pytest.raises(ValueError):
            parse_delay(bad)


async def test_without_the_variable_the_store_is_untouched(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "s.db")
    try:
        assert wrap_from_env(store, {}) is store
        wrapped = wrap_from_env(store, {DELAY_ENV: "20-30"})
        assert isinstance(wrapped, DelayingStore) and wrapped.inner is store
    finally:
        await store.close()


async def test_every_call_and_watch_event_waits_then_reaches_the_store(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "s.db")
    slept: list[float] = []

    async def sleep(d: float) -> None:
        slept.append(d)

    slow = DelayingStore(store, lambda: 0.04, sleep=sleep)
    try:
        kv = await slow.create("/a", b"1")
        await slow.update("/a", b"2", kv.mod_revision)
        assert (await slow.get("/a")).value == b"2"  # type: ignore[union-attr]
        assert [k.key for k in (await slow.list("/")).items] == ["/a"]
        events = slow.watch("/", 0)
        assert (await anext(events)).kv.value == b"1"
        await events.aclose()
        assert slept == [0.04] * 6  # create, update, get, list, watch start, one event
    finally:
        await slow.close()
