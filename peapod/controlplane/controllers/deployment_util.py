"""Pure rollout logic of the Deployment controller (Kubernetes' deployment/util and rolling.go).

Nothing here does I/O: the functions take the Deployment and its ReplicaSets as wire dicts and
return numbers, decisions ("scale these ReplicaSets to these sizes") or a new status, so the
controller only carries them out. Scale decisions are lists of ``(replicaset name, new replicas)``
applied in order.
"""

from __future__ import annotations

import copy
import json
import math
import struct
from datetime import datetime
from typing import Any

from peapod.controlplane.controllers.controller_utils import (
    Obj,
    annotations_of,
    by_creation,
    get_condition,
    meta,
    new_condition,
    remove_condition,
    set_condition,
    time_of,
)

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
ROLLBACK_TO = "deprecated.deployment.rollback.to"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
CHANGE_CAUSE = "kubernetes.io/change-cause"
MAX_REV_HISTORY_CHARS = 2000
MAX_INT32 = 2**31 - 1

# Progressing condition reasons (deploymentutil).
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
FAILED_RS_CREATE = "ReplicaSetCreateError"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"

_SKIP_COPY = {LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS, ROLLBACK_TO}
_SAFE_CHARS = "bcdfghjklmnpqrstvwxz2456789"

Scale = tuple[str, int]


# -- reading specs (with the API's defaults, in case an object was stored without them) ----------------
def replicas(obj: Obj | None) -> int:
    if obj is None:
        return 0
    v = (obj.get("spec") or {}).get("replicas")
    return 1 if v is None else int(v)


def status_int(obj: Obj | None, field: str) -> int:
    if obj is None:
        return 0
    return int((obj.get("status") or {}).get(field) or 0)


def strategy(d: Obj) -> Obj:
    st = (d.get("spec") or {}).get("strategy") or {}
    if not st.get("type"):
        st = {"type": "RollingUpdate", "rollingUpdate": st.get("rollingUpdate") or {}}
    return st


def is_rolling(d: Obj) -> bool:
    return strategy(d)["type"] == "RollingUpdate"


def progress_deadline(d: Obj) -> int | None:
    """progressDeadlineSeconds, None when unset or MaxInt32 (no deadline)."""
    spec = d.get("spec") or {}
    v = spec.get("progressDeadlineSeconds", 600)
    if v is None or int(v) == MAX_INT32:
        return None
    return int(v)


def revision_history_limit(d: Obj) -> int | None:
    v = (d.get("spec") or {}).get("revisionHistoryLimit", 10)
    return None if v is None or int(v) == MAX_INT32 else int(v)


def min_ready_seconds(obj: Obj) -> int:
    return int((obj.get("spec") or {}).get("minReadySeconds") or 0)


