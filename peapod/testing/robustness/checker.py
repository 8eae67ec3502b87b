"""Pure checks of a robustness run's history. Every function returns anomalies, one line of text each.

Per object (resource/namespace/name, written by one client), :func:`check_objects` runs a small model:
the set of states the object may be in (absent / present / being deleted, and the fields the traffic
owns). An acknowledged write narrows it to one state, an ambiguous one adds the state it would have
made, a failure leaves it alone. Every read, every acknowledged answer and the final state must be one
of the possible states, else a write was lost (or invented). resourceVersions must grow.

:func:`check_watches` replays each watcher's stream: resourceVersions strictly increase, a relist never
goes back in time, every acknowledged write and every event another watcher saw is seen where the
watcher's stream covered it (a 410 + relist excuses the gap), and what the watcher ends up holding is
what the API holds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from peapod.testing.robustness.history import FinalState, History, Op, WatchLog

Fields = frozenset[tuple[str, str]]
YES, NO, DELETING = "present", "absent", "deleting"


@dataclass(frozen=True)
class _State:
    exists: str
    fields: Fields


def _apply(state: _State, op: Op) -> _State | None:
    """The state an (applied) write ``op`` makes from ``state``; None when it could not apply there."""
    sets = dict(op.sets or {})
    if op.verb == "create":
        return _State(YES, frozenset(sets.items())) if state.exists != YES else None
    if op.verb == "delete":
        if state.exists == NO:
            return None
        return _State(DELETING if op.resource == "pods" else NO, state.fields)
    if state.exists == NO:
        return None
    merged = dict(state.fields)
    merged.update(sets)
    return _State(state.exists, frozenset(merged.items()))


def _fmt(op: Op) -> str:
    return f"{op.verb} {op.resource}/{op.name} by client {op.client} at {op.start:.3f}"


def _matches(states: Iterable[_State], seen: dict[str, str]) -> list[_State]:
    return [s for s in states if s.exists != NO and dict(s.fields) == seen]


@dataclass
class _Key:
    states: set[_State] = field(default_factory=lambda: {_State(NO, frozenset())})
    floor: int = 0  # newest acknowledged resourceVersion
    last_op: Op | None = None


def check_objects(history: History) -> list[str]:
    """Lost or invented writes and resourceVersion regressions, per object the traffic wrote."""
    anomalies: list[str] = []
    keys: dict[tuple[str, str, str], _Key] = defaultdict(_Key)
    for op in sorted(history.ops, key=lambda o: o.start):
        k = keys[op.key]
        anomalies += _step(k, op)
        k.last_op = op
    if history.final is None:
        return anomalies
    for key, k in sorted(keys.items()):
        resource, _ns, name = key
        obj = history.final.objects.get(resource, {}).get(name)
        if obj is None:
            if not any(s.exists != YES for s in k.states):
                anomalies.append(f"lost write: {resource}/{name} is gone at the end, but it was acknowledged "
                                 f"(last: {_fmt(k.last_op) if k.last_op else '?'}) and never deleted")
            continue
        if obj.rv < k.floor:
            anomalies.append(f"resourceVersion went back: final {resource}/{name} at {obj.rv} < acknowledged "
                             f"{k.floor}")
        if not _matches(k.states, obj.fields):
            anomalies.append(f"lost write: final {resource}/{name} holds {sorted(obj.fields.items())}, "
                             f"none of the possible states {_show(k.states)}")
    return anomalies


def _show(states: Iterable[_State]) -> str:
    return "; ".join(f"{s.exists} {sorted(s.fields)}" for s in sorted(states, key=repr))


def _step(k: _Key, op: Op) -> list[str]:
    out: list[str] = []
    if op.outcome == "ambiguous":
        if op.is_write:
            k.states |= {n for s in k.states if (n := _apply(s, op)) is not None}
        return out
    if op.outcome == "fail":
        if op.code == 404 and op.verb != "create" and op.verb != "delete" and all(s.exists == YES for s in k.states):
            out.append(f"lost object: {_fmt(op)} got 404 but its creation was acknowledged and never undone")
        if op.code == 409 and op.verb == "create" and all(s.exists == NO for s in k.states):
            out.append(f"phantom object: {_fmt(op)} got 409 AlreadyExists but the object cannot exist")
        return out
    # ok: the answer tells the state now.
    seen = dict(op.seen or {})
    if op.rv is not None:
        no_op = op.rv == k.floor and bool(_matches(k.states, seen))  # a write that changed nothing keeps its rv
        if op.is_write and op.verb != "delete" and op.rv <= k.floor and not no_op:
            out.append(f"resourceVersion not increasing: {_fmt(op)} answered {op.rv} <= {k.floor}")
        elif op.rv < k.floor:
            out.append(f"stale read: {_fmt(op)} answered resourceVersion {op.rv} < acknowledged {k.floor}")
    if op.verb == "get":
        found = _matches(k.states, seen)
        if not found:
            out.append(f"lost write: {_fmt(op)} read {sorted(seen.items())}, none of {_show(k.states)}")
            k.states = {_State(YES, frozenset(seen.items()))}
        else:
            k.states = set(found)
    elif op.verb == "delete":
        if all(s.exists == NO for s in k.states):
            out.append(f"phantom object: {_fmt(op)} deleted an object that cannot exist")
        k.states = {_State(DELETING if op.resource == "pods" else NO, frozenset(seen.items()))}
    else:
        expected = {n for s in k.states if (n := _apply(s, op)) is not None}
        found = _matches(expected, seen)
        if not found:
            out.append(f"lost write: {_fmt(op)} answered {sorted(seen.items())}, none of {_show(expected)} "
                       f"(from {_show(k.states)})")
        k.states = set(found) or {_State(YES, frozenset(seen.items()))}  # a terminating pod stays terminating
    if op.rv is not None and op.verb != "delete":
        k.floor = max(k.floor, op.rv)
    return out


# ---- watches ------------------------------------------------------------------------------------


@dataclass
class _Replay:
    """One watcher's stream replayed: coverage, what it saw, what it ends up holding."""

    covered: list[tuple[int, int]] = field(default_factory=list)  # (lo, hi]: every event in it was due
    seen: dict[int, tuple[str, str]] = field(default_factory=dict)  # rv -> (type, name)
    state: dict[str, int] = field(default_factory=dict)  # name -> rv
    deleted_at: dict[str, int] = field(default_factory=dict)  # name -> rv of its DELETED event
    last: int = 0

    def covers(self, rv: int) -> bool:
        return any(lo < rv <= hi for lo, hi in self.covered)


