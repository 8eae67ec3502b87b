"""Random requests never produce a 5xx, and a rejected request never changes stored state."""

from __future__ import annotations

import json
from typing import Any

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.helpers import configmap, deployment, pod


def _not_server_error(r: requests.Response) -> bool:
    """No 5xx, except kube's 504 for a resourceVersion newer than the store (a client-go contract)."""
    if r.status_code == 504:
        causes = r.json().get("details", {}).get("causes", [])
        return [c["reason"] for c in causes] == ["ResourceVersionTooLarge"]
    return r.status_code < 500


RESOURCES = [
    "pods",
    "configmaps",
    "secrets",
    "events",
    "serviceaccounts",
    "nodes",
    "namespaces",
    "widgets",
    "",
]
APPS = ["deployments", "replicasets"]
SUBS = ["status", "scale", "binding", "finalize", "ephemeralcontainers", "token", "bogus", ""]
NAMES = ["p", "cm", "web", "default", "x", "", "..", "a%2Fb", "%00", "ü"]
CTYPES = [
    "application/json",
    "application/yaml",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/json-patch+json",
    "application/apply-patch+yaml",
    "application/vnd.kubernetes.protobuf",
    "text/plain",
    "",
    "application/json; charset=utf-8",
]
QUERY_KEYS = [
    "labelSelector",
    "fieldSelector",
    "limit",
    "continue",
    "resourceVersion",
    "resourceVersionMatch",
    "fieldManager",
    "fieldValidation",
    "dryRun",
    "force",
    "gracePeriodSeconds",
    "propagationPolicy",
    "includeObject",
    "orphanDependents",
    "sendInitialEvents",
    "allowWatchBookmarks",
]
ACCEPTS = [
    "application/json",
    "application/yaml",
    "application/json;as=Table;v=v1;g=meta.k8s.io",
    "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
    "*/*",
    "text/html",
    "",
]

TEMPLATES = [
    "/api/v1/namespaces/default/{r}",
    "/api/v1/namespaces/default/{r}/{n}",
    "/api/v1/namespaces/default/{r}/{n}/{s}",
    "/api/v1/{r}",
    "/api/v1/{r}/{n}",
    "/api/v1/{r}/{n}/{s}",
    "/api/v1/watch/namespaces/{n}/{r}",
    "/apis/apps/v1/namespaces/default/{a}",
    "/apis/apps/v1/namespaces/default/{a}/{n}",
    "/apis/apps/v1/namespaces/default/{a}/{n}/{s}",
    "/apis/apps/v1/{a}",
    "/apis/events.k8s.io/v1/namespaces/default/events",
    "/apis/events.k8s.io/v1/namespaces/default/events/{n}",
    "/apis/coordination.k8s.io/v1/namespaces/{n}/leases/{n}",
    "/apis/authorization.k8s.io/v1/{r}",
    "/api/v1/namespaces/{n}",
    "/api/v1/namespaces/{n}/{s}",
    "/api/v1/namespaces/{n}/{r}/{n}",
]
SEEDED = ["p", "cm", "web", "rs", "s", "n1", "e", "default", "kube-system"]
segment = st.one_of(
    st.sampled_from(SEEDED),
    st.sampled_from(NAMES),
    st.text(min_size=1, max_size=8).map(lambda s: requests.utils.quote(s, safe="")),
)


@st.composite
def paths(draw: st.DrawFn) -> str:
    template = draw(st.sampled_from(TEMPLATES))
    return template.format(
        r=draw(st.sampled_from([*RESOURCES, "selfsubjectaccessreviews"])),
        a=draw(st.sampled_from(APPS)),
        n=draw(segment),
        s=draw(st.sampled_from(SUBS)),
    ).replace("//", "/")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)

