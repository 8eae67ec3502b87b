"""The compactor with a fake clock and a fake store: no sleeps."""

from __future__ import annotations

import asyncio

import pytest

from peapod.store.base import CompactedError, FutureRevisionError, StoreUnavailableError
from peapod.store.compactor import compaction_target, run_compactor
from peapod.testing.clock import FakeClock


class FakeStore:
    """Only what the compactor touches: revisions and compact(), with failures on demand."""

    def __init__(self) -> None:
        self.revision = 0
        self.compacted = 0
        self.calls: list[int] = []
        self.fail_next: Exception | None = None

    async def current_revision(self) -> int:
        return self.revision

    async def compacted_revision(self) -> int:
        return self.compacted

    async def compact(self, revision: int) -> None:
        self.calls.append(revision)
        if self.fail_next is not None:
            err, self.fail_next = self.fail_next, None
            raise err
        if revision > self.revision:
            raise FutureRevisionError(revision, self.revision)
        self.compacted = max(self.compacted, revision)


async def settle(clock: FakeClock) -> None:
    """Let the compactor run until it sleeps again."""
    for _ in range(100):
        await asyncio.sleep(0)
        if clock.sleepers:
            return
    raise AssertionError("compactor did not go back to sleep")


async def tick(clock: FakeClock, seconds: float) -> None:
    clock.advance(seconds)
    await settle(clock)


@pytest.fixture
async def running():
    clock = FakeClock()
    store = FakeStore()
    task = asyncio.create_task(run_compactor(store, clock=clock, interval=300, keep_revisions=10))  # type: ignore[arg-type]
    await settle(clock)
    yield clock, store, task
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize(
    ("previous", "current", "compacted", "keep", "target"),
    [
        (0, 500, 0, 10, 0),  # first round: nothing seen an interval ago
        (100, 500, 0, 10, 100),  # compact at what was current one interval ago
        (100, 105, 0, 10, 95),  # but keep the newest `keep` revisions
        (100, 500, 100, 10, 0),  # already compacted there
        (100, 500, 200, 10, 0),  # someone compacted further
        (5, 8, 0, 10, 0),  # fewer revisions than `keep`
        (100, 100, 0, 0, 100),
    ],
)
def test_compaction_target(previous: int, current: int, compacted: int, keep: int, target: int) -> None:
    assert compaction_target(previous, current, compacted, keep) == target


async def test_compacts_at_the_revision_seen_one_interval_earlier(running) -> None:
    clock, store, _ = running
    store.revision = 100
    await tick(clock, 299)
    assert store.calls == []  # the interval has not passed
    await tick(clock, 1)
    assert store.calls == []  # first round only notes revision 100
    store.revision = 250
    await tick(clock, 300)
    assert store.calls == [100]
    store.revision = 400
    await tick(clock, 300)
    assert store.calls == [100, 250]
    assert store.compacted == 250


async def test_keeps_the_newest_revisions(running) -> None:
    clock, store, _ = running
    store.revision = 100
    await tick(clock, 300)
    store.revision = 104  # few writes this interval: keep 10 newest
    await tick(clock, 300)
    assert store.calls == [94]


async def test_idle_store_is_compacted_once(running) -> None:
    clock, store, _ = running
    store.revision = 100
    for _ in range(5):
        await tick(clock, 300)
    assert store.calls == [90]


async def test_errors_are_survived(running) -> None:
    clock, store, task = running
    store.revision = 100
    await tick(clock, 300)
    store.revision = 200
    store.fail_next = StoreUnavailableError("disk on fire")
    await tick(clock, 300)
    assert store.calls == [100] and store.compacted == 0
    store.fail_next = CompactedError(100, 150)
    store.revision = 300
    await tick(clock, 300)
    assert store.calls == [100, 200]
    await tick(clock, 300)
    assert store.calls == [100, 200, 290]
    assert not task.done()


async def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        await run_compactor(FakeStore(), clock=FakeClock(), interval=0)  # type: ignore[arg-type]
