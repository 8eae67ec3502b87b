import hashlib
import json

import pytest

from peapod.api.resources import REGISTRY
from peapod.apiserver import openapi


def _walk(node, path=""):
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from _walk(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}/{i}")


@pytest.fixture(scope="module")
def v2():
    return json.loads(openapi.openapi_v2())


@pytest.fixture(scope="module")
def core_v3():
    return json.loads(openapi.openapi_v3_document("api/v1"))


def _check_schema_dialect(doc, prefix):
    for path, node in _walk(doc):
        ref = node.get("$ref")
        if isinstance(ref, str):
            assert ref.startswith(prefix), (path, ref)
        t = node.get("type")
        if (
            "/properties/" in path
            or path.endswith("/items")
            or "/schemas/" in path
            or "/definitions/" in path
        ):
            assert not isinstance(t, list), (path, t)
        if "oneOf" in node:
            assert prefix.startswith("#/components/") and path.rsplit("/", 1)[-1] in (
                "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
                "io.k8s.apimachinery.pkg.api.resource.Quantity",
            ), path


def test_v2_is_swagger_with_resolvable_refs(v2):
    assert v2["swagger"] == "2.0"
    defs = v2["definitions"]
    _check_schema_dialect(v2, "#/definitions/")
    for _, node in _walk(v2):
        ref = node.get("$ref")
        if isinstance(ref, str):
            assert ref[len("#/definitions/") :] in defs, ref
    # only what served kinds reach, but everything they reach
    assert "io.k8s.api.core.v1.Pod" in defs and "io.k8s.api.core.v1.PodList" in defs
    assert (
        "io.k8s.api.autoscaling.v1.Scale" in defs
        and "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent" in defs
    )
    assert "io.k8s.api.storage.v1.StorageClass" not in defs
    assert len(defs) < 400


def test_schema_conversion(v2):
    defs = v2["definitions"]
    pod = defs["io.k8s.api.core.v1.Pod"]
    assert pod["type"] == "object"
    assert pod["x-kubernetes-group-version-kind"] == [{"group": "", "kind": "Pod", "version": "v1"}]
    assert "enum" not in pod["properties"]["apiVersion"]
    assert pod["properties"]["spec"]["$ref"] == "#/definitions/io.k8s.api.core.v1.PodSpec"
    containers = defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert containers["items"] == {"$ref": "#/definitions/io.k8s.api.core.v1.Container"}
    assert defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"] == "int-or-string"
    assert defs["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"] == "string"
    assert defs["io.k8s.apimachinery.pkg.apis.meta.v1.Time"] == {
        "description": defs["io.k8s.apimachinery.pkg.apis.meta.v1.Time"]["description"],
        "format": "date-time",
        "type": "string",
    }


def _patch_op(paths, gvk):
    for item in paths.values():
        op = item.get("patch")
        if op and op["x-kubernetes-group-version-kind"] == gvk:
            return op
    return None


@pytest.mark.parametrize("r", REGISTRY.resources, ids=lambda r: f"{r.group}/{r.resource}")
def test_every_patchable_kind_declares_field_validation(v2, r):
    gvk = {"group": r.group, "kind": r.kind, "version": r.version}
    op = _patch_op(v2["paths"], gvk)
    if "patch" not in r.verbs:
        assert op is None
        return
    names = {p["name"] for p in op["parameters"] if p["in"] == "query"}
    assert {"fieldValidation", "dryRun", "fieldManager", "force"} <= names
    assert op["x-kubernetes-action"] == "patch"
    assert set(op["consumes"]) == {
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    }


