"""The Store contract, written once for every backend (containerd's snapshotter-testsuite style).

A backend's test module subclasses :class:`StoreContract` and provides an async ``store`` fixture:

    class TestSQLiteStore(StoreContract):
        @pytest.fixture
        async def store(self, tmp_path):
            s = await SQLiteStore.open(tmp_path / "state.db")
            yield s
            await s.close()

Only the protocol in ``peapod.store.base`` is used. The store may be shared between cases (a real
etcd cluster), so every case writes under its own random ``prefix`` and never assumes revision
numbers, only their order. Every wait on a watch has a timeout, so a broken watch fails, not hangs.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest

from peapod.store.base import (
    CompactedError,
    ConflictError,
    Event,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    Store,
)

TIMEOUT = 10.0


async def collect(events: AsyncIterator[Event], n: int, timeout: float = TIMEOUT) -> list[Event]:
    """The next ``n`` events of a watch, failing after ``timeout`` seconds."""

    async def take() -> list[Event]:
        out: list[Event] = []
        async for ev in events:
            out.append(ev)
            if len(out) == n:
                break
        return out

    got = await asyncio.wait_for(take(), timeout)
    assert len(got) == n, f"watch ended after {len(got)} of {n} events"
    return got


async def collect_until(events: AsyncIterator[Event], revision: int, timeout: float = TIMEOUT) -> list[Event]:
    """Events until one with revision >= ``revision`` (inclusive)."""

    async def take() -> list[Event]:
        out: list[Event] = []
        async for ev in events:
            out.append(ev)
            if ev.revision >= revision:
                break
        return out

    return await asyncio.wait_for(take(), timeout)


async def close_watch(events: AsyncIterator[Event]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


def summary(events: list[Event]) -> list[tuple[int, str, str, bytes]]:
    return [(ev.revision, ev.type, ev.kv.key, ev.kv.value) for ev in events]


class StoreContract:
    """Cases every Store must pass. Subclasses provide the async ``store`` fixture."""

    @pytest.fixture
    def prefix(self) -> str:
        return f"/contract/{uuid.uuid4().hex[:12]}/"

    # ---- basics ---------------------------------------------------------------------------------

    async def test_satisfies_protocol(self, store: Store) -> None:
        assert isinstance(store, Store)

    async def test_create_get_update_delete(self, store: Store, prefix: str) -> None:
        key = prefix + "k"
        assert await store.get(key) is None

        created = await store.create(key, b"v1")
        assert created.key == key
        assert created.value == b"v1"
        assert created.create_revision == created.mod_revision
        assert created.mod_revision > 0
        assert await store.get(key) == created

        updated = await store.update(key, b"v2", created.mod_revision)
        assert updated.value == b"v2"
        assert updated.create_revision == created.create_revision
        assert updated.mod_revision > created.mod_revision
        assert await store.get(key) == updated

        deleted = await store.delete(key, updated.mod_revision)
        assert deleted.key == key
        assert deleted.value == b"v2"
        assert deleted.mod_revision > updated.mod_revision
        assert await store.get(key) is None
        assert await store.current_revision() >= deleted.mod_revision

        again = await store.create(key, b"v3")
        assert again.create_revision > deleted.mod_revision
        assert again.create_revision == again.mod_revision

    async def test_unconditional_delete(self, store: Store, prefix: str) -> None:
        kv = await store.create(prefix + "k", b"v")
        await store.update(prefix + "k", b"w", kv.mod_revision)
        deleted = await store.delete(prefix + "k")
        assert deleted.value == b"w"
        assert await store.get(prefix + "k") is None

    async def test_create_existing_raises(self, store: Store, prefix: str) -> None:
        kv = await store.create(prefix + "k", b"v1")
        with pytest.raises(KeyExistsError) as err:
            await store.create(prefix + "k", b"v2")
        assert err.value.key == prefix + "k"
        assert await store.get(prefix + "k") == kv

    async def test_stale_update_conflicts(self, store: Store, prefix: str) -> None:
        key = prefix + "k"
        v1 = await store.create(key, b"v1")
        v2 = await store.update(key, b"v2", v1.mod_revision)
        with pytest.raises(ConflictError) as err:
            await store.update(key, b"v3", v1.mod_revision)
        assert err.value.key == key
        assert err.value.current == v2
        assert await store.get(key) == v2

    async def test_stale_delete_conflicts(self, store: Store, prefix: str) -> None:
        key = prefix + "k"
        v1 = await store.create(key, b"v1")
        v2 = await store.update(key, b"v2", v1.mod_revision)
        with pytest.raises(ConflictError) as err:
            await store.delete(key, v1.mod_revision)
        assert err.value.current == v2
        assert await store.get(key) == v2

    async def test_missing_key(self, store: Store, prefix: str) -> None:
        key = prefix + "missing"
        assert await store.get(key) is None
        with pytest.raises(KeyNotFoundError) as err:
            await store.update(key, b"v", 1)
        assert err.value.key == key
        with pytest.raises(KeyNotFoundError):
            await store.delete(key)
        with pytest.raises(KeyNotFoundError):
            await store.delete(key, 1)
        kv = await store.create(key, b"v")
        await store.delete(key, kv.mod_revision)
        with pytest.raises(KeyNotFoundError):
            await store.update(key, b"v", kv.mod_revision)

    async def test_revisions_strictly_increase(self, store: Store, prefix: str) -> None:
        before = await store.current_revision()
        seen = [before]
        kv = await store.create(prefix + "a", b"1")
        seen.append(kv.mod_revision)
        kv = await store.update(prefix + "a", b"2", kv.mod_revision)
        seen.append(kv.mod_revision)
        seen.append((await store.create(prefix + "b", b"1")).mod_revision)
        seen.append((await store.delete(prefix + "a")).mod_revision)
        seen.append((await store.create(prefix + "a", b"3")).mod_revision)
        assert seen == sorted(set(seen)), seen
        assert await store.current_revision() >= seen[-1]

    async def test_failed_writes_take_no_revision_visible_state(self, store: Store, prefix: str) -> None:
        kv = await store.create(prefix + "k", b"v")
        with pytest.raises(KeyExistsError):
            await store.create(prefix + "k", b"x")
        with pytest.raises(ConflictError):
            await store.update(prefix + "k", b"x", kv.mod_revision + 1000)
        assert (await store.list(prefix)).items == [kv]

    async def test_values_round_trip_exactly(self, store: Store, prefix: str) -> None:
        values = {
            "empty": b"",
            "all-bytes": bytes(range(256)) * 4,
            "nul": b"\x00",
            "utf8-invalid": b"\xff\xfe\xc3\x28",
            "random": os.urandom(256 * 1024),
            "json": b'{"apiVersion":"v1","kind":"Pod","metadata":{"name":"\xc3\xa9"}}',
        }
        for name, value in values.items():
            kv = await store.create(prefix + name, value)
            assert kv.value == value
            got = await store.get(prefix + name)
            assert got is not None and got.value == value and type(got.value) is bytes
        listed = {kv.key[len(prefix) :]: kv.value for kv in (await store.list(prefix)).items}
        assert listed == values

    # ---- list -----------------------------------------------------------------------------------

    async def test_list_by_prefix_respects_boundaries(self, store: Store, prefix: str) -> None:
        keys = ["a/1", "a/2", "a/x/3", "ab/1", "a", "b/1", "a0/1"]
        for k in keys:
            await store.create(prefix + k, k.encode())
        res = await store.list(prefix + "a/")
        assert [kv.key for kv in res.items] == [prefix + "a/1", prefix + "a/2", prefix + "a/x/3"]
        assert not res.more
        assert res.revision >= max(kv.mod_revision for kv in res.items)
        everything = await store.list(prefix)
        assert [kv.key for kv in everything.items] == sorted(prefix + k for k in keys)
        assert (await store.list(prefix + "zzz/")).items == []

    async def test_list_returns_full_key_values(self, store: Store, prefix: str) -> None:
        a = await store.create(prefix + "a", b"1")
        a = await store.update(prefix + "a", b"2", a.mod_revision)
        b = await store.create(prefix + "b", b"3")
        res = await store.list(prefix)
        assert res.items == [a, b]
        assert res.revision >= b.mod_revision

    async def test_list_paging_at_fixed_revision(self, store: Store, prefix: str) -> None:
        created = [await store.create(f"{prefix}{i:02d}", f"v{i}".encode()) for i in range(7)]
        first = await store.list(prefix, limit=3)
        assert first.items == created[:3]
        assert first.more
        snapshot = first.revision

        # Writes between pages must not show up in later pages of the same list.
        await store.update(created[4].key, b"changed", created[4].mod_revision)
        await store.delete(created[5].key)
        await store.create(prefix + "99", b"new")

        pages = [first]
        while pages[-1].more:
            page = await store.list(prefix, revision=snapshot, limit=3, start_key=pages[-1].items[-1].key)
            assert page.revision == snapshot
            pages.append(page)
        assert [len(p.items) for p in pages] == [3, 3, 1]
        assert [kv for p in pages for kv in p.items] == created

        now = await store.list(prefix)
        assert [kv.key for kv in now.items] == [f"{prefix}{i:02d}" for i in (0, 1, 2, 3, 4, 6, 99)]
        assert now.items[4].value == b"changed"

    async def test_list_limit_exact_fit_and_start_key(self, store: Store, prefix: str) -> None:
        created = [await store.create(f"{prefix}{i}", b"v") for i in range(3)]
        res = await store.list(prefix, limit=3)
        assert res.items == created
        res = await store.list(prefix, start_key=created[0].key)
        assert res.items == created[1:]
        assert not res.more
        res = await store.list(prefix, start_key=created[2].key)
        assert res.items == []

    async def test_list_at_past_revision(self, store: Store, prefix: str) -> None:
        a1 = await store.create(prefix + "a", b"a1")
        b1 = await store.create(prefix + "b", b"b1")
        past = await store.current_revision()
        a2 = await store.update(prefix + "a", b"a2", a1.mod_revision)
        await store.delete(prefix + "b")
        c1 = await store.create(prefix + "c", b"c1")
        await store.create(prefix + "b", b"b2")

        old = await store.list(prefix, revision=past)
        assert old.revision == past
        assert old.items == [a1, b1]
        older = await store.list(prefix, revision=a1.mod_revision)
        assert older.items == [a1]
        mid = await store.list(prefix, revision=c1.mod_revision)
        assert mid.items == [a2, c1]
        page = await store.list(prefix, revision=past, limit=1)
        assert page.items == [a1] and page.more

    async def test_list_future_revision_raises(self, store: Store, prefix: str) -> None:
        kv = await store.create(prefix + "a", b"1")
        current = await store.current_revision()
        assert current >= kv.mod_revision
        with pytest.raises(FutureRevisionError):
            await store.list(prefix, revision=current + 1000)

    # ---- concurrency ----------------------------------------------------------------------------

    async def test_concurrent_compare_and_swap_loses_no_update(self, store: Store, prefix: str) -> None:
        key = prefix + "counter"
        await store.create(key, b"0")
        workers, increments = 10, 5
        conflicts = 0

        async def worker() -> None:
            nonlocal conflicts
            for _ in range(increments):
                while True:
                    cur = await store.get(key)
                    assert cur is not None
                    try:
                        await store.update(key, str(int(cur.value) + 1).encode(), cur.mod_revision)
                        break
                    except ConflictError as e:
                        conflicts += 1
                        assert e.current is not None and e.current.mod_revision != cur.mod_revision

        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(workers))), 60)
        final = await store.get(key)
        assert final is not None and int(final.value) == workers * increments

    async def test_concurrent_creates_of_one_key_have_one_winner(self, store: Store, prefix: str) -> None:
        results = await asyncio.gather(
            *(store.create(prefix + "k", str(i).encode()) for i in range(8)), return_exceptions=True
        )
        winners = [r for r in results if isinstance(r, KeyValue)]
        assert len(winners) == 1
        assert all(isinstance(r, KeyExistsError) for r in results if not isinstance(r, KeyValue))
        assert await store.get(prefix + "k") == winners[0]

    # ---- watch ----------------------------------------------------------------------------------

    async def test_watch_sees_every_event_in_order_during_concurrent_writes(
        self, store: Store, prefix: str
    ) -> None:
        start = await store.current_revision()
        watch = store.watch(prefix, start)
        expected: list[tuple[int, str, str, bytes]] = []

        async def writer(w: int) -> None:
            for i in range(6):
                key = f"{prefix}w{w}/k{i % 3}"
                cur = await store.get(key)
                if cur is None:
                    kv = await store.create(key, f"{w}.{i}".encode())
                    expected.append((kv.mod_revision, "PUT", key, kv.value))
                elif i % 2:
                    kv = await store.delete(key, cur.mod_revision)
                    expected.append((kv.mod_revision, "DELETE", key, cur.value))
                else:
                    kv = await store.update(key, f"{w}.{i}".encode(), cur.mod_revision)
                    expected.append((kv.mod_revision, "PUT", key, kv.value))

        consumer = asyncio.ensure_future(collect(watch, 4 * 6))
        await asyncio.sleep(0)
        await asyncio.gather(*(writer(w) for w in range(4)))
        got = await consumer
        expected.sort()
        assert summary(got) == expected
        revisions = [ev.revision for ev in got]
        assert revisions == sorted(set(revisions)) and revisions[0] > start
        await close_watch(watch)

    async def test_watch_event_details(self, store: Store, prefix: str) -> None:
        start = await store.current_revision()
        v1 = await store.create(prefix + "k", b"v1")
        v2 = await store.update(prefix + "k", b"v2", v1.mod_revision)
        gone = await store.delete(prefix + "k", v2.mod_revision)
        v3 = await store.create(prefix + "k", b"v3")

        watch = store.watch(prefix, start)
        created, updated, deleted, recreated = await collect(watch, 4)
        await close_watch(watch)

        assert (created.type, created.created, created.kv) == ("PUT", True, v1)
        assert created.prev is None
        assert (updated.type, updated.created, updated.kv) == ("PUT", False, v2)
        if updated.prev is not None:
            assert updated.prev == v1
        assert deleted.type == "DELETE" and not deleted.created
        assert deleted.kv == KeyValue(prefix + "k", b"v2", v1.create_revision, gone.mod_revision)
        assert deleted.revision == gone.mod_revision
        if deleted.prev is not None:
            assert deleted.prev == v2
        assert (recreated.type, recreated.created, recreated.kv) == ("PUT", True, v3)

    async def test_watch_follows_live_writes(self, store: Store, prefix: str) -> None:
        start = await store.current_revision()
        watch = store.watch(prefix, start)
        first = asyncio.ensure_future(collect(watch, 1))
        await asyncio.sleep(0.05)  # let the watch reach its live wait before writing
        kv = await store.create(prefix + "a", b"1")
        (ev,) = await first
        assert ev.kv == kv
        second = asyncio.ensure_future(collect(watch, 2))
        await asyncio.sleep(0.05)
        kv2 = await store.update(prefix + "a", b"2", kv.mod_revision)
        kv3 = await store.create(prefix + "b", b"3")
        assert [e.kv for e in await second] == [kv2, kv3]
        await close_watch(watch)

    async def test_watch_resumes_from_last_seen_revision(self, store: Store, prefix: str) -> None:
        start = await store.current_revision()
        for i in range(10):
            await store.create(f"{prefix}{i}", str(i).encode())
        for i in range(0, 10, 3):
            await store.delete(f"{prefix}{i}")
        full = await collect(store.watch(prefix, start), 14)

        watch = store.watch(prefix, start)
        head = await collect(watch, 6)
        await close_watch(watch)
        resumed = store.watch(prefix, head[-1].revision)
        tail_task = asyncio.ensure_future(collect(resumed, 14 - 6 + 2))
        await asyncio.sleep(0.05)
        late = [await store.create(prefix + "late1", b"x"), await store.create(prefix + "late2", b"y")]
        tail = await tail_task
        await close_watch(resumed)
        assert summary(head + tail[:-2]) == summary(full)
        assert [ev.kv for ev in tail[-2:]] == late

    async def test_watch_filters_by_prefix(self, store: Store, prefix: str) -> None:
        start = await store.current_revision()
        await store.create(prefix + "a/1", b"in")
        await store.create(prefix + "ab/1", b"out")
        await store.create(prefix + "b/1", b"out")
        await store.create(prefix + "a", b"out")
        await store.create(prefix + "a/2/x", b"in")
        last = await store.create(prefix + "b/2", b"out")
        marker = await store.create(prefix + "a/3", b"in")
        got = await collect_until(store.watch(prefix + "a/", start), marker.mod_revision)
        assert [ev.kv.key for ev in got] == [prefix + "a/1", prefix + "a/2/x", prefix + "a/3"]
        everything = await collect_until(store.watch(prefix, start), last.mod_revision)
        assert len(everything) == 6

    async def test_watch_from_future_revision_waits(self, store: Store, prefix: str) -> None:
        current = await store.current_revision()
        watch = store.watch(prefix, current + 1)
        task = asyncio.ensure_future(collect(watch, 1))
        await asyncio.sleep(0.05)
        await store.create(prefix + "skipped", b"1")  # revision current + 1 (or later on a shared store)
        second = await store.create(prefix + "seen", b"2")
        (ev,) = await task
        await close_watch(watch)
        assert ev.revision > current + 1
        assert ev.kv == second

    # ---- compaction -----------------------------------------------------------------------------

    async def test_compaction_keeps_live_values_and_expires_old_revisions(
        self, store: Store, prefix: str
    ) -> None:
        start = await store.current_revision()
        a = await store.create(prefix + "a", b"a1")
        for i in range(2, 5):
            a = await store.update(prefix + "a", f"a{i}".encode(), a.mod_revision)
        b = await store.create(prefix + "b", b"b1")
        await store.create(prefix + "gone", b"x")
        await store.delete(prefix + "gone")
        old_rev = b.mod_revision
        target = await store.current_revision()

        await store.compact(target)
        assert await store.compacted_revision() >= target

        assert await store.get(prefix + "a") == a
        assert await store.get(prefix + "b") == b
        assert await store.get(prefix + "gone") is None
        now = await store.list(prefix)
        assert now.items == [a, b]
        at_compaction = await store.list(prefix, revision=target)
        assert at_compaction.items == [a, b]

        with pytest.raises(CompactedError) as err:
            await store.list(prefix, revision=old_rev - 1)
        assert err.value.compact_revision >= target
        with pytest.raises(CompactedError):
            await collect(store.watch(prefix, start), 1)

        # History after the compaction point is intact and the store keeps working.
        watch = store.watch(prefix, target)
        task = asyncio.ensure_future(collect(watch, 2))
        await asyncio.sleep(0.05)
        a = await store.update(prefix + "a", b"after", a.mod_revision)
        deleted = await store.delete(prefix + "b", b.mod_revision)
        got = await task
        await close_watch(watch)
        assert summary(got) == [
            (a.mod_revision, "PUT", prefix + "a", b"after"),
            (deleted.mod_revision, "DELETE", prefix + "b", b"b1"),
        ]

    async def test_compaction_keeps_history_after_the_compacted_revision(
        self, store: Store, prefix: str
    ) -> None:
        a = await store.create(prefix + "a", b"1")
        a = await store.update(prefix + "a", b"2", a.mod_revision)
        target = await store.current_revision()
        a3 = await store.update(prefix + "a", b"3", a.mod_revision)
        b = await store.create(prefix + "b", b"x")
        await store.delete(prefix + "b")
        await store.compact(target)
        events = await collect(store.watch(prefix, target), 3)
        assert summary(events[:2]) == [
            (a3.mod_revision, "PUT", prefix + "a", b"3"),
            (b.mod_revision, "PUT", prefix + "b", b"x"),
        ]
        assert (events[2].type, events[2].kv.key, events[2].kv.value) == ("DELETE", prefix + "b", b"x")
        assert events[2].revision > b.mod_revision
        assert (await store.list(prefix, revision=target)).items == [a]
        assert (await store.list(prefix, revision=b.mod_revision)).items == [a3, b]
