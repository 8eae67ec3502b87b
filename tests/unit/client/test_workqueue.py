from __future__ import annotations

import asyncio

from peapod.client.workqueue import WorkQueue
from peapod.testing.clock import FakeClock


async def test_deduplicates_queued_keys() -> None:
    q = WorkQueue(clock=FakeClock())
    q.add("a")
    q.add("a")
    q.add("b")
    assert len(q) == 2
    assert await q.get() == "a"
    assert await q.get() == "b"


async def test_key_added_while_processing_runs_again_after_done() -> None:
    q = WorkQueue(clock=FakeClock())
    q.add("a")
    key = await q.get()
    q.add("a")  # while processing: must not be handed to a second worker
    assert len(q) == 0
    q.done(key)
    assert len(q) == 1 and await q.get() == "a"


async def test_rate_limited_retries_back_off_exponentially() -> None:
    clock = FakeClock()
    q = WorkQueue(clock=clock, base_delay=1.0, max_delay=4.0)
    q.add_rate_limited("a")  # 1 s
    await asyncio.sleep(0)
    assert len(q) == 0
    clock.advance(1.0)
    await asyncio.sleep(0)
    assert await q.get() == "a"
    q.done("a")
    q.add_rate_limited("a")  # 2 s
    await asyncio.sleep(0)
    clock.advance(1.5)
    await asyncio.sleep(0)
    assert len(q) == 0
    clock.advance(0.5)
    await asyncio.sleep(0)
    assert len(q) == 1
    q.forget("a")
    assert q.retries("a") == 0


async def test_run_workers_retries_failures_until_success() -> None:
    clock = FakeClock()
    q = WorkQueue(clock=clock, base_delay=1.0)
    calls: list[str] = []
    done = asyncio.Event()

    async def sync(key: object) -> None:
        calls.append(str(key))
        if len(calls) < 3:
            raise RuntimeError("boom")
        done.set()

    q.add("k")
    runner = asyncio.create_task(q.run_workers(sync, workers=2))
    for _ in range(10):
        await asyncio.sleep(0)
        clock.advance(2.0)
        if done.is_set():
            break
    await asyncio.wait_for(done.wait(), 1)
    runner.cancel()
    assert calls == ["k", "k", "k"]
    assert q.retries("k") == 0
