"""Pod status as kubelet computes it (generateAPIPodStatus, getPhase): a pure function.

Inputs are the pod, what the runtime shows (:class:`peapod.node.plan.Observed`), the waiting
reasons the executor met (ErrImagePull, CrashLoopBackOff, CreateContainerConfigError, ...), the
probe verdicts (readiness, startup), the pod/host IPs and the time; the previous status provides
lastTransitionTimes, conditions owned by others (PodScheduled, DisruptionTarget, ...) and a
terminal phase, which never changes back (nor do its reason and message).

Container readiness follows kubelet's prober manager (UpdatePodStatus): a running container is
``started`` once its startup probe succeeded (at once without one); a started container is
``ready`` when its readiness probe says so (at once without one). A regular init container is
ready when it completed successfully.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from peapod.api.defaults import qos_class
from peapod.clock import rfc3339
from peapod.node.plan import ContainerRecord, Observed, is_sidecar

Obj = Mapping[str, Any]

OWNED_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")
CONTAINER_ID_SCHEME = "peapod"


@dataclass(frozen=True)
class StatusInputs:
    observed: Observed
    waiting: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    pod_ips: Sequence[str] = ()
    host_ips: Sequence[str] = ()
    start_time: datetime | None = None
    terminal: bool = False  # the pod worker is terminating/terminated it (kubelet's podIsTerminal)
    sandbox_ready: bool | None = None  # default: observed.sandbox_ready
    # probe verdicts for the running instances of containers that have such a probe
    readiness: Mapping[str, bool] = field(default_factory=dict)
    started: Mapping[str, bool] = field(default_factory=dict)
    failed: tuple[str, str] | None = None  # the agent failed the pod: (reason, message), e.g. DeadlineExceeded


def _ts(dt: datetime | None) -> str | None:
    return rfc3339(dt) if dt else None


def _terminated(rec: ContainerRecord) -> dict[str, Any]:
    t: dict[str, Any] = {
        "exitCode": rec.exit_code if rec.exit_code is not None else 137,
        "reason": rec.reason or ("Completed" if rec.exit_code == 0 else "Error"),
        "startedAt": _ts(rec.started_at),
        "finishedAt": _ts(rec.finished_at),
        "containerID": f"{CONTAINER_ID_SCHEME}://{rec.id}",
    }
    if rec.message:
        t["message"] = rec.message
    return t


def container_status(c: Obj, observed: Observed, waiting: Mapping[str, tuple[str, str]], *,
                     default_waiting: str, readiness: Mapping[str, bool] | None = None,
                     started: Mapping[str, bool] | None = None, regular_init: bool = False) -> dict[str, Any]:
    name = c["name"]
    inst = observed.instances(name)
    rec = inst[0] if inst else None
    prev = inst[1] if len(inst) > 1 else None
    st: dict[str, Any] = {
        "name": name, "image": c.get("image", ""), "imageID": "", "ready": False, "restartCount": 0,
        "started": False, "state": {}, "lastState": {},
    }
    w = waiting.get(name)
    if rec is None:
        reason, message = w or (default_waiting, "")
        st["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        return st
    st["restartCount"] = rec.attempt
    st["imageID"] = rec.image_id
    st["containerID"] = f"{CONTAINER_ID_SCHEME}://{rec.id}"
    if rec.image:
        st["image"] = rec.image
    if rec.state == "running":
        st["state"] = {"running": {"startedAt": _ts(rec.started_at or rec.created_at)}}
        st["started"] = bool((started or {}).get(name, True))
        st["ready"] = not regular_init and st["started"] and bool((readiness or {}).get(name, True))
        if prev is not None and prev.state == "exited":
            st["lastState"] = {"terminated": _terminated(prev)}
    elif rec.state == "created":
        st["state"] = {"waiting": {"reason": "ContainerCreating"}}
        if prev is not None and prev.state == "exited":
            st["lastState"] = {"terminated": _terminated(prev)}
    else:
        if w is not None:
            st["state"] = {"waiting": {"reason": w[0], **({"message": w[1]} if w[1] else {})}}
            st["lastState"] = {"terminated": _terminated(rec)}
        else:
            st["state"] = {"terminated": _terminated(rec)}
            st["ready"] = regular_init and st["state"]["terminated"]["exitCode"] == 0
            if prev is not None and prev.state == "exited":
                st["lastState"] = {"terminated": _terminated(prev)}
    return st


def _any_regular_started(spec: Obj, statuses: Mapping[str, Obj]) -> bool:
    for c in spec.get("containers") or []:
        s = statuses.get(c["name"])
        if not s:
            continue
        state = s.get("state") or {}
        if state.get("running") or state.get("terminated"):
            return True
        if state.get("waiting") and (s.get("lastState") or {}).get("terminated"):
            return True
    return False


def pod_phase(pod: Obj, init_statuses: Mapping[str, Obj], statuses: Mapping[str, Obj], *,
              terminal: bool) -> str:
    """kubelet's getPhase (v1.33)."""
    spec = pod.get("spec") or {}
    policy = spec.get("restartPolicy") or "Always"
    pending_init = failed_init = 0
    unknown = running = waiting = stopped = succeeded = 0
    for c in spec.get("initContainers") or []:
        s = init_statuses.get(c["name"])
        state = (s or {}).get("state") or {}
        last = ((s or {}).get("lastState") or {}).get("terminated")
        if is_sidecar(c):
            if s is None:
                unknown += 1
            elif state.get("running"):
                if not s.get("started"):
                    pending_init += 1
                running += 1
            elif state.get("terminated"):
                pass
            elif state.get("waiting"):
                if not last:
                    pending_init += 1
                    waiting += 1
            else:
                pending_init += 1
                unknown += 1
            continue
        if s is None:
            pending_init += 1
        elif state.get("running"):
            pending_init += 1
        elif state.get("terminated"):
            if state["terminated"].get("exitCode") != 0:
                failed_init += 1
        elif state.get("waiting"):
            if last:
                if last.get("exitCode") != 0:
                    failed_init += 1
            else:
                pending_init += 1
        else:
            pending_init += 1
    for c in spec.get("containers") or []:
        s = statuses.get(c["name"])
        if s is None:
            unknown += 1
            continue
        state = s.get("state") or {}
        if state.get("running"):
            running += 1
        elif state.get("terminated"):
            stopped += 1
            if state["terminated"].get("exitCode") == 0:
                succeeded += 1
        elif state.get("waiting"):
            if (s.get("lastState") or {}).get("terminated"):
                stopped += 1
            else:
                waiting += 1
        else:
            unknown += 1
    if failed_init > 0 and policy == "Never":
        return "Failed"
    if (pending_init > 0 and not _any_regular_started(spec, statuses)) or waiting > 0:
        return "Pending"
    if running > 0 and unknown == 0:
        return "Running"
    if running == 0 and stopped > 0 and unknown == 0:
        if terminal:
            return "Succeeded" if stopped == succeeded else "Failed"
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _condition(ctype: str, ok: bool, prev: Mapping[str, Obj], now: datetime, reason: str = "",
               message: str = "") -> dict[str, Any]:
    status = "True" if ok else "False"
    old = prev.get(ctype)
    since = old.get("lastTransitionTime") if old and old.get("status") == status else None
    cond: dict[str, Any] = {"type": ctype, "status": status, "lastProbeTime": None,
                            "lastTransitionTime": since or rfc3339(now)}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def compute_status(pod: Obj, inp: StatusInputs, now: datetime) -> dict[str, Any]:
    """The full ``status`` the agent wants the pod to have."""
    spec = pod.get("spec") or {}
    old = dict(pod.get("status") or {})
    obs = inp.observed
    inits = list(spec.get("initContainers") or [])
    apps = list(spec.get("containers") or [])
    init_statuses = {c["name"]: container_status(c, obs, inp.waiting, default_waiting="PodInitializing",
                                                 readiness=inp.readiness, started=inp.started,
                                                 regular_init=not is_sidecar(c))
                     for c in inits}
    init_pending = any(
        not is_sidecar(c) and not ((init_statuses[c["name"]].get("state") or {}).get("terminated") or {}).get(
            "exitCode") == 0 for c in inits)
    statuses = {c["name"]: container_status(c, obs, inp.waiting,
                                            default_waiting="PodInitializing" if init_pending and inits
                                            else "ContainerCreating",
                                            readiness=inp.readiness, started=inp.started) for c in apps}
    phase = pod_phase(pod, init_statuses, statuses, terminal=inp.terminal)
    pod_reason = pod_message = None
    if inp.failed is not None:
        phase, (pod_reason, pod_message) = "Failed", inp.failed
    if old.get("phase") in ("Succeeded", "Failed"):
        phase = old["phase"]
        pod_reason, pod_message = old.get("reason"), old.get("message")
    prev = {c.get("type"): c for c in old.get("conditions") or []}
    sandbox_ready = obs.sandbox_ready if inp.sandbox_ready is None else inp.sandbox_ready
    completed = phase == "Succeeded"

    # Initialized
    started_regular = _any_regular_started(spec, statuses)
    incomplete = []
    for c in inits:
        s = init_statuses[c["name"]]
        if is_sidecar(c):
            if not s.get("started"):
                incomplete.append(c["name"])
        elif ((s.get("state") or {}).get("terminated") or {}).get("exitCode") != 0:
            incomplete.append(c["name"])
    initialized = not incomplete or started_regular
    init_cond = _condition("Initialized", initialized, prev, now,
                           "PodCompleted" if completed and initialized and inits else (
                               "" if initialized else "ContainersNotInitialized"),
                           "" if initialized else
                           f"containers with incomplete status: [{' '.join(incomplete)}]")
    # ContainersReady / Ready
    unready = [c["name"] for c in apps if not statuses[c["name"]].get("ready")]
    unready += [c["name"] for c in inits if is_sidecar(c) and not init_statuses[c["name"]].get("ready")]
    ready = not unready and phase == "Running"
    if completed:
        reason, message = "PodCompleted", ""
    elif not unready and not ready:
        reason, message = "", ""
    else:
        reason = "" if ready else "ContainersNotReady"
        message = "" if ready else f"containers with unready status: [{' '.join(unready)}]"
    cready = _condition("ContainersReady", ready, prev, now, reason, message)
    pready = _condition("Ready", ready, prev, now, reason, message)
    gates = [g.get("conditionType") for g in spec.get("readinessGates") or []]
    missing = [g for g in gates if (prev.get(g) or {}).get("status") != "True"]
    if ready and missing:
        pready = _condition("Ready", False, prev, now, "ReadinessGatesNotReady",
                            f"corresponding condition of pod readiness gate \"{missing[0]}\" does not exist.")
    sandbox = _condition("PodReadyToStartContainers", sandbox_ready, prev, now)
    conditions = [sandbox, init_cond, pready, cready]
    conditions += [c for c in old.get("conditions") or [] if c.get("type") not in OWNED_CONDITIONS]

    status: dict[str, Any] = {"phase": phase, "conditions": conditions}
    if pod_reason:
        status["reason"] = pod_reason
    if pod_message:
        status["message"] = pod_message
    host_ips = list(inp.host_ips)
    if host_ips:
        status["hostIP"] = host_ips[0]
        status["hostIPs"] = [{"ip": ip} for ip in host_ips]
    pod_ips = list(inp.pod_ips) or ([ip["ip"] for ip in old.get("podIPs") or []] if old.get("podIP") else [])
    if spec.get("hostNetwork"):
        pod_ips = host_ips
    if pod_ips:
        status["podIP"] = pod_ips[0]
        status["podIPs"] = [{"ip": ip} for ip in pod_ips]
    start = old.get("startTime") or _ts(inp.start_time)
    if start:
        status["startTime"] = start
    if inits:
        status["initContainerStatuses"] = [init_statuses[c["name"]] for c in inits]
    status["containerStatuses"] = [statuses[c["name"]] for c in apps]
    status["qosClass"] = old.get("qosClass") or qos_class(dict(pod))
    return status
