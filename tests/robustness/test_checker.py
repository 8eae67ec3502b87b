"""The history checker on hand-made histories: a clean one passes, each kind of anomaly is caught."""

from __future__ import annotations

import itertools

from peapod.testing.robustness.checker import (
    NodeContainer,
    check_deployments,
    check_history,
    check_node,
    check_objects,
    check_watches,
)
from peapod.testing.robustness.history import FinalObject, FinalState, History, Op, WatchEvent, WatchLog

NS = "rb"
_t = itertools.count(1)


def op(verb: str, name: str = "cm", *, outcome: str = "ok", code: int | None = 200, rv: int | None = None,
       data: str | None = None, resource: str = "configmaps", seen: str | None = None) -> Op:
    """A request at the next instant; ``data`` is what it writes, ``seen`` what the answer held."""
    t = float(next(_t))
    sets = {"data": data} if data is not None else None
    shown = seen if seen is not None else data
    return Op(client=0, verb=verb, resource=resource, namespace=NS, name=name, body_digest="x", start=t,
              end=t + 0.5, outcome=outcome, code=code, rv=rv, sets=sets,
              seen={"data": shown} if shown is not None and outcome == "ok" else None)


def final(rev: int, **objs: tuple[int, str]) -> FinalState:
    return FinalState(revision=rev, objects={"configmaps": {
        n: FinalObject(n, rv, f"uid-{n}", {"data": d}) for n, (rv, d) in objs.items()}})


def history(ops: list[Op], fin: FinalState | None, watches: list[WatchLog] | None = None) -> History:
    return History(seed=1, namespace=NS, ops=ops, watches=watches or [], final=fin)


def ev(type_: str, name: str, rv: int, items: dict[str, int] | None = None) -> WatchEvent:
    return WatchEvent(type=type_, name=name, rv=rv, time=float(rv), items=items)


def watch(events: list[WatchEvent], n: int = 0) -> WatchLog:
    return WatchLog(watcher=n, resource="configmaps", namespace=NS, events=events)


def clean_ops() -> list[Op]:
    return [op("create", data="a", rv=5), op("update", data="b", rv=7), op("get", data="b", rv=7),
            op("create", "other", data="z", rv=8), op("delete", "other", rv=9)]


def clean_watch(n: int = 0) -> WatchLog:
    return watch([ev("RELIST", "", 1, {}), ev("ADDED", "cm", 5), ev("MODIFIED", "cm", 7), ev("ADDED", "other", 8),
                  ev("DELETED", "other", 9)], n)


def test_a_clean_history_has_no_anomaly() -> None:
    h = history(clean_ops(), final(9, cm=(7, "b")), [clean_watch(0), clean_watch(1)])
    assert check_history(h) == []


def test_an_acknowledged_update_missing_at_the_end_is_a_lost_write() -> None:
    h = history(clean_ops(), final(9, cm=(5, "a")))
    found = check_objects(h)
    assert any("lost write" in a for a in found) and any("went back" in a for a in found)


def test_an_acknowledged_create_gone_at_the_end_is_a_lost_write() -> None:
    assert any("is gone at the end" in a for a in check_objects(history(clean_ops(), final(9))))


def test_an_ambiguous_write_may_or_may_not_have_happened() -> None:
    ops = [op("create", data="a", rv=5), op("update", data="b", outcome="ambiguous", code=None)]
    assert check_objects(history(ops, final(9, cm=(5, "a")))) == []
    assert check_objects(history(ops, final(9, cm=(6, "b")))) == []
    assert check_objects(history(ops, final(9, cm=(6, "c")))) != []  # nobody wrote "c"
    amb_delete = [op("create", data="a", rv=5), op("delete", outcome="ambiguous", code=None)]
    assert check_objects(history(amb_delete, final(9))) == []
    assert check_objects(history(amb_delete, final(9, cm=(5, "a")))) == []


def test_a_read_of_an_older_value_is_caught() -> None:
    ops = [op("create", data="a", rv=5), op("update", data="b", rv=7), op("get", seen="a", rv=5)]
    found = check_objects(history(ops, None))
    assert any("stale read" in a for a in found) and any("lost write" in a for a in found)


