"""What to do next for one pod: a pure function of (pod, observed, now), like kubelet's computePodActions.

The executor (:mod:`peapod.node.sync`) carries the :class:`Actions` out. Rules:

* The sandbox is created when missing or dead; a dead sandbox with containers means every
  container is killed and the pod starts over (init containers again), restart counts continue.
  A ``restartPolicy: Never`` pod whose containers already ran is not given a new sandbox.
* Init containers run one at a time, in order, each to success before the next. A failed one is
  restarted (with back-off) unless restartPolicy is Never, which fails the pod. Init containers
  with ``restartPolicy: Always`` are sidecars: started in order, each must be running before the
  next init container starts, and kept running (restarted with back-off) for the pod's life.
* App containers start together once initialization is done; an exited one restarts per the
  restart policy (Always; OnFailure on a non-zero exit) after a back-off: immediately the first
  time, then 10 s doubling to 300 s; the back-off resets when the container had run 10 minutes.
* A running container whose spec hash changed (e.g. a new image) is killed and started again.
* A running container that failed its liveness or startup probe (``Observed.restarts``) is killed
  and, per the restart policy, started again (sidecars always are), with the usual back-off.
* A sidecar whose startup probe has not succeeded (``ContainerRecord.started`` False) holds the
  next init container (and, for the last one, the app containers) back.
* ``activeDeadlineSeconds`` past ``status.startTime``: the pod fails (``Actions.failed``:
  DeadlineExceeded).
* Deletion (deletionTimestamp) or a terminal pod (no container will run again): ``terminal``. The
  kills are then the termination step's job (it honours the grace period, preStop hooks, the
  app-then-sidecars order and a grace shortened later), so ``kill`` stays empty.

Back-off state lives in each container instance (``backoff``: how many back-off restarts preceded
it), so it survives agent restarts without any memory here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Obj = Mapping[str, Any]
State = Literal["created", "running", "exited", "unknown"]

BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0
BACKOFF_RESET_AFTER = 600.0  # a container that ran this long restarts without back-off


@dataclass(frozen=True)
class ContainerRecord:
    """One container instance of the pod, as the runtime (and the agent's records) know it."""

    id: str
    name: str
    attempt: int  # 0 for the first run; == restartCount
    hash: str = ""
    state: State = "running"
    exit_code: int | None = None
    reason: str | None = None  # Completed | Error | OOMKilled | ContainerStatusUnknown
    message: str = ""
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    backoff: int = 0
    image: str = ""
    image_id: str = ""  # image ref with digest, as status.imageID shows it
    stop_signal: str = ""
    started: bool | None = None  # running instance: startup probe verdict (None: no startup probe)


@dataclass(frozen=True)
class RestartWanted:
    """A running instance failed its liveness or startup probe: kill it (kubelet's message)."""

    message_restart: str  # "Container c failed liveness probe, will be restarted"
    message_final: str  # "..., will not be restarted"
    grace: int | None = None  # the probe's terminationGracePeriodSeconds, if set


@dataclass(frozen=True)
class Observed:
    sandbox_ready: bool = False
    sandbox_exists: bool = False
    containers: Sequence[ContainerRecord] = ()
    restarts: Mapping[str, RestartWanted] = field(default_factory=dict)  # container id -> why

    def instances(self, name: str) -> list[ContainerRecord]:
        """Instances of container ``name``, newest first."""
        return sorted((c for c in self.containers if c.name == name), key=lambda c: -c.attempt)

    def latest(self, name: str) -> ContainerRecord | None:
        inst = self.instances(name)
        return inst[0] if inst else None


@dataclass(frozen=True)
class StartContainer:
    name: str
    kind: Literal["init", "sidecar", "app"]
    attempt: int
    backoff: int = 0


@dataclass(frozen=True)
class KillContainer:
    id: str
    name: str
    reason: str = ""
    message: str = ""
    grace: int | None = None  # overrides the pod's terminationGracePeriodSeconds (probe kills)


@dataclass
class Actions:
    create_sandbox: bool = False
    kill_sandbox: bool = False  # tear the old (dead) sandbox down before creating a new one
    kill: list[KillContainer] = field(default_factory=list)
    start: list[StartContainer] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)  # old exited instances to garbage-collect
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (reason, message)
    requeue_after: float | None = None
    terminal: bool = False  # nothing will run again: the pod is done (or being deleted)
    failed: tuple[str, str] | None = None  # the agent fails the pod: (reason, message)

    def _requeue(self, seconds: float) -> None:
        if self.requeue_after is None or seconds < self.requeue_after:
            self.requeue_after = seconds


