"""Helpers shared by the workload controllers (Kubernetes' pkg/controller/controller_utils.go).

Pod predicates (active, ready, available), the deletion ranking of pods, controller references and
the claim (adopt/release) decision, create/delete expectations, slow-start batches and conditions.
Everything here is pure or in-memory, so it is tested without a server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from peapod.api.selectors import selector_matches
from peapod.clock import Clock, parse_time, rfc3339

Obj = dict[str, Any]

# Kubernetes' defaults: a sync creates at most this many pods; expectations expire after 5 minutes.
BURST_REPLICAS = 500
EXPECTATIONS_TTL = 300.0
SLOW_START_INITIAL_BATCH = 1
POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


# -- object helpers --------------------------------------------------------------------------------
def meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def labels_of(obj: Obj) -> dict[str, str]:
    return meta(obj).get("labels") or {}


def annotations_of(obj: Obj) -> dict[str, str]:
    return meta(obj).get("annotations") or {}


def time_of(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return parse_time(text)
    except ValueError:
        return None


def creation_time(obj: Obj) -> datetime | None:
    return time_of(meta(obj).get("creationTimestamp"))


def matches(selector: Obj | None, labels: dict[str, str] | None) -> bool:
    """metav1.LabelSelectorAsSelector(selector).Matches(labels); invalid selectors match nothing."""
    return selector_matches(selector, labels or {})


def controller_ref(obj: Obj) -> Obj | None:
    """The ownerReference with controller: true (metav1.GetControllerOf)."""
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def new_controller_ref(owner: Obj, api_version: str, kind: str) -> Obj:
    md = meta(owner)
    return {"apiVersion": api_version, "kind": kind, "name": md["name"], "uid": md["uid"],
            "controller": True, "blockOwnerDeletion": True}


def by_creation(objs: Iterable[Obj]) -> list[Obj]:
    """Oldest first, ties by name (controller.ReplicaSetsByCreationTimestamp)."""
    return sorted(objs, key=lambda o: (meta(o).get("creationTimestamp") or "", meta(o).get("name", "")))


# -- pods ------------------------------------------------------------------------------------------
def is_pod_active(pod: Obj) -> bool:
    """Not Succeeded/Failed and not being deleted (controller.IsPodActive)."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not meta(pod).get("deletionTimestamp")


def pod_condition(pod: Obj, type_: str) -> Obj | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def is_pod_ready(pod: Obj) -> bool:
    c = pod_condition(pod, "Ready")
    return c is not None and c.get("status") == "True"


def pod_ready_time(pod: Obj) -> datetime | None:
    c = pod_condition(pod, "Ready")
    if c is None or c.get("status") != "True":
        return None
    return time_of(c.get("lastTransitionTime"))


def is_pod_available(pod: Obj, min_ready_seconds: int, now: datetime) -> bool:
    """Ready for at least minReadySeconds (podutil.IsPodAvailable)."""
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = pod_ready_time(pod)
    return since is not None and since.timestamp() + min_ready_seconds < now.timestamp()


_PHASE_ORDER = {"Pending": 0, "Unknown": 1, "Running": 2}


def _max_restarts(pod: Obj) -> int:
    st = pod.get("status") or {}
    counts = [int(c.get("restartCount") or 0)
              for c in (st.get("containerStatuses") or []) + (st.get("initContainerStatuses") or [])]
    return max(counts, default=0)


def _deletion_cost(pod: Obj) -> int:
    try:
        return int(annotations_of(pod).get(POD_DELETION_COST, "0"))
    except ValueError:
        return 0


def _newer_first(t: datetime | None) -> tuple[int, float]:
    """Empty times first, then newer before older (afterOrZero)."""
    return (0, 0.0) if t is None else (1, -t.timestamp())