def test_v2_paths(v2):
    paths = v2["paths"]
    item = paths["/api/v1/namespaces/{namespace}/pods/{name}"]
    assert set(item) == {"get", "put", "delete", "patch", "parameters"}
    assert item["get"]["operationId"] == "readCoreV1NamespacedPod"
    assert item["get"]["responses"]["200"]["schema"] == {"$ref": "#/definitions/io.k8s.api.core.v1.Pod"}
    coll = paths["/apis/apps/v1/namespaces/{namespace}/deployments"]
    assert coll["post"]["x-kubernetes-action"] == "post"
    assert {p["name"] for p in coll["post"]["parameters"]} >= {"body", "fieldValidation", "dryRun"}
    assert coll["get"]["x-kubernetes-action"] == "list"
    assert coll["get"]["responses"]["200"]["schema"]["$ref"].endswith("apps.v1.DeploymentList")
    scale = paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"]
    assert scale["x-kubernetes-group-version-kind"] == {
        "group": "autoscaling",
        "kind": "Scale",
        "version": "v1",
    }
    assert "/api/v1/pods" in paths and "/api/v1/nodes/{name}/status" in paths
    assert (
        paths["/api/v1/namespaces/{namespace}/pods/{name}/exec"]["post"]["x-kubernetes-action"] == "connect"
    )
    ssar = paths["/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"]
    assert set(ssar) == {"post", "parameters"}


def test_v3_index_and_hashes():
    index = openapi.openapi_v3_index()
    assert set(index["paths"]) == {
        "api/v1",
        "apis/apps/v1",
        "apis/events.k8s.io/v1",
        "apis/authorization.k8s.io/v1",
        "apis/coordination.k8s.io/v1",
        "apis/metrics.k8s.io/v1beta1",
        "apis/rbac.authorization.k8s.io/v1",
    }
    for path, entry in index["paths"].items():
        url = entry["serverRelativeURL"]
        assert url.startswith(f"/openapi/v3/{path}?hash=")
        body = openapi.openapi_v3_document(path)
        assert url.split("hash=")[1] == hashlib.sha512(body).hexdigest().upper()
        assert openapi.openapi_v3_hash(path) == url.split("hash=")[1]
    assert openapi.openapi_v3_document("apis/autoscaling/v1") is None
    assert openapi.openapi_v3_document("/api/v1/") == openapi.openapi_v3_document("api/v1")


def test_v3_document(core_v3):
    assert core_v3["openapi"].startswith("3.0")
    schemas = core_v3["components"]["schemas"]
    _check_schema_dialect(core_v3, "#/components/schemas/")
    for _, node in _walk(core_v3):
        ref = node.get("$ref")
        if isinstance(ref, str):
            assert ref[len("#/components/schemas/") :] in schemas, ref
    # described refs are wrapped in allOf, like kube's v3 documents
    spec = schemas["io.k8s.api.core.v1.Pod"]["properties"]["spec"]
    assert spec["allOf"] == [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}]
    assert spec["description"]
    assert "io.k8s.api.apps.v1.Deployment" not in schemas  # per group/version documents
    assert schemas["io.k8s.apimachinery.pkg.api.resource.Quantity"]["oneOf"] == [
        {"type": "string"},
        {"type": "number"},
    ]
    op = _patch_op(core_v3["paths"], {"group": "", "kind": "Pod", "version": "v1"})
    fv = next(p for p in op["parameters"] if p["name"] == "fieldValidation")
    assert fv["in"] == "query" and fv["schema"]["type"] == "string"
    assert "application/strategic-merge-patch+json" in op["requestBody"]["content"]
    ok = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/io.k8s.api.core.v1.Pod"}


def test_apps_v3_has_scale_and_deployment():
    doc = json.loads(openapi.openapi_v3_document("apis/apps/v1"))
    schemas = doc["components"]["schemas"]
    assert "io.k8s.api.apps.v1.Deployment" in schemas and "io.k8s.api.autoscaling.v1.Scale" in schemas
    assert "io.k8s.api.core.v1.PodSpec" in schemas
    assert _patch_op(doc["paths"], {"group": "autoscaling", "kind": "Scale", "version": "v1"}) is not None


def test_documents_are_cached():
    assert openapi.openapi_v2() is openapi.openapi_v2()
    assert openapi.openapi_v3_document("api/v1") is openapi.openapi_v3_document("api/v1")


def test_v2_protobuf_negotiation():
    assert openapi.wants_v2_protobuf("application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
    assert not openapi.wants_v2_protobuf("application/json")
    assert not openapi.wants_v2_protobuf(None)
    body = openapi.openapi_v2_protobuf()
    assert body == b"\n\x032.0"  # Document{swagger: "2.0"}