# -- surge and unavailability ---------------------------------------------------------------------
def scaled_value(value: int | str | None, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent: ints as they are, "N%" of total rounded up or down."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError(f"invalid value for IntOrString: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%"):
        try:
            pct = int(value[:-1])
        except ValueError:
            raise ValueError(f"invalid value for IntOrString: invalid value {value!r}") from None
        return -(-pct * total // 100) if round_up else pct * total // 100
    raise ValueError(f"invalid value for IntOrString: invalid type: string is not a percentage: {value!r}")


def resolve_fenceposts(max_surge: int | str | None, max_unavailable: int | str | None,
                       desired: int) -> tuple[int, int]:
    """(surge, unavailable): surge rounds up, unavailable down; both zero means unavailable 1."""
    surge = scaled_value(max_surge if max_surge is not None else 0, desired, True)
    unavailable = scaled_value(max_unavailable if max_unavailable is not None else 0, desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _rolling_params(d: Obj) -> tuple[Any, Any]:
    ru = strategy(d).get("rollingUpdate") or {}
    return ru.get("maxSurge", "25%"), ru.get("maxUnavailable", "25%")


def max_surge(d: Obj) -> int:
    if not is_rolling(d):
        return 0
    return resolve_fenceposts(*_rolling_params(d), replicas(d))[0]


def max_unavailable(d: Obj) -> int:
    if not is_rolling(d) or replicas(d) == 0:
        return 0
    unavailable = resolve_fenceposts(*_rolling_params(d), replicas(d))[1]
    return min(unavailable, replicas(d))


# -- templates, hashes, finding ReplicaSets --------------------------------------------------------
def _normalize(v: Any) -> Any:
    """Semantic equality: empty and absent are the same (apiequality.Semantic.DeepEqual)."""
    if isinstance(v, dict):
        out = {k: _normalize(x) for k, x in v.items()}
        return {k: x for k, x in out.items() if x not in (None, {}, [], "")}
    if isinstance(v, list):
        return [_normalize(x) for x in v]
    return v


def _without_hash(template: Obj | None) -> Obj:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return _normalize(t)


def equal_ignore_hash(t1: Obj | None, t2: Obj | None) -> bool:
    return _without_hash(t1) == _without_hash(t2)


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def safe_encode(text: str) -> str:
    """rand.SafeEncodeString: no vowels (no words) and no look-alike characters."""
    return "".join(_SAFE_CHARS[b % len(_SAFE_CHARS)] for b in text.encode())


def compute_hash(template: Obj, collision_count: int | None) -> str:
    """The pod-template-hash: fnv32a over the canonical template (+ collisionCount), encoded safely."""
    data = json.dumps(_normalize(template), sort_keys=True, separators=(",", ":")).encode()
    if collision_count is not None:
        data += struct.pack("<I", collision_count & 0xFFFFFFFF) + b"\0\0\0\0"
    return safe_encode(str(fnv32a(data)))


def find_new_rs(d: Obj, rss: list[Obj]) -> Obj | None:
    """The oldest ReplicaSet whose template equals the Deployment's (ignoring the hash label)."""
    template = (d.get("spec") or {}).get("template")
    for rs in by_creation(rss):
        if equal_ignore_hash((rs.get("spec") or {}).get("template"), template):
            return rs
    return None


def find_old_rss(new_rs: Obj | None, rss: list[Obj]) -> tuple[list[Obj], list[Obj]]:
    """(old ReplicaSets with replicas, all old ReplicaSets)."""
    new_uid = meta(new_rs).get("uid") if new_rs is not None else None
    old = [rs for rs in rss if new_rs is None or meta(rs).get("uid") != new_uid]
    return [rs for rs in old if replicas(rs) != 0], old


def active(rss: list[Obj | None]) -> list[Obj]:
    return [rs for rs in rss if rs is not None and replicas(rs) > 0]


def revision(rs: Obj) -> int:
    try:
        return int(annotations_of(rs).get(REVISION, "0"))
    except ValueError:
        return 0


def max_revision(rss: list[Obj]) -> int:
    return max((revision(rs) for rs in rss), default=0)


def replica_count(rss: list[Obj | None]) -> int:
    return sum(replicas(rs) for rs in rss if rs is not None)


def actual_count(rss: list[Obj | None]) -> int:
    return sum(status_int(rs, "replicas") for rs in rss if rs is not None)


def ready_count(rss: list[Obj | None]) -> int:
    return sum(status_int(rs, "readyReplicas") for rs in rss if rs is not None)


def available_count(rss: list[Obj | None]) -> int:
    return sum(status_int(rs, "availableReplicas") for rs in rss if rs is not None)


# -- annotations -----------------------------------------------------------------------------------
def copy_deployment_annotations(d: Obj, rs: Obj) -> bool:
    """Copy the Deployment's annotations (change-cause...) onto the ReplicaSet; True if any changed."""
    rs_ann = rs.setdefault("metadata", {}).setdefault("annotations", {})
    changed = False
    for k, v in annotations_of(d).items():
        if k in _SKIP_COPY or rs_ann.get(k) == v:
            continue
        rs_ann[k] = v
        changed = True
    return changed


def set_replicas_annotations(rs: Obj, desired: int, max_replicas: int) -> bool:
    ann = rs.setdefault("metadata", {}).setdefault("annotations", {})
    changed = False
    for k, v in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(max_replicas))):
        if ann.get(k) != v:
            ann[k] = v
            changed = True
    return changed


def replicas_annotations_need_update(rs: Obj, desired: int, max_replicas: int) -> bool:
    ann = annotations_of(rs)
    return ann.get(DESIRED_REPLICAS) != str(desired) or ann.get(MAX_REPLICAS) != str(max_replicas)


def set_new_rs_annotations(d: Obj, rs: Obj, new_revision: int, exists: bool) -> bool:
    """Revision (and, for a ReplicaSet that comes back, its revision history) on the new ReplicaSet."""
    changed = copy_deployment_annotations(d, rs)
    ann = rs["metadata"]["annotations"]
    old_text = ann.get(REVISION)
    try:
        old = int(old_text) if old_text is not None else 0
    except ValueError:
        return changed
    if old < new_revision:
        ann[REVISION] = str(new_revision)
        changed = True
        if old_text is not None:  # rolled back to this template: keep its former revisions
            history = ann.get(REVISION_HISTORY, "")
            revs = [r for r in history.split(",") if r] + [old_text]
            while revs and len(",".join(revs)) > MAX_REV_HISTORY_CHARS:
                revs.pop(0)
            ann[REVISION_HISTORY] = ",".join(revs)
    if not exists and set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)):
        changed = True
    return changed


