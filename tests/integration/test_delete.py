"""DELETE: graceful pod deletion, finalizers, propagation policies, preconditions, deletecollection."""

from __future__ import annotations

from typing import Any

from tests.integration.helpers import CT_MERGE, call, configmap, deployment, pod

NS = "/api/v1/namespaces/default"
DEP = "/apis/apps/v1/namespaces/default/deployments"


async def test_unbound_pod_deleted_at_once(http: Any) -> None:
    await call(http, "POST", f"{NS}/pods", pod("u"))
    r = await call(http, "DELETE", f"{NS}/pods/u", {"propagationPolicy": "Background"})
    assert r.status == 200 and r.json["kind"] == "Pod", "pods answer with the deleted object"
    assert (await call(http, "GET", f"{NS}/pods/u")).status == 404


async def test_bound_pod_graceful_then_agent_deletes(http: Any) -> None:
    await call(http, "POST", f"{NS}/pods", pod("g", node="n1", terminationGracePeriodSeconds=20))
    r = await call(http, "DELETE", f"{NS}/pods/g")
    assert r.status == 200
    meta = r.json["metadata"]
    assert meta["deletionGracePeriodSeconds"] == 20 and meta["deletionTimestamp"]
    assert (await call(http, "GET", f"{NS}/pods/g")).status == 200, "stays until the node agent confirms"
    r = await call(http, "DELETE", f"{NS}/pods/g", {"gracePeriodSeconds": 5})
    assert r.json["metadata"]["deletionGracePeriodSeconds"] == 5, "grace can only be shortened"
    r = await call(http, "DELETE", f"{NS}/pods/g", {"gracePeriodSeconds": 10})
    assert r.json["metadata"]["deletionGracePeriodSeconds"] == 5
    r = await call(http, "DELETE", f"{NS}/pods/g?gracePeriodSeconds=0")
    assert r.status == 200
    assert (await call(http, "GET", f"{NS}/pods/g")).status == 404


async def test_finished_pod_deleted_at_once(http: Any) -> None:
    await call(http, "POST", f"{NS}/pods", pod("f", node="n1"))
    await call(http, "PATCH", f"{NS}/pods/f/status", {"status": {"phase": "Succeeded"}}, ctype=CT_MERGE)
    await call(http, "DELETE", f"{NS}/pods/f")
    assert (await call(http, "GET", f"{NS}/pods/f")).status == 404


async def test_finalizers_hold_deletion(http: Any) -> None:
    body = configmap("fin")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    await call(http, "POST", f"{NS}/configmaps", body)
    r = await call(http, "DELETE", f"{NS}/configmaps/fin")
    assert r.status == 200 and r.json["metadata"]["deletionTimestamp"], r
    assert r.json["metadata"]["deletionGracePeriodSeconds"] == 0
    r = await call(
        http,
        "PATCH",
        f"{NS}/configmaps/fin",
        {"metadata": {"finalizers": ["example.com/hold", "example.com/new"]}},
        ctype=CT_MERGE,
    )
    assert r.status == 422, "no new finalizers while deleting"
    r = await call(http, "PATCH", f"{NS}/configmaps/fin", {"metadata": {"finalizers": None}}, ctype=CT_MERGE)
    assert r.status == 200
    assert (await call(http, "GET", f"{NS}/configmaps/fin")).status == 404


async def test_immediate_delete_answers_status(http: Any) -> None:
    await call(http, "POST", f"{NS}/configmaps", configmap("s"))
    r = await call(http, "DELETE", f"{NS}/configmaps/s")
    assert r.json["kind"] == "Status" and r.json["status"] == "Success"
    assert r.json["details"]["name"] == "s" and r.json["details"]["kind"] == "configmaps"


async def test_propagation_policies(http: Any) -> None:
    await call(http, "POST", DEP, deployment("fg"))
    r = await call(http, "DELETE", f"{DEP}/fg", {"propagationPolicy": "Foreground"})
    assert r.status == 200 and r.json["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert r.json["metadata"]["deletionTimestamp"]
    await call(http, "POST", DEP, deployment("or"))
    r = await call(http, "DELETE", f"{DEP}/or?propagationPolicy=Orphan")
    assert r.json["metadata"]["finalizers"] == ["orphan"]
    r = await call(http, "DELETE", f"{DEP}/or", {"propagationPolicy": "Sideways"})
    assert r.status == 400


async def test_preconditions_and_dry_run(http: Any, server: Any) -> None:
    r = await call(http, "POST", f"{NS}/configmaps", configmap("pre"))
    uid = r.json["metadata"]["uid"]
    before = await server.dump()
    r = await call(http, "DELETE", f"{NS}/configmaps/pre", {"preconditions": {"uid": "other"}})
    assert r.status == 409 and "Precondition failed: UID in precondition" in r.json["message"]
    r = await call(http, "DELETE", f"{NS}/configmaps/pre", {"preconditions": {"resourceVersion": "1"}})
    assert r.status == 409
    r = await call(http, "DELETE", f"{NS}/configmaps/pre?dryRun=All")
    assert r.status == 200
    assert await server.dump() == before
    r = await call(
        http,
        "DELETE",
        f"{NS}/configmaps/pre",
        {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid}},
    )
    assert r.status == 200
    assert (await call(http, "DELETE", f"{NS}/configmaps/pre")).status == 404


async def test_delete_collection(http: Any) -> None:
    for i in range(4):
        body = configmap(f"dc{i}")
        body["metadata"]["labels"] = {"drop": "yes" if i < 3 else "no"}
        await call(http, "POST", f"{NS}/configmaps", body)
    r = await call(http, "DELETE", f"{NS}/configmaps?labelSelector=drop%3Dyes")
    assert r.status == 200 and len(r.json["items"]) == 3
    r = await call(http, "GET", f"{NS}/configmaps")
    assert [i["metadata"]["name"] for i in r.json["items"]] == ["dc3"]
    r = await call(http, "DELETE", "/api/v1/namespaces")
    assert r.status == 405
