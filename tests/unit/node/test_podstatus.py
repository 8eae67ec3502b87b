"""compute_status / pod_phase: Kubernetes' phase and condition rules, as tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from peapod.node.plan import ContainerRecord, Observed
from peapod.node.podstatus import StatusInputs, compute_status, pod_phase

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def pod(
    policy: str = "Always",
    *,
    names: tuple[str, ...] = ("c",),
    inits: list[dict[str, Any]] | None = None,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
        "spec": {
            "restartPolicy": policy,
            "containers": [{"name": n, "image": "busybox"} for n in names],
            "initContainers": inits or [],
        },
        "status": status or {},
    }


def rec(
    name: str = "c", attempt: int = 0, state: str = "running", code: int | None = None
) -> ContainerRecord:
    started = NOW - timedelta(seconds=30)
    return ContainerRecord(
        id=f"u1-{name}-{attempt}",
        name=name,
        attempt=attempt,
        state=state,  # type: ignore[arg-type]
        exit_code=code,
        started_at=started,
        finished_at=NOW - timedelta(seconds=5) if state == "exited" else None,
        image="busybox",
        image_id="docker.io/library/busybox@sha256:abc",
    )


def status(
    p: dict[str, Any],
    *recs: ContainerRecord,
    waiting: dict[str, tuple[str, str]] | None = None,
    terminal: bool = False,
    ready: bool = True,
) -> dict[str, Any]:
    return compute_status(
        p,
        StatusInputs(
            Observed(ready, ready, recs), waiting or {}, ["10.77.0.5"], ["192.0.2.1"], NOW, terminal
        ),
        NOW,
    )


@pytest.mark.parametrize(
    ("policy", "recs", "waiting", "terminal", "phase"),
    [
        ("Always", [], {}, False, "Pending"),
        ("Always", [rec()], {}, False, "Running"),
        ("Always", [rec(state="exited", code=1)], {"c": ("CrashLoopBackOff", "")}, False, "Running"),
        ("Always", [rec(state="exited", code=0)], {}, False, "Running"),
        ("Always", [rec(state="exited", code=143)], {}, True, "Failed"),
        ("Always", [rec(state="exited", code=0)], {}, True, "Succeeded"),
        ("OnFailure", [rec(state="exited", code=0)], {}, False, "Succeeded"),
        ("OnFailure", [rec(state="exited", code=1)], {"c": ("CrashLoopBackOff", "")}, False, "Running"),
        ("Never", [rec(state="exited", code=1)], {}, False, "Failed"),
        ("Never", [rec(state="exited", code=0)], {}, False, "Succeeded"),
        ("Always", [], {"c": ("ErrImagePull", "boom")}, False, "Pending"),
    ],
)
def test_phase(
    policy: str, recs: list[ContainerRecord], waiting: dict[str, Any], terminal: bool, phase: str
) -> None:
    assert status(pod(policy), *recs, waiting=waiting, terminal=terminal)["phase"] == phase


def test_init_phase_rules() -> None:
    inits = [{"name": "i", "image": "busybox"}]
    assert status(pod(inits=inits), rec("i"))["phase"] == "Pending"
    assert status(pod("Never", inits=inits), rec("i", state="exited", code=1))["phase"] == "Failed"
    s = status(pod(inits=inits), rec("i", state="exited", code=0), rec("c"))
    assert s["phase"] == "Running"
    conds = {c["type"]: c for c in s["conditions"]}
    assert conds["Initialized"]["status"] == "True"
    s = status(pod(inits=inits), rec("i"))
    conds = {c["type"]: c for c in s["conditions"]}
    assert conds["Initialized"]["status"] == "False"
    assert conds["Initialized"]["message"] == "containers with incomplete status: [i]"
    assert s["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}


def test_sidecar_counts_as_started() -> None:
    inits = [{"name": "s", "image": "busybox", "restartPolicy": "Always"}]
    s = status(pod(inits=inits), rec("s"), rec("c"))
    assert s["phase"] == "Running"
    assert {c["type"]: c["status"] for c in s["conditions"]}["Ready"] == "True"
    s = status(
        pod(inits=inits), rec("s", state="exited", code=1), rec("c"), waiting={"s": ("CrashLoopBackOff", "")}
    )
    assert {c["type"]: c["status"] for c in s["conditions"]}["Ready"] == "False"
    assert s["phase"] == "Running"


def test_container_status_fields() -> None:
    s = status(pod(), rec(attempt=0, state="exited", code=2), rec(attempt=1))
    cs = s["containerStatuses"][0]
    assert cs["restartCount"] == 1
    assert cs["ready"] is True and cs["started"] is True
    assert cs["containerID"] == "peapod://u1-c-1"
    assert cs["imageID"] == "docker.io/library/busybox@sha256:abc"
    assert cs["state"]["running"]["startedAt"] == "2026-01-01T11:59:30Z"
    t = cs["lastState"]["terminated"]
    assert (t["exitCode"], t["reason"], t["containerID"]) == (2, "Error", "peapod://u1-c-0")
    assert s["podIP"] == "10.77.0.5" and s["podIPs"] == [{"ip": "10.77.0.5"}]
    assert s["hostIP"] == "192.0.2.1" and s["hostIPs"] == [{"ip": "192.0.2.1"}]
    assert s["qosClass"] == "BestEffort"
    assert s["startTime"] == "2026-01-01T12:00:00Z"


def test_waiting_keeps_last_termination() -> None:
    s = status(pod(), rec(state="exited", code=1), waiting={"c": ("CrashLoopBackOff", "back-off 10s ...")})
    cs = s["containerStatuses"][0]
    assert cs["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s ..."}}
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert cs["ready"] is False


def test_conditions_keep_transition_time_and_foreign() -> None:
    old_time = "2025-12-31T00:00:00Z"
    prev = {
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": old_time},
            {"type": "Ready", "status": "True", "lastTransitionTime": old_time},
            {"type": "Initialized", "status": "False", "lastTransitionTime": old_time},
        ],
        "qosClass": "Guaranteed",
        "startTime": old_time,
    }
    s = status(pod(status=prev), rec())
    conds = {c["type"]: c for c in s["conditions"]}
    assert conds["PodScheduled"]["lastTransitionTime"] == old_time  # kept, not ours
    assert conds["Ready"]["lastTransitionTime"] == old_time  # unchanged status
    assert conds["Initialized"]["lastTransitionTime"] == "2026-01-01T12:00:00Z"  # changed
    assert [c["type"] for c in s["conditions"]] == [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ]
    assert s["qosClass"] == "Guaranteed"
    assert s["startTime"] == old_time


def test_terminal_phase_never_changes_back() -> None:
    s = status(pod(status={"phase": "Succeeded"}), rec())
    assert s["phase"] == "Succeeded"


def test_completed_reason() -> None:
    s = status(pod("Never"), rec(state="exited", code=0))
    conds = {c["type"]: c for c in s["conditions"]}
    assert conds["Ready"]["status"] == "False" and conds["Ready"]["reason"] == "PodCompleted"


def test_pod_phase_unknown_container_is_pending() -> None:
    p = pod(names=("a", "b"))
    assert pod_phase(p, {}, {"a": {"state": {"running": {}}}}, terminal=False) == "Pending"


def probed(p: dict[str, Any], *recs: ContainerRecord, readiness: dict[str, bool] | None = None,
           started: dict[str, bool] | None = None, failed: tuple[str, str] | None = None) -> dict[str, Any]:
    return compute_status(p, StatusInputs(Observed(True, True, recs), readiness=readiness or {},
                                          started=started or {}, failed=failed), NOW)


def test_readiness_probe_drives_ready() -> None:
    s = probed(pod(), rec(), readiness={"c": False})
    cs = s["containerStatuses"][0]
    assert cs["ready"] is False and cs["started"] is True
    conds = {c["type"]: c for c in s["conditions"]}
    assert conds["Ready"]["status"] == conds["ContainersReady"]["status"] == "False"
    assert conds["Ready"]["reason"] == "ContainersNotReady"
    assert conds["Ready"]["message"] == "containers with unready status: [c]"
    assert s["phase"] == "Running"
    s = probed(pod(), rec(), readiness={"c": True})
    assert s["containerStatuses"][0]["ready"] is True
    assert {c["type"]: c["status"] for c in s["conditions"]}["Ready"] == "True"


def test_startup_probe_gates_started_and_ready() -> None:
    s = probed(pod(), rec(), started={"c": False})
    cs = s["containerStatuses"][0]
    assert cs["started"] is False and cs["ready"] is False
    s = probed(pod(), rec(), started={"c": True}, readiness={"c": False})
    cs = s["containerStatuses"][0]
    assert cs["started"] is True and cs["ready"] is False


def test_sidecar_not_started_keeps_pod_initializing() -> None:
    inits = [{"name": "s", "image": "busybox", "restartPolicy": "Always"}]
    s = probed(pod(inits=inits), rec("s"), started={"s": False})
    side = s["initContainerStatuses"][0]
    assert side["started"] is False and side["ready"] is False
    assert s["phase"] == "Pending"
    conds = {c["type"]: c for c in s["conditions"]}
    assert conds["Initialized"]["status"] == "False"
    assert conds["Initialized"]["message"] == "containers with incomplete status: [s]"


def test_completed_init_container_is_ready_failed_is_not() -> None:
    inits = [{"name": "i", "image": "busybox"}]
    s = probed(pod(inits=inits), rec("i", state="exited", code=0), rec("c"))
    init = s["initContainerStatuses"][0]
    assert init["ready"] is True and init["started"] is False
    s = probed(pod("Never", inits=inits), rec("i", state="exited", code=3))
    assert s["initContainerStatuses"][0]["ready"] is False
    # a running regular init container is started but not ready
    s = probed(pod(inits=inits), rec("i"))
    assert s["initContainerStatuses"][0]["started"] is True and s["initContainerStatuses"][0]["ready"] is False


def test_agent_failure_sets_reason_and_sticks() -> None:
    why = ("DeadlineExceeded", "Pod was active on the node longer than the specified deadline")
    s = probed(pod(), rec(), failed=why)
    assert (s["phase"], s["reason"], s["message"]) == ("Failed", *why)
    later = probed(pod(status=s), rec(state="exited", code=143))
    assert (later["phase"], later["reason"], later["message"]) == ("Failed", *why)