def desired_annotation(rs: Obj) -> int | None:
    try:
        return int(annotations_of(rs)[DESIRED_REPLICAS])
    except (KeyError, ValueError):
        return None


def max_replicas_annotation(rs: Obj) -> int | None:
    try:
        return int(annotations_of(rs)[MAX_REPLICAS])
    except (KeyError, ValueError):
        return None


# -- rollout steps ---------------------------------------------------------------------------------
def new_rs_new_replicas(d: Obj, all_rss: list[Obj | None], new_rs: Obj) -> int:
    """How far the new ReplicaSet may grow now (NewRSNewReplicas)."""
    if not is_rolling(d):
        return replicas(d)
    max_total = replicas(d) + max_surge(d)
    current = replica_count(all_rss)
    if current >= max_total:
        return replicas(new_rs)
    up = min(max_total - current, replicas(d) - replicas(new_rs))
    return replicas(new_rs) + up


def reconcile_new(d: Obj, new_rs: Obj, old_rss: list[Obj]) -> int | None:
    """The new ReplicaSet's next size in a rolling update, None to leave it (reconcileNewReplicaSet)."""
    want, cur = replicas(d), replicas(new_rs)
    if cur == want:
        return None
    target = want if cur > want else new_rs_new_replicas(d, [*old_rss, new_rs], new_rs)
    return None if target == cur else target


def reconcile_old(d: Obj, new_rs: Obj, old_rss: list[Obj]) -> list[Scale]:
    """Shrink old ReplicaSets as far as availability allows (reconcileOldReplicaSets).

    Unhealthy replicas go first (oldest ReplicaSet first), then available ones while more than
    ``replicas - maxUnavailable`` pods stay available, counting the new ReplicaSet's unavailable ones.
    """
    sizes = {meta(rs)["name"]: replicas(rs) for rs in old_rss}
    if sum(sizes.values()) == 0:
        return []
    all_rss: list[Obj | None] = [*old_rss, new_rs]
    old_active = by_creation(active(list(old_rss)))
    min_available = replicas(d) - max_unavailable(d)
    new_unavailable = replicas(new_rs) - status_int(new_rs, "availableReplicas")
    max_scaled_down = replica_count(all_rss) - min_available - new_unavailable
    if max_scaled_down <= 0:
        return []
    out: list[Scale] = []
    cleaned = 0
    for rs in old_active:  # cleanupUnhealthyReplicas
        if cleaned >= max_scaled_down:
            break
        name = meta(rs)["name"]
        unhealthy = sizes[name] - status_int(rs, "availableReplicas")
        if sizes[name] == 0 or unhealthy <= 0:
            continue
        n = min(max_scaled_down - cleaned, unhealthy)
        sizes[name] -= n
        cleaned += n
        out.append((name, sizes[name]))
    available = available_count(all_rss)  # scaleDownOldReplicaSetsForRollingUpdate
    if available > min_available:
        budget = available - min_available
        done = 0
        for rs in old_active:
            if done >= budget:
                break
            name = meta(rs)["name"]
            if sizes[name] == 0:
                continue
            n = min(sizes[name], budget - done)
            sizes[name] -= n
            done += n
            out.append((name, sizes[name]))
    return out


