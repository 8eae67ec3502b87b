from datetime import UTC, datetime, timedelta

import pytest

from peapod.controlplane.controllers import deployment_util as du
from tests.unit.controllers.builders import deploy, rs

NOW = datetime(2026, 1, 1, 1, 0, tzinfo=UTC)
OLDER, OLD, NEW = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"


@pytest.mark.parametrize(
    "value,total,up,expected",
    [
        (3, 10, True, 3),
        ("25%", 10, True, 3),
        ("25%", 10, False, 2),
        ("25%", 4, False, 1),
        ("25%", 3, False, 0),
        ("25%", 3, True, 1),
        ("100%", 7, False, 7),
        ("0%", 7, True, 0),
        (None, 5, True, 0),
    ],
)
def test_scaled_value(value: object, total: int, up: bool, expected: int) -> None:
    assert du.scaled_value(value, total, up) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["25", "x%", True])
def test_scaled_value_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        du.scaled_value(bad, 10, True)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "surge,unavail,desired,expected",
    [
        ("25%", "25%", 10, (3, 2)),
        ("25%", "25%", 1, (1, 0)),
        (0, "10%", 5, (0, 1)),  # rounds to 0,0 -> 1
        (0, 0, 5, (0, 1)),
        (2, 0, 5, (2, 0)),
        ("50%", "50%", 3, (2, 1)),
    ],
)
def test_fenceposts(surge: object, unavail: object, desired: int, expected: tuple[int, int]) -> None:
    assert du.resolve_fenceposts(surge, unavail, desired) == expected  # type: ignore[arg-type]


def test_max_unavailable_capped_and_zero_for_recreate() -> None:
    assert du.max_unavailable(deploy(2, surge=0, unavailable=5)) == 2
    assert du.max_unavailable(deploy(0, surge=1, unavailable=1)) == 0
    assert du.max_unavailable(deploy(3, strategy="Recreate")) == 0
    assert du.max_surge(deploy(3, strategy="Recreate")) == 0


def test_hash_is_stable_and_safe() -> None:
    t = deploy()["spec"]["template"]
    h = du.compute_hash(t, None)
    assert h == du.compute_hash({"spec": t["spec"], "metadata": t["metadata"]}, None)  # key order
    assert h == du.compute_hash(
        {**t, "metadata": {**t["metadata"], "annotations": {}}}, None
    )  # empty = absent
    assert h == "6d5c546dd8"  # pinned: names of existing ReplicaSets must not change across versions
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert du.compute_hash(t, 1) != h and du.compute_hash(t, 1) != du.compute_hash(t, 2)
    t2 = {**t, "spec": {"containers": [{"name": "c", "image": "y"}]}}
    assert du.compute_hash(t2, None) != h


def test_equal_ignore_hash() -> None:
    t = deploy()["spec"]["template"]
    with_hash = {**t, "metadata": {"labels": {"app": "foo", du.HASH_LABEL: "abc"}}}
    assert du.equal_ignore_hash(t, with_hash)
    assert t["metadata"]["labels"] == {"app": "foo"}  # inputs untouched
    assert not du.equal_ignore_hash(t, {**t, "spec": {"containers": []}})


def test_find_new_and_old() -> None:
    d = deploy()
    a = rs("a", 1, created=OLD)
    a["spec"]["template"] = {
        "metadata": {"labels": {"app": "foo", du.HASH_LABEL: "h"}},
        "spec": d["spec"]["template"]["spec"],
    }
    b = rs("b", 0, created=OLDER)
    b["spec"]["template"] = {"spec": {"containers": [{"name": "c", "image": "old"}]}}
    assert du.find_new_rs(d, [b, a]) is a
    required, old = du.find_old_rss(a, [a, b])
    assert required == [] and old == [b]


# reconcileNewReplicaSet cases (kube rolling_test.go): maxUnavailable 0 in all of them.
@pytest.mark.parametrize(
    "replicas,surge,old,new,expected",
    [
        (10, 0, 10, 0, None),
        (10, 2, 10, 0, 2),
        (10, 2, 5, 0, 7),
        (10, 2, 10, 2, None),
        (2, 2, 2, 4, 2),
    ],
)
def test_reconcile_new(replicas: int, surge: int, old: int, new: int, expected: int | None) -> None:
    d = deploy(replicas, surge=surge, unavailable=0)
    assert du.reconcile_new(d, rs("new", new, created=NEW), [rs("old", old, created=OLD)]) == expected