def deletion_order_key(pod: Obj, rank: int = 0) -> tuple[Any, ...]:
    """Sort key: pods that sort first are deleted first (controller.ActivePodsWithRanks).

    unassigned < assigned; Pending < Unknown < Running; not ready < ready; lower deletion cost;
    more pods of the same owner on its node; ready more recently; more restarts; created more recently.
    """
    ready = is_pod_ready(pod)
    return (
        1 if (pod.get("spec") or {}).get("nodeName") else 0,
        _PHASE_ORDER.get((pod.get("status") or {}).get("phase", ""), 0),
        1 if ready else 0,
        _deletion_cost(pod),
        -rank,
        _newer_first(pod_ready_time(pod)) if ready else (0, 0.0),
        -_max_restarts(pod),
        _newer_first(creation_time(pod)),
        meta(pod).get("name", ""),
    )


def pods_to_delete(pods: list[Obj], related: list[Obj], count: int) -> list[Obj]:
    """The ``count`` pods to delete first, ranked by how many related pods share their node."""
    if count >= len(pods):
        return list(pods)
    on_node: dict[str, int] = {}
    for p in related:
        if is_pod_active(p):
            node = (p.get("spec") or {}).get("nodeName") or ""
            on_node[node] = on_node.get(node, 0) + 1
    def rank(p: Obj) -> int:
        node = (p.get("spec") or {}).get("nodeName") or ""
        return on_node.get(node, 0) if node else 0
    return sorted(pods, key=lambda p: deletion_order_key(p, rank(p)))[:count]


def pod_from_template(template: Obj, owner: Obj, ref: Obj) -> Obj:
    """A pod to create for ``owner`` (controller.GetPodFromTemplate): generateName "<owner>-"."""
    tmeta = template.get("metadata") or {}
    md: Obj = {"generateName": meta(owner)["name"] + "-", "namespace": meta(owner).get("namespace"),
               "ownerReferences": [ref]}
    for k in ("labels", "annotations", "finalizers"):
        if tmeta.get(k):
            md[k] = json.loads(json.dumps(tmeta[k]))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md,
            "spec": json.loads(json.dumps(template.get("spec") or {}))}


# -- claiming (ControllerRefManager) ----------------------------------------------------------------
class Claim(Enum):
    OWN = "own"  # ours and still matching
    ADOPT = "adopt"  # an orphan that matches: take it
    RELEASE = "release"  # ours but no longer matching: let go
    IGNORE = "ignore"  # not ours, or not now


def claim_decision(owner: Obj, obj: Obj, selector: Obj | None) -> Claim:
    """What a controller does with ``obj`` (ControllerRefManager.ClaimObject)."""
    ref = controller_ref(obj)
    owner_md = meta(owner)
    match = matches(selector, labels_of(obj))
    if ref is not None:
        if ref.get("uid") != owner_md.get("uid"):
            return Claim.IGNORE
        if match:
            return Claim.OWN
        if owner_md.get("deletionTimestamp"):
            return Claim.IGNORE
        return Claim.RELEASE
    if owner_md.get("deletionTimestamp") or not match:
        return Claim.IGNORE
    if meta(obj).get("deletionTimestamp"):
        return Claim.IGNORE
    if meta(obj).get("namespace") != owner_md.get("namespace"):
        return Claim.IGNORE
    return Claim.ADOPT


def adopt_patch(obj: Obj, ref: Obj) -> list[Obj]:
    """JSON patch adding a controller reference, valid only for this uid and resourceVersion."""
    md = meta(obj)
    refs = [r for r in md.get("ownerReferences") or [] if r.get("uid") != ref["uid"]]
    return [{"op": "test", "path": "/metadata/uid", "value": md["uid"]},
            {"op": "test", "path": "/metadata/resourceVersion", "value": md.get("resourceVersion", "")},
            {"op": "add", "path": "/metadata/ownerReferences", "value": [*refs, ref]}]


