"""The scheduling queue with a FakeClock: order, backoff, requeue on cluster events, gates."""

from __future__ import annotations

import asyncio

import pytest

from peapod.controlplane.scheduler.queue import SchedulingQueue, backoff_duration
from peapod.testing.clock import FakeClock
from tests.unit.scheduler.builders import pod


@pytest.mark.parametrize(("attempts", "want"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (9, 10.0)])
def test_backoff_duration(attempts: int, want: float) -> None:
    assert backoff_duration(attempts, 1.0, 10.0) == want


def q(**kw: object) -> tuple[SchedulingQueue, FakeClock]:
    clock = FakeClock()
    return SchedulingQueue(clock=clock, **kw), clock  # type: ignore[arg-type]


def test_priority_then_fifo() -> None:
    queue, _ = q()
    queue.add("default/a", pod("a"))
    queue.add("default/b", pod("b", priority=10))
    queue.add("default/c", pod("c"))
    order = [queue.try_pop().key for _ in range(3)]  # type: ignore[union-attr]
    assert order == ["default/b", "default/a", "default/c"]
    assert queue.try_pop() is None


def test_unschedulable_waits_for_a_relevant_event() -> None:
    queue, clock = q(pop_from_backoff=False)
    queue.add("default/a", pod("a"))
    qp = queue.try_pop()
    assert qp is not None
    queue.add_unschedulable(qp, {"NodeResourcesFit"})
    assert queue.where("default/a") == "unschedulable"
    clock.advance(30)
    assert queue.try_pop() is None
    assert queue.move_for_event("NodeLabel") == 0  # cannot help a resources rejection
    assert queue.where("default/a") == "unschedulable"
    assert queue.move_for_event("AssignedPodDelete") == 1
    # backoff (1 s after the first attempt) is long over: straight to activeQ
    assert queue.where("default/a") == "active"
    assert queue.try_pop() is qp


def test_backoff_doubles_and_is_honoured() -> None:
    queue, clock = q(pop_from_backoff=False)
    queue.add("default/a", pod("a"))
    for attempt, wait in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0)):
        qp = queue.try_pop()
        assert qp is not None and qp.attempts == attempt
        queue.add_unschedulable(qp, {"NodeAffinity"})
        queue.move_for_event("NodeAdd")
        assert queue.where("default/a") == "backoff"
        clock.advance(wait - 0.01)
        assert queue.try_pop() is None
        clock.advance(0.02)


def test_idle_queue_pops_event_moved_pods_early() -> None:
    queue, _ = q()
    queue.add("default/a", pod("a"))
    qp = queue.try_pop()
    assert qp is not None
    queue.add_unschedulable(qp, {"NodeAffinity"})
    queue.move_for_event("NodeLabel")
    assert queue.where("default/a") == "backoff"
    assert queue.try_pop() is qp  # activeQ empty: no need to wait the backoff out


def test_error_backoff_is_never_skipped() -> None:
    queue, clock = q()
    queue.add("default/a", pod("a"))
    qp = queue.try_pop()
    assert qp is not None
    queue.add_error(qp)
    assert queue.try_pop() is None
    clock.advance(1.0)
    assert queue.try_pop() is qp


def test_event_during_the_attempt_sends_the_pod_to_backoff() -> None:
    queue, clock = q(pop_from_backoff=False)
    queue.add("default/a", pod("a"))
    qp = queue.try_pop()
    assert qp is not None
    queue.move_for_event("NodeAdd")  # e.g. a node appeared while the pod was being scheduled
    queue.add_unschedulable(qp, {"NodeResourcesFit"})
    assert queue.where("default/a") == "backoff"
    clock.advance(1.0)
    assert queue.try_pop() is qp


def test_leftover_unschedulable_pods_are_retried_after_5_minutes() -> None:
    queue, clock = q()
    queue.add("default/a", pod("a"))
    qp = queue.try_pop()
    assert qp is not None
    queue.add_unschedulable(qp, {"NodeAffinity"})
    clock.advance(299)
    assert queue.try_pop() is None
    clock.advance(1)
    assert queue.try_pop() is qp


def test_pending_pod_update_requeues_it() -> None:
    queue, _ = q()
    queue.add("default/a", pod("a"))
    qp = queue.try_pop()
    assert qp is not None
    queue.add_unschedulable(qp, {"NodeAffinity"})
    queue.update("default/a", {**pod("a"), "status": {"conditions": []}})  # status only: no move
    assert queue.where("default/a") == "unschedulable"
    queue.update("default/a", pod("a", nodeSelector={"x": "y"}))
    assert queue.try_pop() is qp


def test_scheduling_gates() -> None:
    queue, _ = q()
    queue.add("default/a", pod("a", schedulingGates=[{"name": "wait"}]))
    assert queue.where("default/a") == "gated"
    assert queue.try_pop() is None
    queue.update("default/a", pod("a"))
    assert queue.try_pop() is not None


def test_delete_while_in_flight() -> None:
    queue, _ = q()
    queue.add("default/a", pod("a"))
    qp = queue.try_pop()
    assert qp is not None
    queue.delete("default/a")
    queue.add_unschedulable(qp, {"NodeAffinity"})
    assert "default/a" not in queue


async def test_pop_waits_for_add_and_for_backoff_on_the_clock() -> None:
    queue, clock = q(pop_from_backoff=False)
    task = asyncio.create_task(queue.pop())
    await asyncio.sleep(0)
    assert not task.done()
    queue.add("default/a", pod("a"))
    qp = await asyncio.wait_for(task, 1)
    queue.add_error(qp)
    task = asyncio.create_task(queue.pop())
    for _ in range(3):
        await asyncio.sleep(0)
    assert not task.done()
    clock.advance(1.0)
    assert (await asyncio.wait_for(task, 1)) is qp
