"""Content negotiation, Tables, protobuf bodies, discovery and OpenAPI routes, input limits."""

from __future__ import annotations

from typing import Any

from tests.integration.helpers import TABLE_ACCEPT, call, configmap, deployment, pod

NS = "/api/v1/namespaces/default"


async def test_table_output(http: Any) -> None:
    await call(http, "POST", f"{NS}/pods", pod("t1", labels={"a": "b"}))
    r = await call(http, "GET", f"{NS}/pods?limit=500", headers={"Accept": TABLE_ACCEPT})
    assert r.status == 200 and r.headers["Content-Type"].startswith("application/json;as=Table")
    t = r.json
    assert t["kind"] == "Table" and t["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in t["columnDefinitions"]][:2] == ["Name", "Ready"]
    assert t["rows"][0]["cells"][0] == "t1" and t["metadata"]["resourceVersion"]
    assert t["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    assert t["rows"][0]["object"]["metadata"]["labels"] == {"a": "b"}
    await call(http, "POST", "/apis/apps/v1/namespaces/default/deployments", deployment("d"))
    r = await call(
        http,
        "GET",
        "/apis/apps/v1/namespaces/default/deployments/d?includeObject=Object",
        headers={"Accept": TABLE_ACCEPT},
    )
    assert r.json["rows"][0]["cells"][0] == "d" and r.json["rows"][0]["object"]["kind"] == "Deployment"


def _varint(n: int) -> bytes:
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def _field(num: int, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


async def test_protobuf_create(http: Any) -> None:
    meta = _field(1, b"from-proto")  # ObjectMeta.name
    namespace = _field(1, meta)  # Namespace.metadata
    type_meta = _field(1, b"v1") + _field(2, b"Namespace")
    body = b"k8s\x00" + _field(1, type_meta) + _field(2, namespace)
    r = await call(
        http,
        "POST",
        "/api/v1/namespaces",
        raw=body,
        ctype="application/vnd.kubernetes.protobuf",
        headers={"Accept": "application/vnd.kubernetes.protobuf, application/json"},
    )
    assert r.status == 201, r
    assert r.headers["Content-Type"] == "application/json"
    assert r.json["metadata"]["name"] == "from-proto"
    r = await call(
        http,
        "POST",
        "/api/v1/namespaces",
        raw=b"k8s\x00\xff\xff",
        ctype="application/vnd.kubernetes.protobuf",
    )
    assert r.status == 400, r


async def test_discovery_and_openapi(http: Any) -> None:
    r = await call(http, "GET", "/version")
    assert r.json["major"] == "1" and r.json["minor"] == "33" and r.json["gitVersion"].startswith("v1.33")
    for path in ("/livez", "/readyz", "/healthz", "/readyz/ping"):
        assert (await call(http, "GET", path)).body == b"ok"
    assert (await call(http, "GET", "/api")).json["kind"] == "APIVersions"
    assert (await call(http, "GET", "/apis")).json["kind"] == "APIGroupList"
    pods = [r for r in (await call(http, "GET", "/api/v1")).json["resources"] if r["name"] == "pods"]
    assert pods and "watch" in pods[0]["verbs"]
    assert (await call(http, "GET", "/apis/apps/v1")).json["groupVersion"] == "apps/v1"
    assert (await call(http, "GET", "/apis/nope/v1")).status == 404
    for accept, version in (
        ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", "v2"),
        (
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json",
            "v2beta1",
        ),
    ):
        r = await call(http, "GET", "/apis", headers={"Accept": accept})
        assert r.json["kind"] == "APIGroupDiscoveryList"
        assert r.json["apiVersion"] == f"apidiscovery.k8s.io/{version}"
        assert f"v={version}" in r.headers["Content-Type"]
    r = await call(http, "GET", "/openapi/v2")
    assert r.status == 200 and r.json["swagger"] == "2.0"
    index = (await call(http, "GET", "/openapi/v3")).json
    url = index["paths"]["api/v1"]["serverRelativeURL"]
    r = await call(http, "GET", url)
    assert r.status == 200 and r.json["openapi"].startswith("3.")
    assert (await call(http, "GET", "/openapi/v3/apis/nope/v1")).status == 404


async def test_input_limits(http: Any, server: Any) -> None:
    before = await server.dump()
    big = configmap("big", blob="x" * (3 * 1024 * 1024 + 10))
    r = await call(http, "POST", f"{NS}/configmaps", big)
    assert r.status == 413, r
    for depth in (150, 100000):
        raw = b'{"metadata":{"name":"d"},"data":' + b"[" * depth + b"]" * depth + b"}"
        r = await call(http, "POST", f"{NS}/configmaps", raw=raw)
        assert r.status == 400, r
    r = await call(http, "POST", f"{NS}/configmaps", raw=b'{"metadata": ')
    assert r.status == 400 and r.json["message"].startswith("couldn't get version/kind; json parse error")
    r = await call(http, "POST", f"{NS}/configmaps", raw=b"[1,2]")
    assert r.status == 400
    r = await call(http, "POST", f"{NS}/configmaps", raw=b'{"metadata":{"name":"n"},"data":{"a":NaN}}')
    assert r.status == 400
    r = await call(http, "POST", f"{NS}/configmaps", raw=b"\xff\xfe")
    assert r.status == 400
    r = await call(http, "POST", f"{NS}/configmaps", {"metadata": {"name": "a/b"}})
    assert r.status == 422
    assert await server.dump() == before