FIELDS = [
    "metadata",
    "spec",
    "status",
    "data",
    "apiVersion",
    "kind",
    "name",
    "labels",
    "containers",
    "replicas",
    "finalizers",
    "resourceVersion",
    "uid",
    "target",
    "op",
    "path",
    "value",
    "selector",
    "$patch",
    "$setElementOrder/containers",
    "image",
    "nodeName",
    "generateName",
    "namespace",
    "preconditions",
]


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """A valid object with random fields replaced: reaches deeper than pure noise."""
    obj = draw(
        st.sampled_from(
            [
                pod("p"),
                configmap("cm", a="1"),
                deployment("web"),
                {"target": {"name": "n"}, "metadata": {"name": "p"}},
            ]
        )
    )
    obj = json.loads(json.dumps(obj))
    for _ in range(draw(st.integers(1, 4))):
        node = obj
        for _ in range(draw(st.integers(0, 3))):
            if isinstance(node, dict) and node:
                node = node[draw(st.sampled_from(sorted(node)))]
            elif isinstance(node, list) and node:
                node = node[draw(st.integers(0, len(node) - 1))]
        if isinstance(node, dict):
            node[draw(st.sampled_from(FIELDS))] = draw(json_values)
    return obj


json_patches = st.lists(
    st.fixed_dictionaries(
        {
            "op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "bogus"]),
            "path": st.sampled_from(
                [
                    "/metadata/labels/a",
                    "/spec/replicas",
                    "/data/x",
                    "/",
                    "",
                    "/spec/containers/0",
                    "/spec/containers/-",
                    "/metadata",
                    "/kind",
                    "/metadata/name",
                    "~1x",
                ]
            ),
        },
        optional={"value": json_values, "from": st.sampled_from(["/data", "/spec", "/nope"])},
    ),
    max_size=3,
)

bodies = st.one_of(
    st.none(),
    st.binary(max_size=64),
    json_values.map(lambda v: json.dumps(v).encode()),
    mutated().map(lambda v: json.dumps(v).encode()),
    json_patches.map(lambda v: json.dumps(v).encode()),
    st.builds(
        lambda prefix, tail: prefix + tail,
        st.sampled_from([b"k8s\x00", b"k8s\x00\x0a\x02"]),
        st.binary(max_size=32),
    ),
)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
    path=paths(),
    query=st.dictionaries(
        st.sampled_from(QUERY_KEYS),
        st.text(max_size=12)
        | st.sampled_from(
            [
                "1",
                "0",
                "-1",
                "true",
                "All",
                "Strict",
                "Exact",
                "NotOlderThan",
                "Orphan",
                "a=b",
                "x!=y",
                "app in (web)",
                "metadata.name=p",
                "spec.nodeName=",
                "status.phase!=Running",
                "abc",
            ]
        ),
        max_size=4,
    ),
    ctype=st.sampled_from(CTYPES),
    accept=st.sampled_from(ACCEPTS),
    body=bodies,
)
def test_random_requests(
    server: Any,
    seeded: None,
    method: str,
    path: str,
    query: dict[str, str],
    ctype: str,
    accept: str,
    body: bytes | None,
) -> None:
    before = server.call(server._dump())
    headers = {"Accept": accept}
    if ctype:
        headers["Content-Type"] = ctype
    if "watch" in path or (method == "GET" and query.get("watch")):
        query["timeoutSeconds"] = "0"
    r = requests.request(method, server.url + path, params=query, data=body, headers=headers, timeout=30)
    assert _not_server_error(r), (method, path, query, ctype, body, r.status_code, r.text[:500])
    if r.status_code >= 400:
        assert server.call(server._dump()) == before, (method, path, query, body, r.text[:300])
        if r.headers.get("Content-Type", "").startswith("application/json"):
            status = r.json()
            assert status["kind"] == "Status" and status["code"] == r.status_code