def test_a_404_on_an_acknowledged_object_is_a_lost_object() -> None:
    ops = [op("create", data="a", rv=5), op("update", data="b", outcome="fail", code=404)]
    assert any("lost object" in a for a in check_objects(history(ops, None)))


def test_a_409_on_create_of_an_object_that_cannot_exist_is_a_phantom() -> None:
    ops = [op("create", outcome="fail", code=409, data="a")]
    assert any("phantom" in a for a in check_objects(history(ops, None)))


def test_resource_versions_must_grow_per_object() -> None:
    ops = [op("create", data="a", rv=5), op("update", data="b", rv=4)]
    assert any("not increasing" in a for a in check_objects(history(ops, None)))


def test_an_update_answered_on_top_of_a_lost_state_is_caught() -> None:
    # The answer to the patch shows it applied to something other than the acknowledged value.
    ops = [op("create", data="a", rv=5), op("patch", data="b", seen="c", rv=7)]
    assert any("lost write" in a for a in check_objects(history(ops, None)))


def test_a_deleted_pod_may_linger_while_it_terminates() -> None:
    ops = [op("create", "p", data="a", rv=5, resource="pods"), op("delete", "p", rv=6, resource="pods")]
    for o in ops:
        o.sets = {"owned": "a"} if o.verb == "create" else None
        o.seen = {"owned": "a"}
    lingering = FinalState(9, {"pods": {"p": FinalObject("p", 8, "u", {"owned": "a"})}})
    assert check_objects(history(ops, lingering)) == []
    assert check_objects(history(ops, FinalState(9, {"pods": {}}))) == []


def test_a_pod_patched_while_it_terminates_may_still_vanish() -> None:
    ops = [op("create", "p", data="a", rv=5, resource="pods"), op("delete", "p", rv=6, resource="pods"),
           op("patch", "p", data="b", rv=7, resource="pods"), op("get", "p", outcome="fail", code=404, resource="pods")]
    for o in ops:
        o.sets = {"owned": o.sets["data"]} if o.sets else None
        o.seen = {"owned": o.seen["data"]} if o.seen else ({"owned": "a"} if o.verb == "delete" else None)
    assert check_objects(history(ops, FinalState(9, {"pods": {}}))) == []
    ops[1].outcome, ops[1].code = "fail", 409  # without the delete the 404 means the pod was lost
    assert any("lost object" in a for a in check_objects(history(ops, FinalState(9, {"pods": {}}))))


def test_watch_events_out_of_order_are_caught() -> None:
    w = watch([ev("RELIST", "", 1, {}), ev("ADDED", "cm", 5), ev("MODIFIED", "cm", 5)])
    assert any("out of order" in a for a in check_watches(history([], None, [w])))


def test_a_watcher_that_missed_an_acknowledged_write_is_caught() -> None:
    w = watch([ev("RELIST", "", 1, {}), ev("ADDED", "cm", 5), ev("ADDED", "other", 8), ev("DELETED", "other", 9)])
    found = check_watches(history(clean_ops(), final(9, cm=(7, "b")), [w]))
    assert any("missed the acknowledged update" in a for a in found)
    assert any("ends without cm" in a for a in found)


def test_a_gap_covered_by_410_and_relist_is_excused() -> None:
    w = watch([ev("RELIST", "", 1, {}), ev("ADDED", "cm", 5), ev("EXPIRED", "", 5),
               ev("RELIST", "", 8, {"cm": 7, "other": 8}), ev("DELETED", "other", 9)])
    assert check_watches(history(clean_ops(), final(9, cm=(7, "b")), [w])) == []


def test_a_relist_back_in_time_is_caught() -> None:
    w = watch([ev("RELIST", "", 1, {}), ev("ADDED", "cm", 5), ev("MODIFIED", "cm", 7), ev("RELIST", "", 6, {"cm": 5})])
    assert any("older than" in a for a in check_watches(history([], None, [w])))


