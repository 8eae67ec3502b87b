from datetime import UTC, datetime

import pytest

from peapod.controlplane.controllers.controller_utils import (
    Claim,
    Expectations,
    claim_decision,
    deletion_order_key,
    is_pod_active,
    is_pod_available,
    pod_from_template,
    pods_to_delete,
    set_condition,
    slow_start_batch,
)
from peapod.testing.clock import FakeClock
from tests.unit.controllers.builders import pod

NOW = datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
COST = "controller.kubernetes.io/pod-deletion-cost"


# Each row: (pod deleted first, pod deleted later, why).
RANKING = [
    (pod("a"), pod("b", node="n1"), "unassigned before assigned"),
    (pod("a", node="n", phase="Pending"), pod("b", node="n", phase="Unknown"), "Pending before Unknown"),
    (pod("a", node="n", phase="Unknown"), pod("b", node="n", phase="Running"), "Unknown before Running"),
    (pod("a", node="n"), pod("b", node="n", ready=True), "not ready before ready"),
    (pod("b", node="n", annotations={COST: "-5"}), pod("a", node="n"), "lower deletion cost"),
    (
        pod("a", node="n", ready=True, ready_since="2026-01-01T00:05:00Z"),
        pod("b", node="n", ready=True, ready_since="2026-01-01T00:01:00Z"),
        "ready more recently first",
    ),
    (pod("a", node="n", restarts=5), pod("b", node="n", restarts=1), "more restarts first"),
    (pod("a", node="n", created="2026-01-01T00:05:00Z"), pod("b", node="n"), "newer first"),
]


@pytest.mark.parametrize("first,later,why", RANKING, ids=[r[2] for r in RANKING])
def test_deletion_ranking(first: dict, later: dict, why: str) -> None:
    first = {**first, "metadata": {**first["metadata"], "name": "zz"}}  # the name tie-break works against it
    assert deletion_order_key(first) < deletion_order_key(later), why
    assert pods_to_delete([later, first], [], 1) == [first]


def test_cost_annotation_is_read() -> None:
    p = pod("a", annotations={COST: "10"})
    assert deletion_order_key(p) > deletion_order_key(pod("b"))


def test_doubled_up_pods_go_first() -> None:
    a, b = pod("a", node="n1", ready=True), pod("b", node="n2", ready=True)
    related = [a, b, pod("c", node="n2")]
    assert pods_to_delete([a, b], related, 1) == [b]


def test_active_and_available() -> None:
    assert is_pod_active(pod("a"))
    assert not is_pod_active(pod("a", phase="Succeeded"))
    assert not is_pod_active(pod("a", phase="Failed"))
    assert not is_pod_active(pod("a", deleting=True))
    ready = pod("a", ready=True, ready_since="2026-01-01T00:09:55Z")
    assert is_pod_available(ready, 0, NOW)
    assert is_pod_available(ready, 4, NOW)
    assert not is_pod_available(ready, 5, NOW)  # exactly minReadySeconds is not yet "before now"
    assert not is_pod_available(pod("b"), 0, NOW)


def test_claim_decisions() -> None:
    owner = {"metadata": {"name": "rs", "namespace": "default", "uid": "rs-uid"}}
    sel = {"matchLabels": {"app": "x"}}
    mine = {"uid": "rs-uid", "controller": True, "kind": "ReplicaSet", "name": "rs"}
    other = {"uid": "other", "controller": True, "kind": "ReplicaSet", "name": "o"}
    assert claim_decision(owner, pod("p", labels={"app": "x"}, owner=mine), sel) is Claim.OWN
    assert claim_decision(owner, pod("p", labels={"app": "y"}, owner=mine), sel) is Claim.RELEASE
    assert claim_decision(owner, pod("p", labels={"app": "x"}), sel) is Claim.ADOPT
    assert claim_decision(owner, pod("p", labels={"app": "y"}), sel) is Claim.IGNORE
    assert claim_decision(owner, pod("p", labels={"app": "x"}, owner=other), sel) is Claim.IGNORE
    assert claim_decision(owner, pod("p", labels={"app": "x"}, deleting=True), sel) is Claim.IGNORE
    dying = {"metadata": {**owner["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    assert claim_decision(dying, pod("p", labels={"app": "x"}), sel) is Claim.IGNORE
    assert claim_decision(dying, pod("p", labels={"app": "y"}, owner=mine), sel) is Claim.IGNORE


def test_expectations_block_until_observed_or_expired() -> None:
    clock = FakeClock()
    exp = Expectations(clock, ttl=300)
    assert exp.satisfied("ns/rs")
    exp.expect("ns/rs", creates=2)
    assert not exp.satisfied("ns/rs")
    exp.creation_observed("ns/rs")
    assert not exp.satisfied("ns/rs")
    exp.creation_observed("ns/rs")
    assert exp.satisfied("ns/rs")
    exp.expect("ns/rs", deletes=["ns/a", "ns/b"])
    exp.deletion_observed("ns/rs", "ns/a")
    exp.deletion_observed("ns/rs", "ns/zzz")  # not one we deleted
    assert exp.pending("ns/rs") == (0, 1)
    assert not exp.satisfied("ns/rs")
    clock.advance(301)
    assert exp.satisfied("ns/rs")


async def test_slow_start_batches_and_stops_on_failure() -> None:
    calls: list[int] = []

    async def ok() -> None:
        calls.append(1)

    assert await slow_start_batch(10, ok) == (10, None)
    assert len(calls) == 10
    n = 0

    async def fail_fourth() -> None:
        nonlocal n
        n += 1
        if n == 4:
            raise RuntimeError("quota")

    successes, err = await slow_start_batch(10, fail_fourth)
    # Batches 1, 2, 4: the failure is in the third batch, which still runs fully; nothing after it.
    assert n == 7 and successes == 6 and isinstance(err, RuntimeError)


def test_pod_from_template() -> None:
    owner = {"metadata": {"name": "web", "namespace": "ns", "uid": "u"}}
    tmpl = {"metadata": {"labels": {"a": "b"}, "annotations": {"x": "y"}}, "spec": {"containers": []}}
    ref = {"uid": "u", "controller": True}
    p = pod_from_template(tmpl, owner, ref)
    assert p["metadata"] == {
        "generateName": "web-",
        "namespace": "ns",
        "ownerReferences": [ref],
        "labels": {"a": "b"},
        "annotations": {"x": "y"},
    }
    p["metadata"]["labels"]["a"] = "changed"
    assert tmpl["metadata"]["labels"]["a"] == "b"


def test_set_condition_keeps_transition_time() -> None:
    status: dict = {}
    set_condition(status, {"type": "A", "status": "True", "reason": "R", "lastTransitionTime": "t1"})
    set_condition(status, {"type": "A", "status": "True", "reason": "R2", "lastTransitionTime": "t2"})
    assert status["conditions"] == [
        {"type": "A", "status": "True", "reason": "R2", "lastTransitionTime": "t1"}
    ]
    set_condition(status, {"type": "A", "status": "False", "reason": "R3", "lastTransitionTime": "t3"})
    assert status["conditions"][0]["lastTransitionTime"] == "t3"