def container_hash(container: Obj) -> str:
    """A stable hash of a container's spec (kubelet's HashContainer): any change restarts it."""
    text = json.dumps(container, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def is_sidecar(container: Obj) -> bool:
    return container.get("restartPolicy") == "Always"


def backoff_delay(streak: int) -> float:
    """Seconds to wait before the restart that follows ``streak`` earlier back-off restarts."""
    if streak <= 0:
        return 0.0
    return min(BACKOFF_INITIAL * 2 ** (streak - 1), BACKOFF_MAX)


def restart_after(rec: ContainerRecord, now: datetime) -> tuple[float, int, float]:
    """(seconds left to wait, the new instance's back-off streak, the full delay) for restarting ``rec``."""
    ran = 0.0
    if rec.started_at and rec.finished_at:
        ran = (rec.finished_at - rec.started_at).total_seconds()
    streak = 0 if ran >= BACKOFF_RESET_AFTER else rec.backoff
    delay = backoff_delay(streak)
    left = delay
    if rec.finished_at is not None:
        left = delay - (now - rec.finished_at).total_seconds()
    return max(0.0, left), streak + 1, delay


def _pod_ref(pod: Obj) -> str:
    md = pod.get("metadata") or {}
    return f"{md.get('name', '')}_{md.get('namespace', 'default')}({md.get('uid', '')})"


def _alive(rec: ContainerRecord | None) -> bool:
    return rec is not None and rec.state in ("running", "created")


def _restart(act: Actions, pod: Obj, c: Obj, rec: ContainerRecord, kind: Literal["init", "sidecar", "app"],
             now: datetime) -> bool:
    """Start ``c`` again after ``rec`` exited, or report CrashLoopBackOff. True if started."""
    left, streak, delay = restart_after(rec, now)
    if left > 0:
        act.waiting[c["name"]] = (
            "CrashLoopBackOff",
            f"back-off {int(delay)}s restarting failed container={c['name']} pod={_pod_ref(pod)}",
        )
        act._requeue(left)
        return False
    act.start.append(StartContainer(c["name"], kind, rec.attempt + 1, streak))
    return True


DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"


def _deadline_left(pod: Obj, now: datetime) -> float | None:
    """Seconds until activeDeadlineSeconds runs out (None: no deadline or not started yet)."""
    deadline = (pod.get("spec") or {}).get("activeDeadlineSeconds")
    start = (pod.get("status") or {}).get("startTime")
    if deadline is None or not start:
        return None
    try:
        started = datetime.fromisoformat(str(start).replace("Z", "+00:00"))
    except ValueError:
        return None
    return int(deadline) - (now - started).total_seconds()


def _should_restart(policy: str, rec: ContainerRecord) -> bool:
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return rec.exit_code != 0
    return False


def plan(pod: Obj, observed: Observed, now: datetime) -> Actions:
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    policy = spec.get("restartPolicy") or "Always"
    inits = list(spec.get("initContainers") or [])
    apps = list(spec.get("containers") or [])
    act = Actions()

    # garbage: keep the newest two instances of each container (the second is lastState)
    known = {c["name"] for c in inits + apps}
    for rec in observed.containers:
        if rec.state == "exited" and (rec.name not in known or rec not in observed.instances(rec.name)[:2]):
            act.remove.append(rec.id)

    alive = [r for r in observed.containers if _alive(r)]
    if meta.get("deletionTimestamp"):
        act.terminal = True
        return act
    left = _deadline_left(pod, now)
    if left is not None:
        if left <= 0:
            act.terminal = True
            act.failed = ("DeadlineExceeded", DEADLINE_MESSAGE)
            return act
        act._requeue(left)

    fresh = False
    if not observed.sandbox_ready:
        ran_before = any(True for _ in observed.containers)
        if policy == "Never" and ran_before:
            # kubelet does not recreate the sandbox of a Never pod whose containers ran
            act.terminal = True
            return act
        act.create_sandbox = True
        act.kill_sandbox = observed.sandbox_exists
        if alive:
            act.kill = [KillContainer(r.id, r.name, "Killing", "pod sandbox changed, it will be killed and "
                                      "re-created") for r in alive]
        fresh = True

    # liveness/startup failures: kill now; what follows sees them exited (restart per policy)
    probe_killed: set[str] = set()
    if not fresh:
        sidecar_names = {c["name"] for c in inits if is_sidecar(c)}
        app_names = {c["name"] for c in apps}
        for r in alive:
            want = observed.restarts.get(r.id)
            if want is None or r.state != "running" or observed.latest(r.name) != r:
                continue
            if r.name not in sidecar_names and r.name not in app_names:
                continue
            again = r.name in sidecar_names or policy != "Never"
            act.kill.append(KillContainer(r.id, r.name, "Killing",
                                          want.message_restart if again else want.message_final, want.grace))
            probe_killed.add(r.id)

    def latest(name: str) -> ContainerRecord | None:
        rec = observed.latest(name)
        if rec is not None and rec.state != "exited" and (fresh or rec.id in probe_killed):
            # killed above: it counts as exited for what follows
            return dataclasses.replace(rec, state="exited", exit_code=137, finished_at=now)
        return rec

    def next_attempt(name: str) -> int:
        rec = observed.latest(name)
        return rec.attempt + 1 if rec is not None else 0

    initialized_before = not fresh and any(observed.latest(c["name"]) is not None for c in apps)

    # ---- init containers ----
    blocked = False
    for c in inits:
        name = c["name"]
        rec = latest(name)
        h = container_hash(c)
        if is_sidecar(c):
            if _alive(rec) and not fresh:
                assert rec is not None
                if rec.hash and rec.hash != h:
                    act.kill.append(KillContainer(rec.id, name, "Killing",
                                                  f"Container {name} definition changed, will be restarted"))
                    act.start.append(StartContainer(name, "sidecar", rec.attempt + 1, 0))
                    if not initialized_before:
                        blocked = True
                        break
                elif not initialized_before and (rec.state != "running" or rec.started is False):
                    blocked = True  # the next container waits until this sidecar has started
                    break
                continue
            if rec is None or fresh:
                act.start.append(StartContainer(name, "sidecar", next_attempt(name), 0))
            else:
                _restart(act, pod, c, rec, "sidecar", now)
            if not initialized_before:
                blocked = True
                break
            continue
        if initialized_before:
            continue  # regular init containers never run again once the app containers have
        if rec is None or fresh:
            act.start.append(StartContainer(name, "init", next_attempt(name), 0))
            blocked = True
            break
        if _alive(rec):
            blocked = True
            break
        if rec.exit_code == 0:
            continue
        if policy == "Never":
            act.terminal = True  # the pod failed; termination stops what still runs
            act.kill = []
            return act
        _restart(act, pod, c, rec, "init", now)
        blocked = True
        break
    if blocked:
        return act

    # ---- app containers ----
    done = 0
    for c in apps:
        name = c["name"]
        rec = latest(name)
        if rec is None:
            act.start.append(StartContainer(name, "app", 0, 0))
            continue
        if fresh and rec.state == "exited" and observed.latest(name) is not None \
                and observed.latest(name).state != "exited":  # type: ignore[union-attr]
            act.start.append(StartContainer(name, "app", rec.attempt + 1, 0))
            continue
        if _alive(rec):
            h = container_hash(c)
            if rec.hash and rec.hash != h:
                act.kill.append(KillContainer(rec.id, name, "Killing",
                                              f"Container {name} definition changed, will be restarted"))
                act.start.append(StartContainer(name, "app", rec.attempt + 1, 0))
            continue
        if _should_restart(policy, rec):
            _restart(act, pod, c, rec, "app", now)
        else:
            done += 1
    if apps and done == len(apps) and not act.start:
        # every app container finished for good: the pod is terminal (termination stops the sidecars)
        act.terminal = True
        act.kill = [k for k in act.kill if k.id in probe_killed]
        act.waiting = {}
        act.requeue_after = None
    return act