def rolling_step(d: Obj, new_rs: Obj, old_rss: list[Obj]) -> list[Scale]:
    """One step of a rolling update: grow (or trim) the new ReplicaSet, else shrink old ones."""
    target = reconcile_new(d, new_rs, old_rss)
    if target is not None:
        return [(meta(new_rs)["name"], target)]
    return reconcile_old(d, new_rs, old_rss)


def find_active_or_latest(new_rs: Obj | None, old_rss: list[Obj]) -> Obj | None:
    if new_rs is None and not old_rss:
        return None
    newest_first = list(reversed(by_creation(old_rss)))
    act = active([*newest_first, new_rs])
    if not act:
        return new_rs if new_rs is not None else newest_first[0]
    if len(act) == 1:
        return act[0]
    return None


def is_saturated(d: Obj, rs: Obj | None) -> bool:
    if rs is None:
        return False
    want = replicas(d)
    return (replicas(rs) == want and desired_annotation(rs) == want
            and status_int(rs, "availableReplicas") == want)


def _round(x: float) -> int:
    """math.Round: halves away from zero."""
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def _fraction(rs: Obj, d: Obj) -> int:
    if replicas(d) == 0:
        return -replicas(rs)
    total = replicas(d) + max_surge(d)
    annotated = max_replicas_annotation(rs)
    if annotated is None or annotated == 0:
        annotated = status_int(d, "replicas")
    if annotated == 0:
        return 0
    return _round(replicas(rs) * total / annotated) - replicas(rs)


def _proportion(rs: Obj, d: Obj, to_add: int, added: int) -> int:
    if replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    frac = _fraction(rs, d)
    allowed = to_add - added
    return min(frac, allowed) if to_add > 0 else max(frac, allowed)


