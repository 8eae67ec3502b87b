"""LIST: selectors, paging with continue tokens, resourceVersion semantics."""

from __future__ import annotations

from typing import Any

from tests.integration.helpers import call, configmap, pod

NS = "/api/v1/namespaces/default"


async def _make(http: Any, n: int) -> None:
    for i in range(n):
        body = configmap(f"cm{i:02d}")
        body["metadata"]["labels"] = {"parity": "even" if i % 2 == 0 else "odd"}
        assert (await call(http, "POST", f"{NS}/configmaps", body)).status == 201


async def test_paging(http: Any) -> None:
    await _make(http, 7)
    names: list[str] = []
    r = await call(http, "GET", f"{NS}/configmaps?limit=3")
    first_rv = r.json["metadata"]["resourceVersion"]
    # a write between pages does not show up: pages are read at the first page's revision
    await call(http, "POST", f"{NS}/configmaps", configmap("cm99"))
    while True:
        page = r.json
        assert len(page["items"]) <= 3
        names += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue")
        assert page["metadata"]["resourceVersion"] == first_rv
        if not token:
            break
        r = await call(http, "GET", f"{NS}/configmaps?limit=3&continue={token}")
        assert r.status == 200, r
    assert names == [f"cm{i:02d}" for i in range(7)]
    r = await call(http, "GET", f"{NS}/configmaps?limit=3&continue=garbage")
    assert r.status == 400


async def test_paging_with_selector(http: Any) -> None:
    await _make(http, 9)
    names: list[str] = []
    url = f"{NS}/configmaps?limit=2&labelSelector=parity%3Dodd"
    r = await call(http, "GET", url)
    while True:
        names += [i["metadata"]["name"] for i in r.json["items"]]
        token = r.json["metadata"].get("continue")
        if not token:
            break
        r = await call(http, "GET", f"{url}&continue={token}")
    assert names == ["cm01", "cm03", "cm05", "cm07"]


async def test_selectors(http: Any) -> None:
    await call(http, "POST", f"{NS}/pods", pod("a", labels={"app": "x", "tier": "web"}))
    await call(http, "POST", f"{NS}/pods", pod("b", labels={"app": "y"}))
    r = await call(http, "GET", f"{NS}/pods?labelSelector=app%3Dx")
    assert [i["metadata"]["name"] for i in r.json["items"]] == ["a"]
    r = await call(http, "GET", f"{NS}/pods?labelSelector=app%20in%20(x,y),!tier")
    assert [i["metadata"]["name"] for i in r.json["items"]] == ["b"]
    r = await call(http, "GET", "/api/v1/pods?fieldSelector=metadata.name%3Db")
    assert [i["metadata"]["name"] for i in r.json["items"]] == ["b"]
    r = await call(http, "GET", f"{NS}/pods?fieldSelector=metadata.namespace%3Ddefault,metadata.name!%3Da")
    assert [i["metadata"]["name"] for i in r.json["items"]] == ["b"]
    r = await call(http, "GET", f"{NS}/pods?labelSelector=%3D%3D%3D")
    assert r.status == 400, r
    r = await call(http, "GET", f"{NS}/pods?fieldSelector=spec.bogus%3D1")
    assert r.status == 400, r


async def test_resource_version_semantics(http: Any) -> None:
    r = await call(http, "POST", f"{NS}/configmaps", configmap("v1"))
    rv1 = int(r.json["metadata"]["resourceVersion"])
    await call(http, "POST", f"{NS}/configmaps", configmap("v2"))
    r = await call(http, "GET", f"{NS}/configmaps?resourceVersion={rv1}&resourceVersionMatch=Exact")
    assert r.status == 200 and [i["metadata"]["name"] for i in r.json["items"]] == ["v1"]
    assert r.json["metadata"]["resourceVersion"] == str(rv1)
    r = await call(http, "GET", f"{NS}/configmaps?resourceVersion=0")
    assert len(r.json["items"]) == 2
    r = await call(http, "GET", f"{NS}/configmaps?resourceVersion={rv1}&resourceVersionMatch=NotOlderThan")
    assert len(r.json["items"]) == 2
    r = await call(http, "GET", f"{NS}/configmaps?resourceVersion=999999&resourceVersionMatch=NotOlderThan")
    assert r.status == 504, r
    r = await call(http, "GET", f"{NS}/configmaps?resourceVersionMatch=Exact")
    assert r.status == 400
    r = await call(http, "GET", f"{NS}/configmaps?resourceVersion=abc")
    assert r.status == 400
    r = await call(http, "GET", f"{NS}/configmaps?limit=-1")
    assert r.status == 400


async def test_cluster_wide_list_and_partial_metadata(http: Any) -> None:
    await call(http, "POST", f"{NS}/configmaps", configmap("here"))
    await call(http, "POST", "/api/v1/namespaces/kube-system/configmaps", configmap("there"))
    r = await call(http, "GET", "/api/v1/configmaps")
    assert {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in r.json["items"]} >= {
        ("default", "here"),
        ("kube-system", "there"),
    }
    accept = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"
    r = await call(http, "GET", "/api/v1/configmaps", headers={"Accept": accept})
    assert r.json["kind"] == "PartialObjectMetadataList" and r.json["apiVersion"] == "meta.k8s.io/v1"
    assert all(set(i) == {"kind", "apiVersion", "metadata"} for i in r.json["items"])
    accept = "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io,application/json"
    r = await call(http, "GET", f"{NS}/configmaps/here", headers={"Accept": accept})
    assert r.json["kind"] == "PartialObjectMetadata" and r.json["metadata"]["name"] == "here"


async def test_expired_continue_token_410(http: Any, server: Any) -> None:
    await _make(http, 4)
    r = await call(http, "GET", f"{NS}/configmaps?limit=2")
    token = r.json["metadata"]["continue"]
    await call(
        http, "PATCH", f"{NS}/configmaps/cm00", {"data": {"x": "1"}}, ctype="application/merge-patch+json"
    )
    store = server.store
    server.call(store.compact(server.call(store.current_revision())))
    r = await call(http, "GET", f"{NS}/configmaps?limit=2&continue={token}")
    assert r.status == 410 and r.json["reason"] == "Expired", r
    r = await call(http, "GET", f"{NS}/configmaps?resourceVersion=2&resourceVersionMatch=Exact")
    assert r.status == 410, r
