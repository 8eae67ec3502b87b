"""The Store contract on SQLite, plus SQLite-only behaviour (files, reopening, the event ring)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from peapod.store.base import CompactedError, KeyValue, StoreUnavailableError
from peapod.store.compactor import run_compactor
from peapod.store.sqlite import SQLiteStore, prefix_range
from peapod.testing.clock import FakeClock
from tests.contract.store_contract import StoreContract, collect, summary


class TestSQLiteStore(StoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[SQLiteStore]:
        s = await SQLiteStore.open(tmp_path / "state.db")
        yield s
        await s.close()


class TestSQLiteStoreWithoutEventRing(StoreContract):
    """Every watch reads the log (the path slow and replaying watchers take)."""

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[SQLiteStore]:
        s = await SQLiteStore.open(tmp_path / "state.db", ring_size=0)
        yield s
        await s.close()


def file_size(path: Path) -> int:
    return sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal")) if p.exists())


class TestSQLiteSpecifics:
    async def test_empty_store_is_at_revision_zero_and_first_write_is_one(self, tmp_path: Path) -> None:
        store = await SQLiteStore.open(tmp_path / "state.db")
        try:
            assert await store.current_revision() == 0
            assert await store.compacted_revision() == 0
            assert (await store.list("/")).revision == 0
            kv = await store.create("/a", b"1")
            assert kv.mod_revision == 1
            kv = await store.update("/a", b"2", 1)
            assert kv.mod_revision == 2
        finally:
            await store.close()

    async def test_reopen_keeps_data_revisions_and_compaction(self, tmp_path: Path) -> None:
        path = tmp_path / "sub" / "state.db"
        store = await SQLiteStore.open(path)
        a = await store.create("/a", b"1")
        a = await store.update("/a", b"2", a.mod_revision)
        await store.create("/b", b"3")
        await store.delete("/b")
        await store.compact(a.mod_revision)
        rev = await store.current_revision()
        await store.close()

        store = await SQLiteStore.open(path)
        try:
            assert await store.current_revision() == rev
            assert await store.compacted_revision() == a.mod_revision
            assert await store.get("/a") == a
            c = await store.create("/c", b"4")
            assert c.mod_revision == rev + 1
            events = await collect(store.watch("/", a.mod_revision), 3)
            assert [ev.type for ev in events] == ["PUT", "DELETE", "PUT"]
            with pytest.raises(CompactedError):
                await store.list("/", revision=a.mod_revision - 1)
        finally:
            await store.close()

    async def test_file_settings(self, tmp_path: Path) -> None:
        path = tmp_path / "state.db"
        store = await SQLiteStore.open(path)
        await store.create("/a", b"1")
        await store.close()
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            conn.close()

    async def test_second_opener_is_refused(self, tmp_path: Path) -> None:
        store = await SQLiteStore.open(tmp_path / "state.db")
        try:
            with pytest.raises(StoreUnavailableError, match="in use"):
                await SQLiteStore.open(tmp_path / "state.db")
        finally:
            await store.close()
        again = await SQLiteStore.open(tmp_path / "state.db")
        await again.close()

    async def test_closed_store_refuses_calls_and_ends_watches(self, tmp_path: Path) -> None:
        store = await SQLiteStore.open(tmp_path / "state.db")
        await store.create("/a", b"1")
        watch = store.watch("/", 1)
        waiting = asyncio.ensure_future(collect(watch, 1))
        await asyncio.sleep(0.01)
        await store.close()
        with pytest.raises(AssertionError, match="watch ended"):
            await waiting
        with pytest.raises(StoreUnavailableError):
            await store.create("/b", b"2")
        with pytest.raises(StoreUnavailableError):
            await store.get("/a")
        await store.close()  # idempotent

    async def test_compaction_bounds_the_file(self, tmp_path: Path) -> None:
        path = tmp_path / "state.db"
        store = await SQLiteStore.open(path)
        try:
            value = os.urandom(32 * 1024)
            kvs = [await store.create(f"/k/{i}", value) for i in range(4)]
            for _ in range(60):
                kvs = [await store.update(kv.key, os.urandom(32 * 1024), kv.mod_revision) for kv in kvs]
            grown = file_size(path)
            assert grown > 4 * 61 * 32 * 1024
            await store.compact(await store.current_revision())
            shrunk = file_size(path)
            # Live values are kept twice (live + their log row); everything else is gone.
            assert shrunk < 20 * 4 * 32 * 1024, (grown, shrunk)
            assert [kv.value for kv in (await store.list("/k/")).items] == [kv.value for kv in kvs]
        finally:
            await store.close()

    async def test_compaction_in_many_chunks_and_again(self, tmp_path: Path) -> None:
        store = await SQLiteStore.open(tmp_path / "state.db")
        try:
            kv = await store.create("/x", b"0")
            others = [await store.create(f"/o/{i:02d}", b"o") for i in range(50)]
            for i in range(4500):  # more rows than one compaction chunk
                kv = await store.update("/x", str(i).encode(), kv.mod_revision)
            mid = await store.current_revision()
            for o in others[:25]:
                await store.delete(o.key)
            await store.compact(mid)
            await store.compact(mid)  # already compacted: no-op
            assert (await store.list("/", revision=mid)).items == [*others, kv]
            await store.compact(await store.current_revision())
            assert (await store.list("/")).items == [*others[25:], kv]
            conn = sqlite3.connect(tmp_path / "state.db")
            try:
                # One log row per live key remains.
                assert conn.execute("SELECT count(*) FROM log").fetchone()[0] == 26
            finally:
                conn.close()
        finally:
            await store.close()

    async def test_slow_watcher_reading_the_log_falls_behind_compaction(self, tmp_path: Path) -> None:
        store = await SQLiteStore.open(tmp_path / "state.db", ring_size=0)
        try:
            kv = await store.create("/a", b"0")
            for i in range(1200):  # more than one watch batch
                kv = await store.update("/a", str(i).encode(), kv.mod_revision)
            watch = store.watch("/", 0)
            await collect(watch, 10)
            await store.compact(await store.current_revision())
            with pytest.raises(CompactedError):
                await collect(watch, 1000)
        finally:
            await store.close()

    async def test_watch_crosses_from_log_to_ring(self, tmp_path: Path) -> None:
        store = await SQLiteStore.open(tmp_path / "state.db", ring_size=8)
        try:
            written = [await store.create(f"/k/{i:03d}", b"v") for i in range(100)]
            watch = store.watch("/k/", 0)
            got = await collect(watch, 100)
            task = asyncio.ensure_future(collect(watch, 20))
            more = [await store.create(f"/k/m{i:03d}", b"w") for i in range(20)]
            got += await task
            await watch.aclose()
            assert [ev.kv for ev in got] == written + more
        finally:
            await store.close()

    async def test_list_5000_values_of_2kb_is_fast(self, tmp_path: Path) -> None:
        store = await SQLiteStore.open(tmp_path / "state.db")
        try:
            value = os.urandom(1024).hex().encode()
            for start in range(0, 5000, 500):
                await asyncio.gather(
                    *(
                        store.create(f"/registry/pods/default/p{i:05d}", value)
                        for i in range(start, start + 500)
                    )
                )
            await store.create("/registry/pods0", b"outside")
            timings = []
            for _ in range(5):
                t0 = time.perf_counter()
                res = await store.list("/registry/pods/")
                timings.append(time.perf_counter() - t0)
                assert len(res.items) == 5000
            best = min(timings)
            print(f"LIST 5000 x 2KB: best {best * 1000:.1f} ms, all {[round(t * 1000, 1) for t in timings]}")
            assert best < 0.25, timings
        finally:
            await store.close()


async def sleeping(clock: FakeClock) -> None:
    """Wait (really: the store works in threads) until the compactor sleeps on the fake clock again."""
    for _ in range(2000):
        if clock.sleepers:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the compactor did not go back to sleep")


async def test_compactor_compacts_a_real_sqlite_store(tmp_path: Path) -> None:
    clock = FakeClock()
    store = await SQLiteStore.open(tmp_path / "state.db")
    task = asyncio.create_task(run_compactor(store, clock=clock, interval=60, keep_revisions=2))
    try:
        await sleeping(clock)
        kv = await store.create("/a", b"0")
        for i in range(5):
            kv = await store.update("/a", str(i).encode(), kv.mod_revision)
        clock.advance(60)  # notes revision 6
        await sleeping(clock)
        for i in range(5):
            kv = await store.update("/a", str(i).encode(), kv.mod_revision)
        clock.advance(60)  # compacts at 6
        await sleeping(clock)
        assert await store.compacted_revision() == 6
        with pytest.raises(CompactedError):
            await store.list("/", revision=5)
        assert await store.get("/a") == kv
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await store.close()


@pytest.mark.parametrize(
    ("prefix", "lo", "hi"),
    [
        ("/a/", "/a/", "/a0"),
        ("", "", None),
        ("a\U0010ffff", "a\U0010ffff", "b"),
        ("\U0010ffff", "\U0010ffff", None),
        ("x\ud7ff", "x\ud7ff", "x\ue000"),
    ],
)
def test_prefix_range(prefix: str, lo: str, hi: str | None) -> None:
    assert prefix_range(prefix) == (lo, hi)


def test_summary_helper() -> None:
    kv = KeyValue("/a", b"1", 1, 1)
    from peapod.store.base import Event

    assert summary([Event("PUT", kv)]) == [(1, "PUT", "/a", b"1")]
