"""plan(pod, observed, now): table tests, no mocks, no sleeps."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from peapod.node.plan import (
    DEADLINE_MESSAGE,
    ContainerRecord,
    Observed,
    RestartWanted,
    StartContainer,
    backoff_delay,
    container_hash,
    plan,
)

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
C = {"name": "c", "image": "busybox:1.36"}
D = {"name": "d", "image": "busybox:1.36"}
INIT1 = {"name": "i1", "image": "busybox:1.36"}
INIT2 = {"name": "i2", "image": "busybox:1.36"}
SIDECAR = {"name": "side", "image": "busybox:1.36", "restartPolicy": "Always"}


def pod(
    containers: list[dict[str, Any]] | None = None,
    *,
    inits: list[dict[str, Any]] | None = None,
    policy: str = "Always",
    deleting: bool = False,
) -> dict[str, Any]:
    md: dict[str, Any] = {"name": "p", "namespace": "ns", "uid": "u1"}
    if deleting:
        md["deletionTimestamp"] = "2026-01-01T12:00:00Z"
    return {
        "metadata": md,
        "spec": {"containers": containers or [C], "initContainers": inits or [], "restartPolicy": policy},
    }


def rec(
    name: str = "c",
    attempt: int = 0,
    state: str = "running",
    *,
    exit_code: int | None = None,
    ran: float = 5.0,
    ago: float = 1.0,
    backoff: int = 0,
    spec: dict[str, Any] | None = None,
) -> ContainerRecord:
    finished = NOW - timedelta(seconds=ago) if state == "exited" else None
    started = (finished or NOW) - timedelta(seconds=ran)
    c = spec or {"c": C, "d": D, "i1": INIT1, "i2": INIT2, "side": SIDECAR}[name]
    return ContainerRecord(
        id=f"u1-{name}-{attempt}",
        name=name,
        attempt=attempt,
        hash=container_hash(c),
        state=state,
        exit_code=exit_code,
        started_at=started,
        finished_at=finished,  # type: ignore[arg-type]
        backoff=backoff,
    )


def obs(*recs: ContainerRecord, ready: bool = True) -> Observed:
    return Observed(sandbox_ready=ready, sandbox_exists=ready, containers=recs)


def starts(a: Any) -> list[tuple[str, int, int]]:
    return [(s.name, s.attempt, s.backoff) for s in a.start]


def kills(a: Any) -> list[str]:
    return sorted(k.id for k in a.kill)


@pytest.mark.parametrize(
    ("name", "the_pod", "observed", "want_starts", "want_kills", "terminal", "sandbox"),
    [
        (
            "new pod: sandbox and all app containers",
            pod([C, D]),
            obs(ready=False),
            [("c", 0, 0), ("d", 0, 0)],
            [],
            False,
            True,
        ),
        ("running: nothing to do", pod(), obs(rec()), [], [], False, False),
        (
            "first crash restarts at once",
            pod(),
            obs(rec(state="exited", exit_code=1)),
            [("c", 1, 1)],
            [],
            False,
            False,
        ),
        (
            "second crash waits (back-off 10s)",
            pod(),
            obs(rec(attempt=1, state="exited", exit_code=1, backoff=1)),
            [],
            [],
            False,
            False,
        ),
        (
            "back-off expired",
            pod(),
            obs(rec(attempt=1, state="exited", exit_code=1, backoff=1, ago=11)),
            [("c", 2, 2)],
            [],
            False,
            False,
        ),
        (
            "back-off resets after 10 minutes of running",
            pod(),
            obs(rec(attempt=5, state="exited", exit_code=1, backoff=5, ran=601)),
            [("c", 6, 1)],
            [],
            False,
            False,
        ),
        (
            "Always restarts a success too",
            pod(),
            obs(rec(state="exited", exit_code=0)),
            [("c", 1, 1)],
            [],
            False,
            False,
        ),
        (
            "OnFailure: success is final",
            pod(policy="OnFailure"),
            obs(rec(state="exited", exit_code=0)),
            [],
            [],
            True,
            False,
        ),
        (
            "OnFailure: failure restarts",
            pod(policy="OnFailure"),
            obs(rec(state="exited", exit_code=3)),
            [("c", 1, 1)],
            [],
            False,
            False,
        ),
        (
            "Never: exit is final",
            pod(policy="Never"),
            obs(rec(state="exited", exit_code=3)),
            [],
            [],
            True,
            False,
        ),
        (
            "Never: one done, one running",
            pod([C, D], policy="Never"),
            obs(rec(state="exited", exit_code=0), rec("d")),
            [],
            [],
            False,
            False,
        ),
        (
            "deletion: terminal, the termination step stops everything",
            pod([C, D], deleting=True),
            obs(rec(), rec("d")),
            [],
            [],
            True,
            False,
        ),
        (
            "spec change kills and restarts",
            pod([{"name": "c", "image": "busybox:1.37"}]),
            obs(rec()),
            [("c", 1, 0)],
            ["u1-c-0"],
            False,
            False,
        ),
        (
            "dead sandbox: kill, recreate, restart",
            pod(),
            obs(rec(), ready=False),
            [("c", 1, 0)],
            ["u1-c-0"],
            False,
            True,
        ),
        (
            "Never pod that ran gets no new sandbox",
            pod(policy="Never"),
            obs(rec(state="exited", exit_code=0), ready=False),
            [],
            [],
            True,
            False,
        ),
        # init containers
        (
            "first init container only",
            pod(inits=[INIT1, INIT2]),
            obs(ready=False),
            [("i1", 0, 0)],
            [],
            False,
            True,
        ),
        ("init running blocks", pod(inits=[INIT1, INIT2]), obs(rec("i1")), [], [], False, False),
        (
            "next init after success",
            pod(inits=[INIT1, INIT2]),
            obs(rec("i1", state="exited", exit_code=0)),
            [("i2", 0, 0)],
            [],
            False,
            False,
        ),
        (
            "apps after all inits",
            pod(inits=[INIT1, INIT2]),
            obs(rec("i1", state="exited", exit_code=0), rec("i2", state="exited", exit_code=0)),
            [("c", 0, 0)],
            [],
            False,
            False,
        ),
        (
            "failed init restarts (Always)",
            pod(inits=[INIT1]),
            obs(rec("i1", state="exited", exit_code=1)),
            [("i1", 1, 1)],
            [],
            False,
            False,
        ),
        (
            "failed init fails a Never pod",
            pod(inits=[INIT1], policy="Never"),
            obs(rec("i1", state="exited", exit_code=1)),
            [],
            [],
            True,
            False,
        ),
        (
            "inits never rerun once apps ran",
            pod(inits=[INIT1]),
            obs(rec("i1", state="exited", exit_code=0), rec("c", state="exited", exit_code=1)),
            [("c", 1, 1)],
            [],
            False,
            False,
        ),
        # sidecars
        (
            "sidecar starts first",
            pod(inits=[SIDECAR, INIT1]),
            obs(ready=False),
            [("side", 0, 0)],
            [],
            False,
            True,
        ),
        (
            "running sidecar lets next init start",
            pod(inits=[SIDECAR, INIT1]),
            obs(rec("side")),
            [("i1", 0, 0)],
            [],
            False,
            False,
        ),
        (
            "sidecar kept alongside apps",
            pod(inits=[SIDECAR]),
            obs(rec("side"), rec("c")),
            [],
            [],
            False,
            False,
        ),
        (
            "exited sidecar restarts while apps run",
            pod(inits=[SIDECAR]),
            obs(rec("side", state="exited", exit_code=1), rec("c")),
            [("side", 1, 1)],
            [],
            False,
            False,
        ),
        (
            "a Never pod completes: terminal (termination stops the sidecar)",
            pod(inits=[SIDECAR], policy="Never"),
            obs(rec("side"), rec("c", state="exited", exit_code=0)),
            [],
            [],
            True,
            False,
        ),
    ],
)
def test_plan_table(
    name: str,
    the_pod: dict[str, Any],
    observed: Observed,
    want_starts: list[Any],
    want_kills: list[str],
    terminal: bool,
    sandbox: bool,
) -> None:
    a = plan(the_pod, observed, NOW)
    assert starts(a) == want_starts, name
    assert kills(a) == want_kills, name
    assert a.terminal == terminal, name
    assert a.create_sandbox == sandbox, name


def test_crashloop_waiting_and_requeue() -> None:
    a = plan(pod(), obs(rec(attempt=2, state="exited", exit_code=1, backoff=2, ago=5)), NOW)
    assert a.start == []
    reason, message = a.waiting["c"]
    assert reason == "CrashLoopBackOff"
    assert message == "back-off 20s restarting failed container=c pod=p_ns(u1)"
    assert a.requeue_after == pytest.approx(15.0)


def test_backoff_sequence() -> None:
    assert [backoff_delay(n) for n in range(8)] == [0, 10, 20, 40, 80, 160, 300, 300]


def test_garbage_keeps_two_newest() -> None:
    recs = [rec(attempt=i, state="exited", exit_code=1, backoff=i, ago=1000) for i in range(4)]
    a = plan(pod(), obs(*recs), NOW)
    assert sorted(a.remove) == ["u1-c-0", "u1-c-1"]
    assert a.start == [StartContainer("c", "app", 4, 4)]


LIVENESS = RestartWanted("Container c failed liveness probe, will be restarted",
                         "Container c failed liveness probe, will not be restarted", None)


def with_restart(o: Observed, cid: str, want: RestartWanted = LIVENESS) -> Observed:
    return Observed(o.sandbox_ready, o.sandbox_exists, o.containers, {cid: want})


def test_liveness_failure_kills_and_restarts_at_once() -> None:
    a = plan(pod(), with_restart(obs(rec()), "u1-c-0"), NOW)
    assert [(k.id, k.message, k.grace) for k in a.kill] == \
        [("u1-c-0", "Container c failed liveness probe, will be restarted", None)]
    assert starts(a) == [("c", 1, 1)]  # the first restart has no back-off
    assert not a.terminal


def test_liveness_failure_again_backs_off() -> None:
    a = plan(pod(), with_restart(obs(rec(attempt=1, backoff=1)), "u1-c-1"), NOW)
    assert kills(a) == ["u1-c-1"]
    assert a.start == []
    assert a.waiting["c"][0] == "CrashLoopBackOff"
    assert a.requeue_after == pytest.approx(10.0)


def test_probe_kill_uses_probe_grace_and_never_policy_message() -> None:
    want = RestartWanted("Container c failed startup probe, will be restarted",
                         "Container c failed startup probe, will not be restarted", 7)
    a = plan(pod(policy="Never"), with_restart(obs(rec()), "u1-c-0", want), NOW)
    assert [(k.message, k.grace) for k in a.kill] == [("Container c failed startup probe, will not be restarted", 7)]
    assert a.start == []
    assert a.terminal  # the only container will not run again


def test_restart_request_for_an_old_instance_is_ignored() -> None:
    a = plan(pod(), with_restart(obs(rec(attempt=0, state="exited", exit_code=1), rec(attempt=1)), "u1-c-0"), NOW)
    assert a.kill == [] and a.start == []


def test_sidecar_liveness_failure_restarts_even_in_a_never_pod() -> None:
    a = plan(pod(inits=[SIDECAR], policy="Never"), with_restart(obs(rec("side"), rec("c")), "u1-side-0"), NOW)
    assert [k.message for k in a.kill] == ["Container c failed liveness probe, will be restarted"]
    assert starts(a) == [("side", 1, 1)]


def test_sidecar_waits_for_its_startup_probe() -> None:
    starting = dataclasses.replace(rec("side"), started=False)
    a = plan(pod(inits=[SIDECAR, INIT1]), obs(starting), NOW)
    assert a.start == [] and not a.terminal
    a = plan(pod(inits=[SIDECAR, INIT1]), obs(dataclasses.replace(rec("side"), started=True)), NOW)
    assert starts(a) == [("i1", 0, 0)]
    # the last sidecar holds the app containers back too
    a = plan(pod(inits=[SIDECAR]), obs(starting), NOW)
    assert a.start == []
    # once the app containers ran, a restarted sidecar no longer blocks anything
    a = plan(pod(inits=[SIDECAR], policy="Always"), obs(starting, rec("c", state="exited", exit_code=1)), NOW)
    assert starts(a) == [("c", 1, 1)]


def deadline_pod(seconds: int, started_ago: float) -> dict[str, Any]:
    p = pod()
    p["spec"]["activeDeadlineSeconds"] = seconds
    p["status"] = {"startTime": (NOW - timedelta(seconds=started_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    return p


def test_active_deadline() -> None:
    a = plan(deadline_pod(30, 10), obs(rec()), NOW)
    assert not a.terminal and a.requeue_after == pytest.approx(20.0)
    a = plan(deadline_pod(30, 31), obs(rec()), NOW)
    assert a.terminal and a.failed == ("DeadlineExceeded", DEADLINE_MESSAGE)
    assert a.kill == [] and a.start == []  # the termination step stops the containers
    p = deadline_pod(30, 0)
    del p["status"]
    assert not plan(p, obs(ready=False), NOW).terminal  # not started yet