def release_patch(obj: Obj, owner_uid: str) -> list[Obj]:
    md = meta(obj)
    refs = [r for r in md.get("ownerReferences") or [] if r.get("uid") != owner_uid]
    return [{"op": "test", "path": "/metadata/uid", "value": md["uid"]},
            {"op": "test", "path": "/metadata/resourceVersion", "value": md.get("resourceVersion", "")},
            {"op": "add", "path": "/metadata/ownerReferences", "value": refs}]


# -- expectations ------------------------------------------------------------------------------------
@dataclass
class _Expectation:
    add: int
    deletes: set[str]
    stamp: float


@dataclass
class Expectations:
    """Creates and deletes in flight per controller key (UIDTrackingControllerExpectations).

    A controller that just created pods must not act on a cache that does not show them yet: it
    skips managing replicas until every create and delete was observed, or the record expired.
    """

    clock: Clock
    ttl: float = EXPECTATIONS_TTL
    _records: dict[str, _Expectation] = field(default_factory=dict)

    def expect(self, key: str, *, creates: int = 0, deletes: Iterable[str] = ()) -> None:
        self._records[key] = _Expectation(creates, set(deletes), self.clock.monotonic())

    def creation_observed(self, key: str) -> None:
        rec = self._records.get(key)
        if rec is not None:
            rec.add -= 1

    def deletion_observed(self, key: str, pod_key: str) -> None:
        rec = self._records.get(key)
        if rec is not None:
            rec.deletes.discard(pod_key)

    def satisfied(self, key: str) -> bool:
        rec = self._records.get(key)
        if rec is None:
            return True
        if rec.add <= 0 and not rec.deletes:
            return True
        return self.clock.monotonic() - rec.stamp > self.ttl

    def pending(self, key: str) -> tuple[int, int]:
        rec = self._records.get(key)
        return (0, 0) if rec is None else (max(rec.add, 0), len(rec.deletes))

    def delete(self, key: str) -> None:
        self._records.pop(key, None)


async def slow_start_batch(
    count: int, fn: Callable[[], Awaitable[None]], initial: int = SLOW_START_INITIAL_BATCH
) -> tuple[int, BaseException | None]:
    """Call ``fn`` ``count`` times in batches of 1, 2, 4, ...; stop after a batch with a failure.

    Returns (successes, first error). A quota or webhook problem thus costs one call, not hundreds.
    """
    remaining = count
    successes = 0
    batch = min(remaining, initial)
    while batch > 0:
        results = await asyncio.gather(*(fn() for _ in range(batch)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        successes += batch - len(errors)
        if errors:
            return successes, errors[0]
        remaining -= batch
        batch = min(2 * batch, remaining)
    return successes, None


# -- conditions ---------------------------------------------------------------------------------------
def get_condition(status: Obj, type_: str) -> Obj | None:
    for c in status.get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def remove_condition(status: Obj, type_: str) -> None:
    conds = [c for c in status.get("conditions") or [] if c.get("type") != type_]
    if conds:
        status["conditions"] = conds
    else:
        status.pop("conditions", None)


def new_condition(type_: str, status: str, reason: str, message: str, now: datetime,
                  *, update_time: bool = False) -> Obj:
    c = {"type": type_, "status": status, "lastTransitionTime": rfc3339(now), "reason": reason,
         "message": message}
    if update_time:
        c["lastUpdateTime"] = rfc3339(now)
    return c


def set_condition(status: Obj, cond: Obj) -> None:
    """Add or replace a condition; same status and reason keeps the old one; same status keeps
    lastTransitionTime (SetDeploymentCondition / SetCondition)."""
    cur = get_condition(status, cond["type"])
    if cur is not None and cur.get("status") == cond["status"] and cur.get("reason") == cond["reason"]:
        return
    if cur is not None and cur.get("status") == cond["status"]:
        cond = {**cond, "lastTransitionTime": cur.get("lastTransitionTime", cond["lastTransitionTime"])}
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != cond["type"]]
    status["conditions"].append(cond)