# reconcileOldReplicaSets cases (kube rolling_test.go): maxSurge 0.
@pytest.mark.parametrize(
    "unavail,old,new,ready_old,ready_new,expected",
    [
        (0, 10, 0, 10, 0, [("old", 9)]),
        (2, 10, 0, 10, 0, [("old", 8)]),
        (2, 10, 0, 8, 0, [("old", 8)]),  # the unhealthy ones are cleaned up first
        (2, 10, 0, 9, 0, [("old", 9), ("old", 8)]),  # one unhealthy cleaned, one ready scaled down
        (2, 8, 2, 8, 0, []),  # the new RS's unavailable pods use up the budget
    ],
)
def test_reconcile_old(
    unavail: int, old: int, new: int, ready_old: int, ready_new: int, expected: list[tuple[str, int]]
) -> None:
    d = deploy(10, surge=0, unavailable=unavail)
    steps = du.reconcile_old(
        d,
        rs("new", new, available=ready_new, created=NEW),
        [rs("old", old, available=ready_old, created=OLD)],
    )
    assert steps == expected


def test_rolling_with_max_unavailable_zero_never_drops_below_desired() -> None:
    """Simulate a whole rollout: pods become available at once; availability never dips."""
    d = deploy(4, surge=1, unavailable=0)
    old, new = rs("old", 4, created=OLD), rs("new", 0, created=NEW)
    for _ in range(20):
        steps = du.rolling_step(d, new, [old])
        if not steps:
            break
        for name, n in steps:
            target = new if name == "new" else old
            target["spec"]["replicas"] = n
            target["status"] = {"replicas": n, "availableReplicas": n}
            assert du.available_count([old, new]) >= 4
            assert du.replica_count([old, new]) <= 5
    assert du.replicas(new) == 4 and du.replicas(old) == 0


@pytest.mark.parametrize(
    "replicas,prev,new_size,olds,expected_new,expected_olds",
    [
        (12, 10, 10, [], 12, []),
        (10, 5, 2, [3], 4, [6]),
        (3, 5, 2, [3], 1, [2]),
        (4, 9, 8, [1], 4, [0]),
        (10, 7, 2, [3, 2], 3, [4, 3]),
        (8, 13, 2, [8, 3], 1, [5, 2]),
    ],
)
def test_proportional_scaling(
    replicas: int, prev: int, new_size: int, olds: list[int], expected_new: int, expected_olds: list[int]
) -> None:
    """kube sync_test.go TestScale: annotations carry the previous size (maxSurge 0)."""
    d = deploy(replicas, surge=0, unavailable=0)
    new = rs("new", new_size, created=NEW, desired=prev, max_replicas=prev)
    old_rss = [
        rs(f"old{i}", n, created=[OLD, OLDER][i], desired=prev, max_replicas=prev) for i, n in enumerate(olds)
    ]
    sizes = {"new": new_size, **{f"old{i}": n for i, n in enumerate(olds)}}
    sizes.update(dict(du.proportional_scale(d, new, old_rss)))
    assert sizes["new"] == expected_new
    assert [sizes[f"old{i}"] for i in range(len(olds))] == expected_olds


def test_scaling_event_and_saturation() -> None:
    d = deploy(5)
    assert du.is_scaling_event(d, rs("new", 3, desired=3), [])
    assert not du.is_scaling_event(d, rs("new", 3, desired=5), [rs("old", 0, desired=1)])
    assert du.is_saturated(d, rs("new", 5, desired=5))
    assert not du.is_saturated(d, rs("new", 5, desired=5, available=4))
    # A saturated new RS scales every old one to 0.
    assert du.proportional_scale(d, rs("new", 5, desired=5), [rs("old", 2, desired=5)]) == [("old", 0)]


def test_new_rs_annotations_and_history() -> None:
    d = deploy(3, surge=1)
    d["metadata"]["annotations"] = {
        du.CHANGE_CAUSE: "kubectl set image",
        du.REVISION: "4",
        du.LAST_APPLIED: "{}",
    }
    fresh = rs("new", 0)
    assert du.set_new_rs_annotations(d, fresh, 5, exists=False)
    ann = fresh["metadata"]["annotations"]
    assert ann == {
        du.CHANGE_CAUSE: "kubectl set image",
        du.REVISION: "5",
        du.DESIRED_REPLICAS: "3",
        du.MAX_REPLICAS: "4",
    }
    back = rs("back", 0, revision=2)
    back["metadata"]["annotations"][du.REVISION_HISTORY] = "1"
    assert du.set_new_rs_annotations(d, back, 5, exists=True)
    assert back["metadata"]["annotations"][du.REVISION] == "5"
    assert back["metadata"]["annotations"][du.REVISION_HISTORY] == "1,2"
    assert not du.set_new_rs_annotations(d, back, 5, exists=True)  # idempotent


