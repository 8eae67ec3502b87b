"""PATCH: JSON patch, merge patch, strategic merge patch, server-side apply; status subresource."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.helpers import (
    CT_APPLY,
    CT_JSON_PATCH,
    CT_MERGE,
    CT_STRATEGIC,
    call,
    configmap,
    deployment,
    pod,
)

NS = "/api/v1/namespaces/default"
DEP = "/apis/apps/v1/namespaces/default/deployments"


async def test_three_patch_types(http: Any, server: Any) -> None:
    assert (await call(http, "POST", f"{NS}/configmaps", configmap("cm", a="1"))).status == 201
    r = await call(http, "PATCH", f"{NS}/configmaps/cm", {"data": {"b": "2", "a": None}}, ctype=CT_MERGE)
    assert r.status == 200 and r.json["data"] == {"b": "2"}, r
    r = await call(
        http,
        "PATCH",
        f"{NS}/configmaps/cm",
        [{"op": "add", "path": "/data/c", "value": "3"}],
        ctype=CT_JSON_PATCH,
    )
    assert r.status == 200 and r.json["data"] == {"b": "2", "c": "3"}, r
    before = await server.dump()
    r = await call(
        http,
        "PATCH",
        f"{NS}/configmaps/cm",
        [{"op": "test", "path": "/data/c", "value": "9"}],
        ctype=CT_JSON_PATCH,
    )
    assert 400 <= r.status < 500, r
    r = await call(
        http, "PATCH", f"{NS}/configmaps/cm", [{"op": "remove", "path": "/nope/x"}], ctype=CT_JSON_PATCH
    )
    assert 400 <= r.status < 500, r
    r = await call(http, "PATCH", f"{NS}/configmaps/cm", {"data": {}}, ctype=CT_JSON_PATCH)
    assert r.status == 400, r
    r = await call(http, "PATCH", f"{NS}/configmaps/cm", raw=b"{not json", ctype=CT_MERGE)
    assert r.status == 400, r
    r = await call(http, "PATCH", f"{NS}/configmaps/cm", {"data": {}}, ctype="text/plain")
    assert r.status == 415, r
    assert await server.dump() == before

    assert (await call(http, "POST", f"{NS}/pods", pod("p", labels={"a": "b"}))).status == 201
    smp = {
        "metadata": {"labels": {"x": "y"}},
        "spec": {
            "$setElementOrder/containers": [{"name": "c"}],
            "containers": [{"name": "c", "image": "busybox:2"}],
        },
    }
    r = await call(http, "PATCH", f"{NS}/pods/p", smp, ctype=CT_STRATEGIC)
    assert r.status == 200, r
    assert r.json["metadata"]["labels"] == {"a": "b", "x": "y"}
    assert r.json["spec"]["containers"][0]["image"] == "busybox:2"


async def test_patch_precondition_and_missing(http: Any) -> None:
    r = await call(http, "POST", f"{NS}/configmaps", configmap("cm"))
    rv = r.json["metadata"]["resourceVersion"]
    await call(http, "PATCH", f"{NS}/configmaps/cm", {"data": {"a": "1"}}, ctype=CT_MERGE)
    r = await call(
        http,
        "PATCH",
        f"{NS}/configmaps/cm",
        {"metadata": {"resourceVersion": rv}, "data": {"b": "1"}},
        ctype=CT_MERGE,
    )
    assert r.status == 409, r
    r = await call(http, "PATCH", f"{NS}/configmaps/missing", {"data": {}}, ctype=CT_MERGE)
    assert r.status == 404


async def test_patch_strict_unknown_field(http: Any) -> None:
    await call(http, "POST", f"{NS}/configmaps", configmap("cm"))
    r = await call(http, "PATCH", f"{NS}/configmaps/cm?fieldValidation=Strict", {"bogus": 1}, ctype=CT_MERGE)
    assert r.status == 400 and 'unknown field "bogus"' in r.json["message"], r


async def test_server_side_apply(http: Any) -> None:
    body = deployment("web", 2)
    r = await call(http, "PATCH", f"{DEP}/web?fieldManager=alice", body, ctype=CT_APPLY)
    assert r.status == 201, r
    managers = {m["manager"]: m for m in r.json["metadata"]["managedFields"]}
    assert managers["alice"]["operation"] == "Apply"
    assert r.json["metadata"]["generation"] == 1

    body["spec"]["replicas"] = 3
    r = await call(http, "PATCH", f"{DEP}/web?fieldManager=alice", body, ctype=CT_APPLY)
    assert r.status == 200 and r.json["spec"]["replicas"] == 3 and r.json["metadata"]["generation"] == 2

    other = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 5},
    }
    r = await call(http, "PATCH", f"{DEP}/web?fieldManager=bob", other, ctype=CT_APPLY)
    assert r.status == 409 and r.json["reason"] == "Conflict", r
    assert "alice" in r.json["message"]
    r = await call(http, "PATCH", f"{DEP}/web?fieldManager=bob&force=true", other, ctype=CT_APPLY)
    assert r.status == 200 and r.json["spec"]["replicas"] == 5

    yaml_body = b"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels:\n    team: x\n"
    r = await call(http, "PATCH", f"{DEP}/web?fieldManager=carol", raw=yaml_body, ctype=CT_APPLY)
    assert r.status == 200 and r.json["metadata"]["labels"] == {"team": "x"}, r

    r = await call(http, "PATCH", f"{DEP}/web", other, ctype=CT_APPLY)
    assert r.status == 400 and "fieldManager is required" in r.json["message"]


async def test_status_patch_only_changes_status(http: Any) -> None:
    await call(http, "POST", f"{NS}/pods", pod("p"))
    patch = {
        "status": {"phase": "Running"},
        "metadata": {"labels": {"sneaky": "1"}},
        "spec": {"activeDeadlineSeconds": 5},
    }
    r = await call(http, "PATCH", f"{NS}/pods/p/status", patch, ctype=CT_MERGE)
    assert r.status == 200, r
    assert r.json["status"]["phase"] == "Running"
    assert "sneaky" not in (r.json["metadata"].get("labels") or {})
    assert "activeDeadlineSeconds" not in r.json["spec"]
    r = await call(http, "PATCH", f"{NS}/pods/p", {"status": {"phase": "Failed"}}, ctype=CT_MERGE)
    assert r.json["status"]["phase"] == "Running", "status ignored on the main resource"
    r = await call(http, "GET", f"{NS}/pods/p/status")
    assert r.status == 200 and r.json["status"]["phase"] == "Running"


async def test_yaml_request_body(http: Any) -> None:
    body = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fromyaml\ndata:\n  k: v\n"
    r = await call(http, "POST", f"{NS}/configmaps", raw=body, ctype="application/yaml")
    assert r.status == 201 and r.json["data"] == {"k": "v"}, r
    r = await call(http, "GET", f"{NS}/configmaps/fromyaml", headers={"Accept": "application/yaml"})
    assert r.status == 200 and r.headers["Content-Type"].startswith("application/yaml")
    assert b"name: fromyaml" in r.body
    r = await call(http, "POST", f"{NS}/configmaps", raw=b"a: &x [*x]", ctype="application/yaml")
    assert r.status == 400
    r = await call(
        http, "POST", f"{NS}/configmaps", raw=json.dumps(configmap("t")).encode(), ctype="text/plain"
    )
    assert r.status == 415