def proportional_scale(d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> list[Scale]:
    """Scaling while a rollout is under way: spread the change over the active ReplicaSets (scale)."""
    want = replicas(d)
    only = find_active_or_latest(new_rs, old_rss)
    if only is not None:
        return [] if replicas(only) == want else [(meta(only)["name"], want)]
    if is_saturated(d, new_rs):
        return [(meta(rs)["name"], 0) for rs in active(list(old_rss))]
    if not is_rolling(d):
        return []
    rss = active([*old_rss, new_rs])
    allowed = want + max_surge(d) if want > 0 else 0
    to_add = allowed - replica_count(list(rss))
    # Largest first; among equals, newer first when growing and older first when shrinking.
    rss = by_creation(rss)
    if to_add > 0:
        rss.reverse()
    rss.sort(key=lambda rs: -replicas(rs))
    sizes: dict[str, int] = {}
    added = 0
    for rs in rss:
        name = meta(rs)["name"]
        if to_add != 0:
            p = _proportion(rs, d, to_add, added)
            sizes[name] = replicas(rs) + p
            added += p
        else:
            sizes[name] = replicas(rs)
    out: list[Scale] = []
    for i, rs in enumerate(rss):
        name = meta(rs)["name"]
        if i == 0 and to_add != 0:
            sizes[name] = max(sizes[name] + to_add - added, 0)
        out.append((name, sizes[name]))
    return out


def is_scaling_event(d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> bool:
    """An active ReplicaSet's desired-replicas annotation differs from spec.replicas."""
    for rs in active([*old_rss, new_rs]):
        desired = desired_annotation(rs)
        if desired is not None and desired != replicas(d):
            return True
    return False


def old_pods_running(new_rs: Obj | None, old_rss: list[Obj], pods_by_rs: dict[str, list[Obj]]) -> bool:
    """Recreate waits until no pod of an old ReplicaSet is left (terminating ones included)."""
    if actual_count(list(old_rss)) > 0:
        return True
    new_uid = meta(new_rs).get("uid") if new_rs is not None else None
    for uid, pods in pods_by_rs.items():
        if uid == new_uid:
            continue
        if any((p.get("status") or {}).get("phase") not in ("Failed", "Succeeded") for p in pods):
            return True
    return False


def cleanup_candidates(d: Obj, old_rss: list[Obj]) -> list[Obj]:
    """Old ReplicaSets beyond revisionHistoryLimit that can go: scaled to 0 and settled."""
    limit = revision_history_limit(d)
    if limit is None:
        return []
    alive = [rs for rs in old_rss if not meta(rs).get("deletionTimestamp")]
    diff = len(alive) - limit
    if diff <= 0:
        return []
    ordered = sorted(alive, key=lambda rs: (revision(rs), meta(rs).get("creationTimestamp") or "",
                                            meta(rs).get("name", "")))
    out = []
    for rs in ordered[:diff]:
        if (status_int(rs, "replicas") != 0 or replicas(rs) != 0
                or int(meta(rs).get("generation") or 0) > status_int(rs, "observedGeneration")):
            continue
        out.append(rs)
    return out


# -- status and conditions -------------------------------------------------------------------------
def calculate_status(all_rss: list[Obj | None], new_rs: Obj | None, d: Obj, now: datetime) -> Obj:
    available = available_count(all_rss)
    unavailable = max(replica_count(all_rss) - available, 0)
    old = d.get("status") or {}
    status: Obj = {
        "observedGeneration": int(meta(d).get("generation") or 0),
        "replicas": actual_count(all_rss),
        "updatedReplicas": actual_count([new_rs]),
        "readyReplicas": ready_count(all_rss),
        "availableReplicas": available,
        "unavailableReplicas": unavailable,
    }
    if old.get("collisionCount") is not None:
        status["collisionCount"] = old["collisionCount"]
    if old.get("conditions"):
        status["conditions"] = [dict(c) for c in old["conditions"]]
    if available >= replicas(d) - max_unavailable(d):
        cond = new_condition("Available", "True", MIN_AVAILABLE, "Deployment has minimum availability.", now,
                             update_time=True)
    else:
        cond = new_condition("Available", "False", MIN_UNAVAILABLE,
                             "Deployment does not have minimum availability.", now, update_time=True)
    set_condition(status, cond)
    return status


def deployment_complete(d: Obj, status: Obj) -> bool:
    want = replicas(d)
    return (int(status.get("updatedReplicas") or 0) == want and int(status.get("replicas") or 0) == want
            and int(status.get("availableReplicas") or 0) == want
            and int(status.get("observedGeneration") or 0) >= int(meta(d).get("generation") or 0))


def deployment_progressing(d: Obj, new: Obj) -> bool:
    old = d.get("status") or {}
    g = lambda s, k: int(s.get(k) or 0)  # noqa: E731
    old_old = g(old, "replicas") - g(old, "updatedReplicas")
    new_old = g(new, "replicas") - g(new, "updatedReplicas")
    return (g(new, "updatedReplicas") > g(old, "updatedReplicas") or new_old < old_old
            or g(new, "readyReplicas") > g(old, "readyReplicas")
            or g(new, "availableReplicas") > g(old, "availableReplicas"))


def deployment_timed_out(d: Obj, status: Obj, now: datetime) -> bool:
    deadline = progress_deadline(d)
    if deadline is None:
        return False
    cond = get_condition(status, "Progressing")
    if cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == TIMED_OUT:
        return True
    since = time_of(cond.get("lastUpdateTime") or cond.get("lastTransitionTime"))
    return since is not None and since.timestamp() + deadline < now.timestamp()


def progress_status(d: Obj, status: Obj, new_rs: Obj | None, now: datetime) -> Obj:
    """The Progressing condition after a rollout step (syncRolloutStatus)."""
    name = meta(d).get("name")
    cur = get_condition(d.get("status") or {}, "Progressing")
    if progress_deadline(d) is None:
        remove_condition(status, "Progressing")
        return status
    complete_already = (int(status.get("replicas") or 0) == int(status.get("updatedReplicas") or 0)
                        and cur is not None and cur.get("reason") == NEW_RS_AVAILABLE)
    if complete_already:
        return status
    what = f'ReplicaSet "{meta(new_rs)["name"]}"' if new_rs is not None else f'Deployment "{name}"'
    if deployment_complete(d, status):
        set_condition(status, new_condition("Progressing", "True", NEW_RS_AVAILABLE,
                                            f"{what} has successfully progressed.", now, update_time=True))
    elif deployment_progressing(d, status):
        cond = new_condition("Progressing", "True", RS_UPDATED, f"{what} is progressing.", now,
                             update_time=True)
        if cur is not None:
            if cur.get("status") == "True":
                cond["lastTransitionTime"] = cur.get("lastTransitionTime", cond["lastTransitionTime"])
            remove_condition(status, "Progressing")
        set_condition(status, cond)
    elif deployment_timed_out(d, status, now):
        set_condition(status, new_condition("Progressing", "False", TIMED_OUT,
                                            f"{what} has timed out progressing.", now, update_time=True))
    return status


def stuck_requeue_after(d: Obj, status: Obj, now: datetime) -> float | None:
    """When to look again for a timeout if nothing else happens (requeueStuckDeployment)."""
    cur = get_condition(d.get("status") or {}, "Progressing")
    deadline = progress_deadline(d)
    if deadline is None or cur is None:
        return None
    if deployment_complete(d, status) or cur.get("reason") == TIMED_OUT:
        return None
    since = time_of(cur.get("lastUpdateTime") or cur.get("lastTransitionTime"))
    if since is None:
        return None
    after = since.timestamp() + deadline - now.timestamp()
    return 0.0 if after < 1 else after + 1


def paused_condition(d: Obj, now: datetime) -> Obj | None:
    """The Progressing condition a pause/resume calls for, or None (checkPausedConditions)."""
    if progress_deadline(d) is None:
        return None
    cur = get_condition(d.get("status") or {}, "Progressing")
    if cur is not None and cur.get("reason") == TIMED_OUT:
        return None
    paused_now = cur is not None and cur.get("reason") == PAUSED
    if (d.get("spec") or {}).get("paused") and not paused_now:
        return new_condition("Progressing", "Unknown", PAUSED, "Deployment is paused", now, update_time=True)
    if not (d.get("spec") or {}).get("paused") and paused_now:
        return new_condition("Progressing", "Unknown", RESUMED, "Deployment is resumed", now,
                             update_time=True)
    return None


def replica_failure(all_rss: list[Obj | None], new_rs: Obj | None) -> Obj | None:
    """A ReplicaFailure condition of the new (else any) ReplicaSet, to surface on the Deployment."""
    ordered = [new_rs, *[rs for rs in all_rss if rs is not new_rs]]
    for rs in ordered:
        if rs is None:
            continue
        cond = get_condition(rs.get("status") or {}, "ReplicaFailure")
        if cond is not None and cond.get("status") == "True":
            return {"type": "ReplicaFailure", "status": "True", "reason": cond.get("reason", ""),
                    "message": cond.get("message", ""),
                    "lastUpdateTime": cond.get("lastTransitionTime", ""),
                    "lastTransitionTime": cond.get("lastTransitionTime", "")}
    return None