def _seed(server: Any) -> None:
    s = requests.Session()
    core = server.url + "/api/v1/namespaces/default"
    bound = pod("p", labels={"app": "web"})
    bound["metadata"]["finalizers"] = ["example.com/keep"]
    for url, body in [
        (f"{core}/pods", bound),
        (f"{core}/configmaps", configmap("cm", a="1")),
        (f"{server.url}/apis/apps/v1/namespaces/default/deployments", deployment("web")),
        (
            f"{server.url}/apis/apps/v1/namespaces/default/replicasets",
            {**deployment("rs"), "kind": "ReplicaSet"},
        ),
        (f"{core}/secrets", {"metadata": {"name": "s"}, "data": {"k": "dg=="}}),
        (f"{server.url}/api/v1/nodes", {"metadata": {"name": "n1"}}),
        (f"{core}/events", {"metadata": {"name": "e"}, "involvedObject": {"name": "p"}, "reason": "R"}),
    ]:
        r = s.post(url, json=body, timeout=10)
        assert r.status_code == 201, r.text


import pytest  # noqa: E402


@pytest.fixture
def seeded(server: Any) -> None:
    _seed(server)


LIST_PATHS = [
    "/api/v1/namespaces/default/configmaps",
    "/api/v1/pods",
    "/api/v1/namespaces/default/pods",
    "/apis/apps/v1/deployments",
    "/api/v1/namespaces/default/events",
    "/apis/events.k8s.io/v1/namespaces/default/events",
    "/api/v1/nodes",
    "/api/v1/namespaces",
]
OBJECT_PATHS = [
    "/api/v1/namespaces/default/pods/p",
    "/api/v1/namespaces/default/pods/p/status",
    "/api/v1/namespaces/default/pods/p/binding",
    "/api/v1/namespaces/default/configmaps/cm",
    "/apis/apps/v1/namespaces/default/deployments/web",
    "/apis/apps/v1/namespaces/default/deployments/web/scale",
    "/apis/apps/v1/namespaces/default/deployments/web/status",
    "/api/v1/namespaces/default/events/e",
    "/api/v1/namespaces/default",
    "/api/v1/namespaces/default/finalize",
    "/api/v1/nodes/n1",
]


def _check(
    server: Any, method: str, path: str, query: dict[str, str], ctype: str, body: bytes | None
) -> None:
    before = server.call(server._dump())
    headers = {"Content-Type": ctype} if ctype else {}
    r = requests.request(method, server.url + path, params=query, data=body, headers=headers, timeout=30)
    assert _not_server_error(r), (method, path, query, ctype, body, r.status_code, r.text[:500])
    if r.status_code >= 400:
        assert server.call(server._dump()) == before, (method, path, query, body, r.text[:300])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(LIST_PATHS),
    watch=st.booleans(),
    query=st.dictionaries(
        st.sampled_from(QUERY_KEYS),
        st.text(max_size=16)
        | st.sampled_from(
            [
                "1",
                "0",
                "-1",
                "true",
                "Exact",
                "NotOlderThan",
                "a=b",
                "x!=y",
                "app in (web)",
                "app",
                "!app",
                "metadata.name=p",
                "spec.nodeName=",
                "status.phase!=Running",
                "involvedObject.name=p",
                "abc",
                "a==b",
                "a in (",
                "=",
                ",",
            ]
        ),
        max_size=4,
    ),
)
def test_random_list_queries(
    server: Any, seeded: None, path: str, watch: bool, query: dict[str, str]
) -> None:
    if watch:
        query = {**query, "watch": "true", "timeoutSeconds": "0"}
    _check(server, "GET", path, query, "", None)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["POST", "PUT", "PATCH", "DELETE"]),
    path=st.sampled_from(OBJECT_PATHS),
    ctype=st.sampled_from(CTYPES),
    body=bodies,
    query=st.dictionaries(
        st.sampled_from(
            ["fieldManager", "fieldValidation", "force", "dryRun", "gracePeriodSeconds", "propagationPolicy"]
        ),
        st.sampled_from(["fuzz", "Strict", "true", "All", "0", "Orphan"]),
        max_size=3,
    ),
)
def test_random_writes(
    server: Any, seeded: None, method: str, path: str, ctype: str, body: bytes | None, query: dict[str, str]
) -> None:
    _check(server, method, path, query, ctype, body)
