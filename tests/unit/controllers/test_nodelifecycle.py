from datetime import UTC, datetime, timedelta

import pytest

from peapod.controlplane.controllers import nodelifecycle as nl
from peapod.controlplane.controllers.podgc import orphaned, unscheduled_terminating

NOW = datetime(2026, 1, 1, 1, 0, tzinfo=UTC)
T = "2026-01-01T00:00:00Z"


def node(
    name: str = "n1", ready: str | None = "True", taints: list | None = None, heartbeat: str = T
) -> dict:
    conds = (
        []
        if ready is None
        else [{"type": "Ready", "status": ready, "lastHeartbeatTime": heartbeat, "lastTransitionTime": T}]
    )
    return {
        "metadata": {"name": name, "creationTimestamp": T},
        "spec": {"taints": taints or []},
        "status": {"conditions": conds},
    }


def lease(renew: str) -> dict:
    return {"spec": {"renewTime": renew}}


def test_health_probe_moves_only_on_signs_of_life() -> None:
    h = nl.observe_health(None, node(), lease("2026-01-01T00:00:01.000000Z"), 100.0)
    assert h.probe == 100.0
    h = nl.observe_health(h, node(), lease("2026-01-01T00:00:01.000000Z"), 150.0)
    assert h.probe == 100.0  # same renewTime: no news
    h = nl.observe_health(h, node(), lease("2026-01-01T00:00:11.000000Z"), 160.0)
    assert h.probe == 160.0
    h = nl.observe_health(h, node(), lease("2026-01-01T00:00:05.000000Z"), 170.0)
    assert h.probe == 160.0  # an older renewTime is not news
    h = nl.observe_health(h, node(heartbeat="2026-01-01T00:01:00Z"), None, 180.0)
    assert h.probe == 180.0


def test_unknown_conditions() -> None:
    conds = nl.unknown_conditions(node(), NOW)
    assert conds is not None
    ready = next(c for c in conds if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "Unknown",
        "NodeStatusUnknown",
        "Kubelet stopped posting node status.",
    )
    assert ready["lastHeartbeatTime"] == T and ready["lastTransitionTime"] == "2026-01-01T01:00:00Z"
    assert {c["type"] for c in conds} == {"Ready", "MemoryPressure", "DiskPressure", "PIDPressure"}
    n = node()
    n["status"]["conditions"] = conds
    assert nl.unknown_conditions(n, NOW) is None
    never = nl.unknown_conditions(node(ready=None), NOW)
    assert never is not None and never[0]["reason"] == "NodeStatusNeverUpdated"


@pytest.mark.parametrize(
    "ready,expected",
    [
        (["True"], "Normal"),
        (["Unknown"], "FullDisruption"),
        (["True", "False"], "Normal"),
        (["True", "False", "False", "Unknown"], "PartialDisruption"),
        (["True"] * 5 + ["False"] * 3, "Normal"),
        ([], "Normal"),
    ],
)
def test_zone_state(ready: list[str], expected: str) -> None:
    assert nl.zone_state(ready) == expected


def test_desired_taints() -> None:
    user = {"key": "dedicated", "value": "x", "effect": "NoSchedule"}
    t = nl.desired_taints(
        node(ready="Unknown", taints=[user]), allow_new_no_execute=True, suppress_no_execute=False, now=NOW
    )
    assert t == [
        user,
        {"key": nl.TAINT_UNREACHABLE, "effect": "NoSchedule"},
        {"key": nl.TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": "2026-01-01T01:00:00Z"},
    ]
    # Existing taints keep their timeAdded; not-ready replaces unreachable.
    again = nl.desired_taints(
        node(ready="Unknown", taints=t),
        allow_new_no_execute=True,
        suppress_no_execute=False,
        now=NOW + timedelta(minutes=5),
    )
    assert again == t
    nr = nl.desired_taints(
        node(ready="False", taints=t), allow_new_no_execute=True, suppress_no_execute=False, now=NOW
    )
    assert [x["key"] for x in nr] == ["dedicated", nl.TAINT_NOT_READY, nl.TAINT_NOT_READY]
    # Recovery removes them; disruption mode drops NoExecute ones; partial disruption adds none.
    assert nl.desired_taints(
        node(ready="True", taints=t), allow_new_no_execute=True, suppress_no_execute=False, now=NOW
    ) == [user]
    assert (
        nl.desired_taints(
            node(ready="Unknown", taints=t), allow_new_no_execute=True, suppress_no_execute=True, now=NOW
        )
        == t[:2]
    )
    assert (
        nl.desired_taints(
            node(ready="Unknown"), allow_new_no_execute=False, suppress_no_execute=False, now=NOW
        )
        == t[1:2]
    )


@pytest.mark.parametrize(
    "toleration,taint,ok",
    [
        ({"operator": "Exists"}, {"key": "a", "effect": "NoExecute"}, True),
        ({"key": "a", "operator": "Exists"}, {"key": "a", "effect": "NoExecute"}, True),
        (
            {"key": "a", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "a", "effect": "NoExecute"},
            False,
        ),
        ({"key": "a", "value": "v"}, {"key": "a", "value": "v", "effect": "NoExecute"}, True),
        ({"key": "a", "value": "w"}, {"key": "a", "value": "v", "effect": "NoExecute"}, False),
        ({"key": "b", "operator": "Exists"}, {"key": "a", "effect": "NoExecute"}, False),
    ],
)
def test_tolerates(toleration: dict, taint: dict, ok: bool) -> None:
    assert nl.tolerates(toleration, taint) is ok


def _pod(tolerations: list, created: str = T) -> dict:
    return {"metadata": {"creationTimestamp": created}, "spec": {"tolerations": tolerations}}


UNREACH = {"key": nl.TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": "2026-01-01T00:50:00Z"}
DEFAULT_TOL = {
    "key": nl.TAINT_UNREACHABLE,
    "operator": "Exists",
    "effect": "NoExecute",
    "tolerationSeconds": 300,
}


def test_eviction_time() -> None:
    added = datetime(2026, 1, 1, 0, 50, tzinfo=UTC)
    assert nl.eviction_time(_pod([DEFAULT_TOL]), [UNREACH], NOW) == added + timedelta(seconds=300)
    assert nl.eviction_time(_pod([]), [UNREACH], NOW) == NOW  # not tolerated: at once
    forever = {"key": nl.TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}
    assert nl.eviction_time(_pod([forever]), [UNREACH], NOW) is None
    assert nl.eviction_time(_pod([forever, DEFAULT_TOL]), [UNREACH], NOW) is None
    assert nl.eviction_time(_pod([]), [{"key": "x", "effect": "NoSchedule"}], NOW) is None
    late = _pod([DEFAULT_TOL], created="2026-01-01T00:55:00Z")  # scheduled after the taint appeared
    assert nl.eviction_time(late, [UNREACH], NOW) == datetime(2026, 1, 1, 1, 0, tzinfo=UTC)


def test_podgc_selection() -> None:
    pods = [
        {"metadata": {"name": "a"}, "spec": {"nodeName": "gone"}},
        {"metadata": {"name": "b"}, "spec": {"nodeName": "n1"}},
        {"metadata": {"name": "c", "deletionTimestamp": T}, "spec": {}},
        {"metadata": {"name": "d"}, "spec": {}},
    ]
    assert orphaned(pods, {"n1"}) == {"gone": [pods[0]]}
    assert unscheduled_terminating(pods) == [pods[2]]