def test_cleanup_candidates() -> None:
    d = deploy(revisionHistoryLimit=1)
    olds = [
        rs("r1", 0, revision=1),
        rs("r2", 0, revision=2),
        rs("r3", 1, revision=3),
        rs("r4", 0, revision=4),
    ]
    assert [r["metadata"]["name"] for r in du.cleanup_candidates(d, olds)] == ["r1", "r2"]
    unsettled = rs("r0", 0, revision=0, generation=2, observed=1)
    assert du.cleanup_candidates(deploy(revisionHistoryLimit=0), [unsettled]) == []
    assert du.cleanup_candidates(deploy(revisionHistoryLimit=None), olds) == []


def test_old_pods_running() -> None:
    new = rs("new", 0)
    pod = {"status": {"phase": "Running"}}
    assert du.old_pods_running(new, [rs("old", 0, actual=1)], {})
    assert du.old_pods_running(new, [rs("old", 0)], {"uid-old": [pod]})
    assert not du.old_pods_running(new, [rs("old", 0)], {"uid-old": [{"status": {"phase": "Succeeded"}}]})
    assert not du.old_pods_running(new, [rs("old", 0)], {"uid-new": [pod]})


def _status(d: dict, rss: list, new: dict | None, now: datetime) -> dict:
    return du.progress_status(d, du.calculate_status(rss, new, d, now), new, now)


def test_progress_conditions() -> None:
    d = deploy(2, surge=1, unavailable=0, progressDeadlineSeconds=60)
    new = rs("foo-abc", 2, available=0)
    # Progress since the last status: ReplicaSetUpdated.
    st = _status(d, [new], new, NOW)
    cond = du.get_condition(st, "Progressing")
    assert (cond["status"], cond["reason"], cond["message"]) == (
        "True",
        du.RS_UPDATED,
        'ReplicaSet "foo-abc" is progressing.',
    )
    assert du.get_condition(st, "Available")["reason"] == du.MIN_UNAVAILABLE
    # No progress and the deadline passed: ProgressDeadlineExceeded.
    d["status"] = st
    later = NOW + timedelta(seconds=61)
    st2 = _status(d, [new], new, later)
    cond = du.get_condition(st2, "Progressing")
    assert (cond["status"], cond["reason"], cond["message"]) == (
        "False",
        du.TIMED_OUT,
        'ReplicaSet "foo-abc" has timed out progressing.',
    )
    assert du.stuck_requeue_after(d, st, NOW + timedelta(seconds=30)) == pytest.approx(31)
    # Complete: NewReplicaSetAvailable and Available.
    done = rs("foo-abc", 2, available=2)
    st3 = _status(d, [done], done, later)
    cond = du.get_condition(st3, "Progressing")
    assert (cond["status"], cond["reason"]) == ("True", du.NEW_RS_AVAILABLE)
    assert cond["message"] == 'ReplicaSet "foo-abc" has successfully progressed.'
    assert du.get_condition(st3, "Available")["reason"] == du.MIN_AVAILABLE
    assert du.deployment_complete(d, st3)
    # Without a deadline there is no Progressing condition.
    d2 = deploy(2, progressDeadlineSeconds=None)
    assert du.get_condition(_status(d2, [new], new, NOW), "Progressing") is None


def test_paused_condition_transitions() -> None:
    d = deploy(paused=True)
    cond = du.paused_condition(d, NOW)
    assert cond is not None and (cond["status"], cond["reason"]) == ("Unknown", du.PAUSED)
    d["status"] = {"conditions": [cond]}
    assert du.paused_condition(d, NOW) is None
    d["spec"]["paused"] = False
    cond = du.paused_condition(d, NOW)
    assert cond is not None and cond["reason"] == du.RESUMED
    d["status"] = {"conditions": [{"type": "Progressing", "status": "False", "reason": du.TIMED_OUT}]}
    d["spec"]["paused"] = True
    assert du.paused_condition(d, NOW) is None  # a timeout is not overwritten