def _replay(w: WatchLog, out: list[str]) -> _Replay:
    r = _Replay()
    seg_lo: int | None = None
    tag = f"watcher {w.watcher} ({w.resource})"
    for ev in w.events:
        if ev.type == "RELIST":
            if seg_lo is not None:
                r.covered.append((seg_lo, r.last))
            if ev.rv < r.last:
                out.append(f"{tag}: relist at resourceVersion {ev.rv} is older than {r.last} already seen")
            r.state = dict(ev.items or {})
            seg_lo = r.last = ev.rv
        elif ev.type == "RECONNECT":
            if ev.rv != r.last:
                out.append(f"{tag}: reconnected from {ev.rv}, not from the last seen {r.last}")
        elif ev.type == "EXPIRED":
            continue
        elif ev.type == "BOOKMARK":
            if ev.rv < r.last:
                out.append(f"{tag}: bookmark {ev.rv} older than {r.last}")
            r.last = max(r.last, ev.rv)
        else:
            if ev.rv <= r.last:
                out.append(f"{tag}: {ev.type} {ev.name} at resourceVersion {ev.rv} out of order (after {r.last})")
            r.last = max(r.last, ev.rv)
            r.seen[ev.rv] = (ev.type, ev.name)
            if ev.type == "DELETED":
                r.state.pop(ev.name, None)
                r.deleted_at[ev.name] = ev.rv
            else:
                r.state[ev.name] = ev.rv
    if seg_lo is not None:
        r.covered.append((seg_lo, r.last))
    return r


def check_watches(history: History) -> list[str]:
    """Order, completeness (against acknowledged writes and other watchers) and end state of every watch."""
    out: list[str] = []
    replays = [(w, _replay(w, out)) for w in history.watches]
    acked = [op for op in history.ops if op.outcome == "ok" and op.is_write and op.verb != "delete" and op.rv]
    for w, r in replays:
        tag = f"watcher {w.watcher} ({w.resource})"
        for op in acked:
            if op.resource == w.resource and op.namespace == w.namespace and r.covers(op.rv or 0) \
                    and r.seen.get(op.rv or 0, ("", ""))[1] != op.name:
                out.append(f"{tag} missed the acknowledged {_fmt(op)} at resourceVersion {op.rv}")
        for w2, r2 in replays:
            if w2 is w or (w2.resource, w2.namespace) != (w.resource, w.namespace):
                continue
            for rv, (typ, name) in sorted(r2.seen.items()):
                if r.covers(rv) and r.seen.get(rv) != (typ, name):
                    out.append(f"{tag} missed {typ} {name} at resourceVersion {rv} (watcher {w2.watcher} saw it)")
        out += _check_end_state(tag, r, history.final, w.resource)
    return out


