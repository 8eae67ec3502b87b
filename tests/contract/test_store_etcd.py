"""EtcdStore against a real 3-member etcd cluster: the shared Store contract plus failover cases."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from peapod.store.base import CompactedError, Event, KeyExistsError, StoreUnavailableError
from peapod.store.etcd import EtcdStore
from peapod.testing.etcd import EtcdCluster
from tests.contract.store_contract import StoreContract

pytestmark = [
    pytest.mark.etcd,
    pytest.mark.skipif(not EtcdCluster.available(), reason="etcd-server is not installed (/usr/bin/etcd)"),
]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EtcdCluster]:
    """One 3-member cluster for every contract case (each case works under its own key prefix)."""
    async with EtcdCluster(tmp_path_factory.mktemp("etcd-shared"), members=3) as c:
        yield c


class TestEtcdStore(StoreContract):
    @pytest_asyncio.fixture
    async def store(self, shared_cluster: EtcdCluster) -> AsyncIterator[EtcdStore]:
        s = await EtcdStore.open(shared_cluster.endpoints)
        yield s
        await s.close()


@pytest_asyncio.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[EtcdCluster]:
    """A private cluster for tests that kill members."""
    async with EtcdCluster(tmp_path / "etcd", members=3) as c:
        yield c


async def leader_index(cluster: EtcdCluster) -> int:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:
        for i, m in enumerate(cluster.members):
            if not m.running:
                continue
            async with http.post(f"{m.client_url}/v3/maintenance/status", json={}) as resp:
                body = await resp.json()
            if body.get("leader") == body["header"]["member_id"]:
                return i
    raise AssertionError("no leader")


async def follower_index(cluster: EtcdCluster) -> int:
    leader = await leader_index(cluster)
    return next(i for i in range(len(cluster.members)) if i != leader)


def rotated(endpoints: list[str], first: int) -> list[str]:
    return endpoints[first:] + endpoints[:first]


async def local_keys(endpoint: str, prefix: str) -> list[str]:
    """Keys a member holds locally (serializable read: no quorum round, its own copy)."""
    body = {
        "key": base64.b64encode(prefix.encode()).decode(),
        "range_end": base64.b64encode(prefix[:-1].encode() + bytes([ord(prefix[-1]) + 1])).decode(),
        "serializable": True,
        "keys_only": True,
    }
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http,
        http.post(f"{endpoint}/v3/kv/range", json=body) as resp,
    ):
        data = await resp.json()
    return [base64.b64decode(kv["key"]).decode() for kv in data.get("kvs", [])]


async def collect(store: EtcdStore, prefix: str, after: int, out: asyncio.Queue[Event]) -> None:
    async for ev in store.watch(prefix, after):
        out.put_nowait(ev)


async def stop(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def take(queue: asyncio.Queue[Event], n: int, timeout: float = 20) -> list[Event]:
    async with asyncio.timeout(timeout):
        return [await queue.get() for _ in range(n)]


async def test_writes_lists_and_reads_go_on_with_a_member_killed(cluster: EtcdCluster) -> None:
    victim = await follower_index(cluster)
    store = await EtcdStore.open(rotated(cluster.endpoints, victim))
    try:
        await store.create("/k/before", b"0")
        cluster.kill(victim)
        kv = await store.create("/k/a", b"1")
        kv = await store.update("/k/a", b"2", kv.mod_revision)
        await store.create("/k/b", b"3")
        with pytest.raises(KeyExistsError):
            await store.create("/k/b", b"3")
        listed = await store.list("/k/")
        assert [i.key for i in listed.items] == ["/k/a", "/k/b", "/k/before"]
        assert listed.revision == await store.current_revision()
        gone = await store.delete("/k/before")
        assert gone.value == b"0"
        assert store.preferred_endpoint != cluster.members[victim].client_url

        # The member comes back on its old data dir, rejoins and catches up on what it missed.
        await cluster.restart(victim)
        victim_url = cluster.members[victim].client_url
        async with asyncio.timeout(20):
            while True:
                if await local_keys(victim_url, "/k/") == ["/k/a", "/k/b"]:
                    break
                await asyncio.sleep(0.1)
        only_victim = await EtcdStore.open([victim_url])
        try:
            assert (await only_victim.get("/k/a")).value == b"2"  # type: ignore[union-attr]
            await only_victim.create("/k/c", b"4")  # and it takes writes again
        finally:
            await only_victim.close()
    finally:
        await store.close()


async def test_watch_on_a_killed_member_fails_over_without_gaps(cluster: EtcdCluster) -> None:
    victim = await follower_index(cluster)
    watcher = await EtcdStore.open(rotated(cluster.endpoints, victim))
    others = [e for i, e in enumerate(cluster.endpoints) if i != victim]
    writer = await EtcdStore.open(others)
    events: asyncio.Queue[Event] = asyncio.Queue()
    task = None
    try:
        start = await writer.current_revision()
        assert watcher.preferred_endpoint == cluster.members[victim].client_url
        task = asyncio.create_task(collect(watcher, "/w/", start, events))
        for i in range(5):
            await writer.create(f"/w/{i}", b"x")
        first = await take(events, 5)
        cluster.kill(victim)  # the watch stream's member dies under it
        for i in range(5, 10):
            await writer.create(f"/w/{i}", b"x")
        await writer.delete("/w/0")
        rest = await take(events, 6)
        got = first + rest
        assert [e.kv.key for e in got] == [f"/w/{i}" for i in range(10)] + ["/w/0"]
        revisions = [e.revision for e in got]
        assert revisions == sorted(set(revisions)) and revisions[0] > start
        assert got[-1].type == "DELETE" and got[-1].kv.value == b"x"
        assert watcher.preferred_endpoint != cluster.members[victim].client_url
        await asyncio.sleep(0.3)
        assert events.empty()  # nothing delivered twice
    finally:
        await stop(task)
        await watcher.close()
        await writer.close()


async def test_killing_the_leader_keeps_the_watch_and_writes_resume(cluster: EtcdCluster) -> None:
    leader = await leader_index(cluster)
    store = await EtcdStore.open(rotated(cluster.endpoints, leader))
    events: asyncio.Queue[Event] = asyncio.Queue()
    task = None
    try:
        start = await store.current_revision()
        task = asyncio.create_task(collect(store, "/l/", start, events))
        await store.create("/l/0", b"x")
        await take(events, 1)
        cluster.kill(leader)
        # A write racing the election may fail as "outcome unknown"; the caller retries (as an API
        # client would) and must see either success or a KeyExistsError for its own earlier write.
        async with asyncio.timeout(30):
            while True:
                try:
                    await store.create("/l/1", b"y")
                    break
                except StoreUnavailableError:
                    await asyncio.sleep(0.2)
                except KeyExistsError:
                    break
        got = await take(events, 1)
        assert got[0].kv.key == "/l/1" and got[0].created
        assert await leader_index(cluster) != leader
    finally:
        await stop(task)
        await store.close()


async def test_lost_quorum_is_unavailable(cluster: EtcdCluster) -> None:
    store = await EtcdStore.open(cluster.endpoints, request_timeout=1, retry_window=3)
    try:
        await store.create("/q/a", b"1")
        cluster.kill(0)
        cluster.kill(1)
        with pytest.raises(StoreUnavailableError):
            await store.get("/q/a")
        with pytest.raises(StoreUnavailableError):
            await store.create("/q/b", b"1")
        # Quorum comes back and the store works again without being reopened.
        await cluster.restart(0)
        async with asyncio.timeout(30):
            while True:
                try:
                    assert (await store.get("/q/a")).value == b"1"  # type: ignore[union-attr]
                    break
                except StoreUnavailableError:
                    await asyncio.sleep(0.2)
    finally:
        await store.close()


async def test_compaction_by_another_client_is_seen(shared_cluster: EtcdCluster) -> None:
    a = await EtcdStore.open(shared_cluster.endpoints)
    b = await EtcdStore.open(rotated(shared_cluster.endpoints, 1))
    try:
        kv = await a.create("/cmp/k", b"1")
        kv = await a.update("/cmp/k", b"2", kv.mod_revision)
        target = await b.current_revision()
        assert await a.compacted_revision() < target
        await b.compact(target)
        # ``a`` never compacted: it learns etcd's compact revision from etcd itself.
        assert await a.compacted_revision() == target
        with pytest.raises(CompactedError) as err:
            await anext(a.watch("/cmp/", kv.mod_revision - 2))
        assert err.value.compact_revision == target
        with pytest.raises(CompactedError):
            await a.list("/cmp/", revision=target - 1)
        await a.compact(target - 1)  # older than the compaction: nothing to do
        assert (await a.list("/cmp/", revision=target)).items == [kv]
    finally:
        await a.close()
        await b.close()


async def test_closed_store_refuses_calls_and_ends_watches(shared_cluster: EtcdCluster) -> None:
    store = await EtcdStore.open(shared_cluster.endpoints)
    start = await store.current_revision()
    watch = store.watch("/closed/", start)
    waiting = asyncio.ensure_future(anext(watch, None))
    await asyncio.sleep(0.2)
    await store.close()
    async with asyncio.timeout(5):
        assert await waiting is None  # the watch ended instead of retrying a closed session
    with pytest.raises(StoreUnavailableError):
        await store.get("/closed/a")
    await store.close()


def exists(path: str | Path) -> bool:
    return os.path.exists(path)


async def test_cluster_stop_removes_members_and_data(tmp_path: Path) -> None:
    c = EtcdCluster(tmp_path / "etcd", members=1)
    await c.start()
    pids = [m.process.pid for m in c.members if m.process]
    data = [m.data_dir for m in c.members]
    assert all(d.exists() for d in data)
    await c.stop()
    assert not any(exists(f"/proc/{pid}") for pid in pids)  # stopped and reaped
    assert all(not d.exists() for d in data)
