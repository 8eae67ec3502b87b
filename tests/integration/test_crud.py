"""Create/get/list/update/delete for every served resource, plus conflicts and metadata rules."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.integration.helpers import call, configmap, deployment, node, pod, replicaset

NS = "/api/v1/namespaces/default"

SAMPLES: list[tuple[str, str, dict[str, Any]]] = [
    ("/api/v1/namespaces", "namespaces", {"metadata": {"name": "team-a"}}),
    (f"{NS}/pods", "pods", pod("p")),
    ("/api/v1/nodes", "nodes", node("n1")),
    (
        f"{NS}/events",
        "events",
        {
            "metadata": {"name": "e1"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
            "reason": "Started",
            "message": "hi",
            "type": "Normal",
        },
    ),
    (f"{NS}/configmaps", "configmaps", configmap("cm", a="1")),
    (f"{NS}/secrets", "secrets", {"metadata": {"name": "s"}, "stringData": {"k": "v"}}),
    (f"{NS}/serviceaccounts", "serviceaccounts", {"metadata": {"name": "builder"}}),
    ("/apis/apps/v1/namespaces/default/replicasets", "replicasets", replicaset("rs")),
    ("/apis/apps/v1/namespaces/default/deployments", "deployments", deployment("web")),
    (
        "/apis/coordination.k8s.io/v1/namespaces/default/leases",
        "leases",
        {"metadata": {"name": "l"}, "spec": {"holderIdentity": "me", "leaseDurationSeconds": 10}},
    ),
    (
        "/apis/events.k8s.io/v1/namespaces/default/events",
        "events.k8s.io",
        {
            "metadata": {"name": "e2"},
            "regarding": {"kind": "Pod", "name": "p", "namespace": "default"},
            "reason": "Started",
            "note": "hi",
            "type": "Normal",
            "action": "Start",
            "reportingController": "peapod",
            "reportingInstance": "peapod-1",
            "eventTime": "2026-01-01T00:00:00.000000Z",
        },
    ),
]


@pytest.mark.parametrize(("base", "label", "obj"), SAMPLES, ids=[s[1] for s in SAMPLES])
async def test_crud_roundtrip(http: Any, base: str, label: str, obj: dict[str, Any]) -> None:
    body = copy.deepcopy(obj)
    body["metadata"].setdefault("labels", {})["t"] = "1"
    body.pop("apiVersion", None)  # the Python client may omit apiVersion/kind: taken from the URL
    body.pop("kind", None)
    name = body["metadata"]["name"]
    r = await call(http, "POST", base, body)
    assert r.status == 201, r
    created = r.json
    meta = created["metadata"]
    assert meta["uid"] and meta["creationTimestamp"] and int(meta["resourceVersion"]) > 0
    assert created["kind"] and created["apiVersion"]
    assert meta.get("managedFields"), "managedFields are maintained on create"

    r = await call(http, "POST", base, body)
    assert r.status == 409 and r.json["reason"] == "AlreadyExists", r

    r = await call(http, "GET", f"{base}/{name}")
    assert r.status == 200 and r.json["metadata"]["uid"] == meta["uid"]

    r = await call(http, "GET", base)
    assert r.status == 200
    listed = r.json
    assert listed["kind"].endswith("List") and listed["metadata"]["resourceVersion"]
    assert name in [i["metadata"]["name"] for i in listed["items"]]

    upd = copy.deepcopy(created)
    upd["metadata"]["labels"] = {"x": "y"}
    r = await call(http, "PUT", f"{base}/{name}", upd)
    assert r.status == 200, r
    updated = r.json
    assert updated["metadata"]["labels"]["x"] == "y" and "t" not in updated["metadata"]["labels"]
    assert updated["metadata"]["uid"] == meta["uid"]
    assert updated["metadata"]["creationTimestamp"] == meta["creationTimestamp"]
    assert int(updated["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])

    r = await call(http, "PUT", f"{base}/{name}", upd)  # stale resourceVersion
    assert r.status == 409 and r.json["reason"] == "Conflict", r
    assert "the object has been modified" in r.json["message"]

    r = await call(http, "DELETE", f"{base}/{name}")
    assert r.status == 200, r
    if label == "namespaces":
        assert r.json["status"]["phase"] == "Terminating"
        assert r.json["metadata"]["deletionTimestamp"]
        return
    r = await call(http, "GET", f"{base}/{name}")
    assert r.status == 404 and r.json["reason"] == "NotFound", r


async def test_unconditional_update_and_missing(http: Any) -> None:
    r = await call(http, "POST", f"{NS}/configmaps", configmap("c1", a="1"))
    assert r.status == 201
    body = configmap("c1", a="2")  # no resourceVersion: unconditional
    r = await call(http, "PUT", f"{NS}/configmaps/c1", body)
    assert r.status == 200 and r.json["data"] == {"a": "2"}
    r = await call(http, "PUT", f"{NS}/configmaps/nope", configmap("nope"))
    assert r.status == 404
    r = await call(http, "PUT", f"{NS}/configmaps/c1", configmap("other"))
    assert r.status == 400 and "does not match the name on the URL" in r.json["message"]


async def test_events_allow_create_on_update(http: Any) -> None:
    ev = {
        "metadata": {"name": "upd"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
        "reason": "X",
        "message": "m",
        "type": "Normal",
    }
    r = await call(http, "PUT", f"{NS}/events/upd", ev)
    assert r.status == 201, r


async def test_generation_and_status_rules(http: Any) -> None:
    base = "/apis/apps/v1/namespaces/default/deployments"
    body = deployment("gen", 1)
    body["status"] = {"replicas": 7}
    r = await call(http, "POST", base, body)
    assert r.status == 201, r
    d = r.json
    assert d["metadata"]["generation"] == 1
    assert d.get("status", {}).get("replicas") in (None, 0), "status is not settable on create"
    d["metadata"]["labels"] = {"only": "meta"}
    r = await call(http, "PUT", f"{base}/gen", d)
    assert r.status == 200 and r.json["metadata"]["generation"] == 1, "metadata changes keep generation"
    d = r.json
    d["spec"]["replicas"] = 3
    d["status"] = {"replicas": 99}
    r = await call(http, "PUT", f"{base}/gen", d)
    assert r.status == 200
    assert r.json["metadata"]["generation"] == 2
    assert r.json.get("status", {}).get("replicas") != 99, "status is ignored on the main resource"
    # status subresource changes only status
    d = r.json
    d["status"] = {"replicas": 3, "observedGeneration": 2}
    d["spec"]["replicas"] = 10
    r = await call(http, "PUT", f"{base}/gen/status", d)
    assert r.status == 200, r
    assert r.json["status"]["replicas"] == 3 and r.json["spec"]["replicas"] == 3
    assert r.json["metadata"]["generation"] == 2


async def test_noop_update_does_not_write(http: Any) -> None:
    r = await call(http, "POST", f"{NS}/configmaps", configmap("same", a="1"))
    rv = r.json["metadata"]["resourceVersion"]
    r = await call(http, "PUT", f"{NS}/configmaps/same", r.json)
    assert r.status == 200 and r.json["metadata"]["resourceVersion"] == rv


async def test_create_metadata(http: Any) -> None:
    body = configmap("")
    body["metadata"] = {"generateName": "gen-", "uid": "forged", "creationTimestamp": "2001-01-01T00:00:00Z"}
    r = await call(http, "POST", f"{NS}/configmaps", body)
    assert r.status == 201, r
    meta = r.json["metadata"]
    assert meta["name"].startswith("gen-") and len(meta["name"]) > 4
    assert meta["uid"] != "forged" and meta["creationTimestamp"] != "2001-01-01T00:00:00Z"
    r = await call(http, "POST", f"{NS}/configmaps", {"metadata": {}})
    assert r.status == 422 and r.json["details"]["causes"][0]["field"] == "metadata.name"
    body = configmap("rv")
    body["metadata"]["resourceVersion"] = "5"
    r = await call(http, "POST", f"{NS}/configmaps", body)
    assert r.status == 400
    r = await call(http, "POST", f"{NS}/configmaps", {**configmap("x"), "kind": "Secret"})
    assert r.status == 400
    r = await call(http, "POST", f"{NS}/configmaps", {**configmap("x"), "apiVersion": "apps/v1"})
    assert r.status == 400 and "does not match the expected API version" in r.json["message"]
    body = configmap("x")
    body["metadata"]["namespace"] = "kube-system"
    r = await call(http, "POST", f"{NS}/configmaps", body)
    assert r.status == 400 and "does not match the namespace" in r.json["message"]


async def test_pod_create_status(http: Any) -> None:
    r = await call(http, "POST", f"{NS}/pods", pod("st"))
    assert r.status == 201
    assert r.json["status"]["phase"] == "Pending"
    assert r.json["status"]["qosClass"] == "BestEffort"
    assert r.json["metadata"]["generation"] == 1


async def test_namespace_rules(http: Any, server: Any) -> None:
    r = await call(http, "POST", "/api/v1/namespaces/missing/configmaps", configmap("a"))
    assert r.status == 404 and r.json["message"] == 'namespaces "missing" not found'
    r = await call(http, "POST", "/api/v1/namespaces", {"metadata": {"name": "doomed"}})
    assert r.status == 201
    assert r.json["spec"]["finalizers"] == ["kubernetes"] and r.json["status"]["phase"] == "Active"
    r = await call(http, "GET", "/api/v1/namespaces/doomed/serviceaccounts/default")
    assert r.status == 200, "each namespace gets a default ServiceAccount"
    r = await call(http, "DELETE", "/api/v1/namespaces/doomed")
    assert r.status == 200 and r.json["status"]["phase"] == "Terminating"
    r = await call(http, "POST", "/api/v1/namespaces/doomed/configmaps", configmap("a"))
    assert r.status == 403 and r.json["reason"] == "Forbidden"
    assert (
        "unable to create new content in namespace doomed because it is being terminated" in r.json["message"]
    )
    r = await call(http, "DELETE", "/api/v1/namespaces/doomed")
    assert r.status == 409
    ns = (await call(http, "GET", "/api/v1/namespaces/doomed")).json
    ns["metadata"]["labels"] = {"still": "here"}
    r = await call(http, "PUT", "/api/v1/namespaces/doomed", ns)
    assert r.status == 200 and r.json["status"]["phase"] == "Terminating"
    # the namespace controller empties spec.finalizers via /finalize: the namespace is then removed
    ns = r.json
    ns["spec"]["finalizers"] = []
    r = await call(http, "PUT", "/api/v1/namespaces/doomed/finalize", ns)
    assert r.status == 200 and not r.json["spec"].get("finalizers"), r
    assert (await call(http, "GET", "/api/v1/namespaces/doomed")).status == 404
    r = await call(http, "DELETE", "/api/v1/namespaces/default")
    assert r.status == 403
    for ns_name in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert (await call(http, "GET", f"/api/v1/namespaces/{ns_name}")).status == 200


async def test_dry_run_does_not_persist(http: Any, server: Any) -> None:
    before = await server.dump()
    r = await call(http, "POST", f"{NS}/configmaps?dryRun=All", configmap("dry"))
    assert r.status == 201 and r.json["metadata"]["name"] == "dry"
    assert (await call(http, "GET", f"{NS}/configmaps/dry")).status == 404
    assert await server.dump() == before


async def test_field_validation_modes(http: Any, server: Any) -> None:
    body = pod("fv")
    body["spec"]["foo"] = 1
    before = await server.dump()
    r = await call(http, "POST", f"{NS}/pods?fieldValidation=Strict", body)
    assert r.status == 400 and r.json["reason"] == "BadRequest"
    assert r.json["message"] == 'strict decoding error: unknown field "spec.foo"'
    assert await server.dump() == before
    r = await call(http, "POST", f"{NS}/pods?fieldValidation=Warn", body)
    assert r.status == 201
    assert '299 - "unknown field \\"spec.foo\\""' in r.headers.getall("Warning")
    assert "foo" not in r.json["spec"]
    body["metadata"]["name"] = "fv2"
    r = await call(http, "POST", f"{NS}/pods?fieldValidation=Ignore", body)
    assert r.status == 201 and "Warning" not in r.headers and "foo" not in r.json["spec"]
    r = await call(http, "POST", f"{NS}/pods?fieldValidation=Bogus", body)
    assert r.status == 400


async def test_invalid_object_422(http: Any, server: Any) -> None:
    before = await server.dump()
    body = pod("bad")
    body["spec"]["containers"][0].pop("image")
    body["spec"]["containers"].append({"name": "c", "image": "x"})
    r = await call(http, "POST", f"{NS}/pods", body)
    assert r.status == 422, r
    status = r.json
    assert status["reason"] == "Invalid" and status["details"]["kind"] == "Pod"
    fields = {c["field"] for c in status["details"]["causes"]}
    assert "spec.containers[0].image" in fields
    assert status["message"].startswith('Pod "bad" is invalid: ')
    assert await server.dump() == before


async def test_wrong_types_400(http: Any, server: Any) -> None:
    before = await server.dump()
    body = pod("types")
    body["spec"]["containers"] = "nope"
    r = await call(http, "POST", f"{NS}/pods", body)
    assert r.status == 400, r
    assert 'Pod in version "v1" cannot be handled as a Pod' in r.json["message"]
    assert await server.dump() == before


async def test_self_subject_access_review(http: Any) -> None:
    body = {"spec": {"resourceAttributes": {"verb": "list", "resource": "pods", "namespace": "default"}}}
    r = await call(http, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body)
    assert r.status == 201, r
    assert r.json["status"]["allowed"] is True
    r = await call(http, "GET", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
    assert r.status == 405


async def test_unknown_paths_404(http: Any) -> None:
    for path in (
        "/api/v2/pods",
        "/api/v1/widgets",
        "/apis/apps/v1/namespaces/default/pods",
        "/api/v1/pods/x",
        "/api/v1/namespaces/default/nodes",
        "/api/v1/namespaces/default/pods/x/nope",
    ):
        r = await call(http, "GET", path)
        assert r.status == 404 and r.json["kind"] == "Status", (path, r)