def test_an_event_another_watcher_saw_must_be_seen() -> None:
    # The agent's status write (rv 6) is no client's: the other watcher proves it happened.
    a = watch([ev("RELIST", "", 1, {}), ev("ADDED", "cm", 5), ev("MODIFIED", "cm", 6), ev("MODIFIED", "cm", 7)], 0)
    b = watch([ev("RELIST", "", 1, {}), ev("ADDED", "cm", 5), ev("MODIFIED", "cm", 7)], 1)
    found = check_watches(history([], None, [a, b]))
    assert found == ["watcher 1 (configmaps) missed MODIFIED cm at resourceVersion 6 (watcher 0 saw it)"]


def test_a_reconnect_from_the_wrong_version_is_caught() -> None:
    w = watch([ev("RELIST", "", 1, {}), ev("ADDED", "cm", 5), ev("RECONNECT", "", 3)])
    assert any("reconnected from 3" in a for a in check_watches(history([], None, [w])))


def test_a_watcher_holding_a_deleted_object_is_caught() -> None:
    w = watch([ev("RELIST", "", 1, {}), ev("ADDED", "cm", 5), ev("MODIFIED", "cm", 7), ev("ADDED", "other", 8)])
    found = check_watches(history([], final(9, cm=(7, "b")), [w]))
    assert found == ["watcher 0 (configmaps) ends holding other at resourceVersion 8, which the API no longer has"]


def deployment(want: int, ready: int, gen: int = 2, observed: int = 2) -> dict:
    return {"metadata": {"name": "d", "generation": gen}, "spec": {"replicas": want},
            "status": {"observedGeneration": observed, "readyReplicas": ready, "updatedReplicas": ready,
                       "replicas": ready}}


def test_deployment_convergence() -> None:
    assert check_deployments([deployment(2, 2)]) == []
    assert check_deployments([deployment(0, 0)]) == []
    assert check_deployments([deployment(3, 2)]) != []
    assert any("not observed" in a for a in check_deployments([deployment(2, 2, gen=3)]))


def pod(uid: str, name: str, cid: str, *, phase: str = "Running", running: bool = True) -> dict:
    state = {"running": {}} if running else {"terminated": {"exitCode": 137}}
    return {"metadata": {"uid": uid, "name": name},
            "status": {"phase": phase, "containerStatuses": [
                {"name": "c", "containerID": f"peapod://{cid}", "state": state}]}}


U1, U2 = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"


def test_node_in_agreement_with_the_api() -> None:
    pods = [pod(U1, "a", f"{U1}-c-0")]
    assert check_node(pods, [NodeContainer(f"{U1}-c-0", "running")], [f"{U1}-c-0"]) == []


def test_an_orphan_container_and_conmon_are_caught() -> None:
    found = check_node([], [NodeContainer(f"{U2}-c-0", "running")], [f"{U2}-c-0"])
    assert len(found) == 2 and "orphan container" in found[0] and "orphan conmon" in found[1]


def test_a_leaked_old_attempt_is_caught() -> None:
    pods = [pod(U1, "a", f"{U1}-c-1")]
    found = check_node(pods, [NodeContainer(f"{U1}-c-0", "running"), NodeContainer(f"{U1}-c-1", "running")], [])
    assert found == [f"leaked container {U1}-c-0 of pod a: running, but not the pod's current container"]


def test_a_running_pod_whose_container_is_dead_is_caught() -> None:
    pods = [pod(U1, "a", f"{U1}-c-0")]
    found = check_node(pods, [NodeContainer(f"{U1}-c-0", "stopped")], [])
    assert len(found) == 1 and "does not run on the node" in found[0]


def test_a_refused_connection_is_ambiguous_for_what_aiohttp_resends() -> None:
    import aiohttp

    from peapod.testing.robustness.traffic import classify

    refused = aiohttp.ClientConnectorError(aiohttp.client_reqrep.ConnectionKey(
        "h", 1, True, True, None, None, None), OSError(111, "refused"))
    assert classify(refused, "POST") == ("fail", None)
    assert classify(refused, "PUT") == ("ambiguous", None)  # found by a run: the first attempt was applied
    assert classify(aiohttp.ServerDisconnectedError(), "PATCH") == ("ambiguous", None)
