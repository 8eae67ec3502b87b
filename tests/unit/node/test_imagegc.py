"""Image GC: the pure plan (tables) and the loop over a fake image service, a fake disk and a FakeClock."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

from peapod.node.imagegc import ImageGC, fs_usage, plan_image_gc, run_image_gc
from peapod.node.images import ImageInUseError
from peapod.testing.clock import FakeClock
from peapod.testing.fakes_images import FakeImageService, fake_image

MB = 1_000_000
A = fake_image("a:1", size=10 * MB)
B = fake_image("b:1", size=20 * MB)
C = fake_image("c:1", size=30 * MB)
D = fake_image("d:1", size=5 * MB)
ALL = [A, B, C, D]
# last used: D oldest, then A, C, B
LAST = {D.id: 10.0, A.id: 20.0, C.id: 30.0, B.id: 40.0}


@pytest.mark.parametrize(
    ("name", "usage", "capacity", "in_use", "high", "low", "min_age", "want"),
    [
        ("below high: nothing", 84 * MB, 100 * MB, set(), 85, 80, 0, []),
        ("at high: kubelet collects (>=)", 85 * MB, 100 * MB, set(), 85, 80, 0, [D.id]),
        ("one image brings it under low", 84 * MB, 100 * MB, set(), 80, 70, 0, [D.id, A.id]),
        ("LRU order until below low", 90 * MB, 100 * MB, set(), 85, 60, 0, [D.id, A.id, C.id]),
        ("exactly enough stops", 95 * MB, 100 * MB, set(), 85, 80, 0, [D.id, A.id]),
        ("in-use by id is skipped", 90 * MB, 100 * MB, {D.id}, 85, 80, 0, [A.id]),
        ("in-use by short ref is skipped", 90 * MB, 100 * MB, {"d:1"}, 85, 80, 0, [A.id]),
        ("in-use by normalized ref", 90 * MB, 100 * MB, {"docker.io/library/d:1", "a:1"}, 85, 80, 0,
         [C.id]),
        ("in-use by bare hex id", 90 * MB, 100 * MB, {D.id.removeprefix("sha256:")}, 85, 80, 0, [A.id]),
        ("everything in use: nothing", 99 * MB, 100 * MB, {"a:1", "b:1", "c:1", "d:1"}, 85, 80, 0, []),
        ("not enough: every candidate", 99 * MB, 100 * MB, set(), 85, 0, 0, [D.id, A.id, C.id, B.id]),
        ("min_age keeps recently used", 99 * MB, 100 * MB, set(), 85, 0, 25, [D.id, A.id]),
        ("high=100 disables", 100 * MB, 100 * MB, set(), 100, 80, 0, []),
        ("no capacity: nothing", 10, 0, set(), 85, 80, 0, []),
    ],
)
def test_plan(name, usage, capacity, in_use, high, low, min_age, want):
    got = plan_image_gc(ALL, in_use, usage, capacity, high=high, low=low, last_used=LAST, now=50.0,
                        min_age=min_age)
    assert got == want, name


def test_plan_unknown_last_use_counts_as_now_and_ties_break_by_id():
    x, y = fake_image("x:1", size=MB), fake_image("y:1", size=MB)
    got = plan_image_gc([y, x, A], set(), 99 * MB, 100 * MB, last_used={A.id: 5.0}, now=9.0, low=0)
    assert got == [A.id, *sorted([x.id, y.id])]
    # min_age protects images with no record (just seen)
    assert plan_image_gc([x], set(), 99, 100, last_used={}, now=9.0, min_age=1) == []


@pytest.mark.parametrize(("high", "low"), [(80, 80), (70, 80), (101, 80), (85, -1)])
def test_plan_rejects_bad_thresholds(high, low):
    with pytest.raises(ValueError, match="thresholds"):
        plan_image_gc(ALL, set(), 1, 1, high=high, low=low, last_used={}, now=0)


class FakeDisk:
    """statvfs of a 100 MB filesystem holding ``base`` bytes plus the fake service's images."""

    def __init__(self, images: FakeImageService, base: int) -> None:
        self.images, self.base, self.paths = images, base, []

    def __call__(self, path):
        self.paths.append(path)
        used = self.base + sum(i.size for i in self.images.list())
        return SimpleNamespace(f_frsize=1000, f_blocks=100 * MB // 1000, f_bavail=(100 * MB - used) // 1000)


def service(*images) -> FakeImageService:
    svc = FakeImageService()
    for img in images:
        svc.local[img.id] = img
    return svc


def test_fs_usage_counts_root_reserved_blocks_as_used():
    st = SimpleNamespace(f_frsize=4096, f_blocks=100, f_bfree=50, f_bavail=40)
    assert fs_usage(Path("/x"), lambda _p: st) == (60 * 4096, 100 * 4096)
    used, cap = fs_usage(Path("/"))
    assert 0 <= used <= cap


async def test_run_once_removes_lru_unused_images_and_remembers_use():
    svc = service(A, B, C, D)
    clock = FakeClock()
    in_use = {"b:1"}
    gc = ImageGC(svc, in_use=lambda: in_use, clock=clock, data_dir=Path("/imgs"), min_age=0,
                 statfs=FakeDisk(svc, base=30 * MB))  # 30 + 65 = 95% full
    gc.detect()  # first seen at t0 (all equal: ties by id)
    clock.advance(10)
    in_use = {"b:1", "c:1"}  # c used at t0+10: newest
    gc.detect()
    in_use = {"b:1"}
    clock.advance(10)
    removed = await gc.run_once()
    # needs 15 MB: oldest unused first (a and d tie at t0: by id), never b (in use)
    first_two = sorted([A, D], key=lambda i: i.id)
    want = []
    freed = 0
    for img in [*first_two, C]:
        if freed >= 15 * MB:
            break
        want.append(img.id)
        freed += img.size
    assert removed == want
    assert B.id in {i.id for i in svc.list()}
    assert set(gc.last_used) == {i.id for i in svc.list()}
    assert [c[1] for c in svc.calls_to("remove")] == want


async def test_run_once_below_threshold_and_min_age_keep_everything():
    svc = service(A, B)
    clock = FakeClock()
    disk = FakeDisk(svc, base=10 * MB)  # 40% full
    gc = ImageGC(svc, in_use=set, clock=clock, data_dir=Path("/imgs"), min_age=120, statfs=disk)
    assert await gc.run_once() == []
    disk.base = 70 * MB  # 100% full, but both images were first seen just now
    assert await gc.run_once() == []
    clock.advance(119)
    assert await gc.run_once() == []
    clock.advance(1)
    # 20 MB to free (down to 80%); equal last use: by id
    order = sorted([A, B], key=lambda i: i.id)
    want = [order[0].id] if order[0].size >= 20 * MB else [order[0].id, order[1].id]
    assert await gc.run_once() == want


async def test_run_once_skips_images_that_became_in_use():
    svc = service(A, D)
    svc.fail_next("remove", ImageInUseError("image in use"))
    gc = ImageGC(svc, in_use=set, clock=FakeClock(), data_dir=Path("/imgs"), min_age=0,
                 statfs=FakeDisk(svc, base=85 * MB), low=10)
    removed = await gc.run_once()
    planned = [c[1] for c in svc.calls_to("remove")]
    assert len(planned) == 2 and removed == planned[1:]  # the refused one is kept, the other goes
    assert {i.id for i in svc.list()} == {planned[0]}


async def test_loop_runs_every_interval_on_the_clock():
    svc = service(A)
    clock = FakeClock()
    disk = FakeDisk(svc, base=0)  # 10% full: nothing to do at first
    task = asyncio.create_task(run_image_gc(svc, in_use=set, clock=clock, interval=300, data_dir=Path("/imgs"),
                                            min_age=0, statfs=disk))
    try:
        await _until(lambda: clock.sleepers == 1)
        assert len(disk.paths) == 1 and disk.paths[0] == Path("/imgs")
        disk.base = 90 * MB  # the disk fills up
        clock.advance(299)
        await _until(lambda: clock.sleepers == 1)
        assert svc.list() == [A] and len(disk.paths) == 1
        clock.advance(1)
        await _until(lambda: len(disk.paths) == 2 and clock.sleepers == 1)
        assert svc.list() == []
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_loop_survives_a_failing_round():
    svc = service(A)
    clock = FakeClock()
    calls = []

    def broken(path):
        calls.append(path)
        raise OSError("statvfs failed")

    task = asyncio.create_task(run_image_gc(svc, in_use=set, clock=clock, data_dir=Path("/imgs"), statfs=broken))
    try:
        await _until(lambda: clock.sleepers == 1)
        clock.advance(300)
        await _until(lambda: len(calls) == 2 and clock.sleepers == 1)
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _until(cond, rounds: int = 200) -> None:
    for _ in range(rounds):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")