def _check_end_state(tag: str, r: _Replay, final: FinalState | None, resource: str) -> list[str]:
    if final is None:
        return []
    out: list[str] = []
    objs = final.objects.get(resource, {})
    revision = final.revisions.get(resource, final.revision)
    for name, obj in sorted(objs.items()):
        have = r.state.get(name)
        if have is not None and have >= obj.rv:
            continue
        if r.deleted_at.get(name, 0) > obj.rv:  # deleted after the snapshot
            continue
        out.append(f"{tag} ends without {name} at resourceVersion {obj.rv} (holds {have})")
    for name, rv in sorted(r.state.items()):
        if name not in objs and rv <= revision:
            out.append(f"{tag} ends holding {name} at resourceVersion {rv}, which the API no longer has")
    return out


def check_history(history: History) -> list[str]:
    return check_objects(history) + check_watches(history)


# ---- cluster state after the faults ---------------------------------------------------------------


def check_deployments(deployments: list[dict[str, Any]]) -> list[str]:
    """Deployments that have not converged: ready/updated replicas differ from spec, or status is stale."""
    out: list[str] = []
    for d in deployments:
        md, spec, st = d.get("metadata", {}), d.get("spec", {}), d.get("status", {})
        want = spec.get("replicas", 1)
        got = (st.get("readyReplicas", 0), st.get("updatedReplicas", 0), st.get("replicas", 0))
        stale = st.get("observedGeneration", 0) < md.get("generation", 0)
        if stale or got != (want, want, want):
            out.append(f"deployment {md.get('name')} not converged: spec {want}, ready/updated/total {got}"
                       + (" (status not observed)" if stale else ""))
    return out


@dataclass(frozen=True)
class NodeContainer:
    """A container on the node: its id, runc status and whether its conmon still lives."""

    id: str
    status: str  # runc: running | stopped | created | paused
    conmon_alive: bool = True


def pod_uid_of(container_id: str) -> str:
    """peapod names containers ``<pod uid>-<container name>-<attempt>``; the uid is the first 36 characters."""
    return container_id[:36]


def check_node(pods: list[dict[str, Any]], containers: list[NodeContainer], conmon_ids: list[str]) -> list[str]:
    """No container the API does not know about, and no Running pod whose containers do not run."""
    out: list[str] = []
    by_uid = {p["metadata"]["uid"]: p for p in pods}
    running = {c.id for c in containers if c.status == "running"}
    for c in sorted(containers, key=lambda c: c.id):
        pod = by_uid.get(pod_uid_of(c.id))
        if pod is None:
            if c.status == "running":
                out.append(f"orphan container {c.id}: running, but the API has no pod with uid {pod_uid_of(c.id)}")
            continue
        if c.status == "running" and c.id not in _current_ids(pod):
            out.append(f"leaked container {c.id} of pod {pod['metadata']['name']}: running, but not the pod's "
                       f"current container")
    for cid in sorted(set(conmon_ids)):
        if pod_uid_of(cid) not in by_uid:
            out.append(f"orphan conmon for {cid}: the API has no pod with uid {pod_uid_of(cid)}")
    for p in pods:
        if p.get("status", {}).get("phase") != "Running" or p["metadata"].get("deletionTimestamp"):
            continue
        for cs in p.get("status", {}).get("containerStatuses", []):
            cid = cs.get("containerID", "").partition("://")[2]
            if "running" in (cs.get("state") or {}) and cid not in running:
                out.append(f"pod {p['metadata']['name']} says container {cs.get('name')} ({cid}) runs, but it does "
                           f"not run on the node")
    return out


def _current_ids(pod: dict[str, Any]) -> set[str]:
    st = pod.get("status", {})
    return {cs.get("containerID", "").partition("://")[2]
            for part in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses")
            for cs in st.get(part, [])}
