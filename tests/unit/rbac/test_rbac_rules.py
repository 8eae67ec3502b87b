"""RBAC rule and subject matching, the authorizer over a loaded cache, and the authorization chain."""

from __future__ import annotations

from typing import Any

import pytest

from peapod.apiserver import rbac_defaults
from peapod.apiserver.authz import Attributes, Authorizer, forbidden
from peapod.apiserver.rbac import RBACAuthorizer, RBACCache, Request, rule_allows, subject_applies


def req(verb: str, resource: str = "", sub: str = "", name: str = "", group: str = "", ns: str = "",
        path: str | None = None, user: str = "u", groups: tuple[str, ...] = ()) -> Request:
    return Request(user, groups, verb, group, resource, sub, ns, name, path)


POD_READER = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}

RULE_CASES: list[tuple[str, dict[str, Any], Request, bool]] = [
    ("exact", POD_READER, req("get", "pods"), True),
    ("other verb", POD_READER, req("delete", "pods"), False),
    ("other group", POD_READER, req("get", "pods", group="apps"), False),
    ("subresource not implied", POD_READER, req("get", "pods", "log"), False),
    ("subresource named", {**POD_READER, "resources": ["pods/log"]}, req("get", "pods", "log"), True),
    ("subresource rule not parent", {**POD_READER, "resources": ["pods/log"]}, req("get", "pods"), False),
    ("star resource covers subresources", {**POD_READER, "resources": ["*"]}, req("get", "pods", "log"), True),
    ("*/sub", {**POD_READER, "resources": ["*/scale"]}, req("get", "deployments", "scale", group=""), True),
    ("*/sub not other", {**POD_READER, "resources": ["*/scale"]}, req("get", "deployments", "status"), False),
    ("star verb", {**POD_READER, "verbs": ["*"]}, req("watch", "pods"), True),
    ("star group", {**POD_READER, "apiGroups": ["*"]}, req("get", "pods", group="x.io"), True),
    ("resourceNames hit", {**POD_READER, "resourceNames": ["a"]}, req("get", "pods", name="a"), True),
    ("resourceNames miss", {**POD_READER, "resourceNames": ["a"]}, req("get", "pods", name="b"), False),
    ("resourceNames never match a list", {**POD_READER, "resourceNames": ["a"]}, req("list", "pods"), False),
    ("url exact", {"nonResourceURLs": ["/healthz"], "verbs": ["get"]}, req("get", path="/healthz"), True),
    ("url prefix", {"nonResourceURLs": ["/apis/*"], "verbs": ["get"]}, req("get", path="/apis/apps/v1"), True),
    ("url prefix not parent", {"nonResourceURLs": ["/apis/*"], "verbs": ["get"]}, req("get", path="/apis"), False),
    ("url star", {"nonResourceURLs": ["*"], "verbs": ["*"]}, req("post", path="/anything"), True),
    ("url rule vs resource", {"nonResourceURLs": ["*"], "verbs": ["*"]}, req("get", "pods"), False),
    ("resource rule vs url", {**POD_READER, "resources": ["*"], "apiGroups": ["*"]}, req("get", path="/api"), False),
    ("junk types", {"apiGroups": "", "resources": [1], "verbs": None}, req("get", "pods"), False),
]


@pytest.mark.parametrize(("rule", "request_", "want"), [c[1:] for c in RULE_CASES], ids=[c[0] for c in RULE_CASES])
def test_rule_matching(rule: dict[str, Any], request_: Request, want: bool) -> None:
    assert rule_allows(rule, request_) is want


SUBJECT_CASES = [
    ({"kind": "User", "name": "alice"}, "alice", (), "", True),
    ({"kind": "User", "name": "alice"}, "bob", (), "", False),
    ({"kind": "Group", "name": "devs"}, "bob", ("devs",), "", True),
    ({"kind": "Group", "name": "devs"}, "devs", (), "", False),
    ({"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}, "system:serviceaccount:ns:sa", (), "", True),
    ({"kind": "ServiceAccount", "name": "sa"}, "system:serviceaccount:ns:sa", (), "ns", True),  # binding's namespace
    ({"kind": "ServiceAccount", "name": "sa"}, "system:serviceaccount:ns:sa", (), "", False),
    ({"kind": "ServiceAccount", "name": "sa", "namespace": "x"}, "system:serviceaccount:ns:sa", (), "ns", False),
    ({"kind": "Other", "name": "alice"}, "alice", (), "", False),
]


@pytest.mark.parametrize(("subject", "user", "groups", "ns", "want"), SUBJECT_CASES)
def test_subjects(subject: dict[str, Any], user: str, groups: tuple[str, ...], ns: str, want: bool) -> None:
    assert subject_applies(subject, user, groups, ns) is want


def _objs() -> list[dict[str, Any]]:
    return [
        *rbac_defaults.cluster_roles(),
        *rbac_defaults.cluster_role_bindings(),
        {"kind": "Role", "metadata": {"name": "r", "namespace": "team"}, "rules": [POD_READER]},
        {"kind": "Role", "metadata": {"name": "r", "namespace": "other"}, "rules": [{**POD_READER, "verbs": ["*"]}]},
        {"kind": "RoleBinding", "metadata": {"name": "rb", "namespace": "team"},
         "roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "User", "name": "alice"}]},
        {"kind": "RoleBinding", "metadata": {"name": "urls", "namespace": "team"},
         "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"}, "subjects": [{"kind": "User", "name": "carol"}]},
        {"kind": "RoleBinding", "metadata": {"name": "dangling", "namespace": "team"},
         "roleRef": {"kind": "Role", "name": "missing"}, "subjects": [{"kind": "User", "name": "dan"}]},
    ]


def _authorizer() -> RBACAuthorizer:
    cache = RBACCache(store=None)  # type: ignore[arg-type]
    cache.load(_objs())
    return RBACAuthorizer(cache)


def test_role_binding_applies_in_its_namespace_only() -> None:
    a = _authorizer()
    d = a.authorize(req("list", "pods", ns="team", user="alice"))
    assert d.allowed and d.reason == 'RBAC: allowed by RoleBinding "rb/team" of Role "r" to User "alice"'
    assert not a.authorize(req("list", "pods", ns="other", user="alice")).allowed
    assert not a.authorize(req("list", "pods", user="alice")).allowed  # cluster-wide list
    assert not a.authorize(req("delete", "pods", ns="team", user="alice")).allowed
    # A ClusterRole bound by a RoleBinding: its resource rules in the namespace, never its URLs.
    assert a.authorize(req("delete", "secrets", ns="team", user="carol")).allowed
    assert not a.authorize(req("delete", "secrets", ns="x", user="carol")).allowed
    assert not a.authorize(req("get", path="/metrics", user="carol")).allowed
    # A binding to a missing role grants nothing (and does not fail).
    assert not a.authorize(req("get", "pods", ns="team", user="dan")).allowed


def test_default_roles() -> None:
    a = _authorizer()
    master = ("system:masters", "system:authenticated")
    d = a.authorize(req("delete", "nodes", user="x", groups=master))
    assert d.reason == (
        'RBAC: allowed by ClusterRoleBinding "cluster-admin" of ClusterRole "cluster-admin" to Group "system:masters"'
    )
    assert a.authorize(req("post", path="/anything", groups=master)).allowed
    authn = ("system:authenticated",)
    for path in ("/api", "/apis/apps/v1", "/openapi/v3/apis/apps/v1", "/version", "/healthz", "/readyz", "/livez"):
        assert a.authorize(req("get", path=path, groups=authn)).allowed, path
    assert not a.authorize(req("get", path="/metrics", groups=authn)).allowed
    assert a.authorize(req("create", "selfsubjectaccessreviews", group="authorization.k8s.io", groups=authn)).allowed
    assert not a.authorize(req("list", "pods", ns="default", groups=authn)).allowed

    cr = {o["metadata"]["name"]: o for o in rbac_defaults.cluster_roles()}
    only = RBACCache(store=None)  # type: ignore[arg-type]
    only.load([*cr.values(), *(
        {"kind": "RoleBinding", "metadata": {"name": n, "namespace": "ns"},
         "roleRef": {"kind": "ClusterRole", "name": n}, "subjects": [{"kind": "User", "name": n}]}
        for n in ("view", "edit", "admin")
    )])
    b = RBACAuthorizer(only)

    def can(user: str, verb: str, resource: str, sub: str = "", group: str = "") -> bool:
        return b.authorize(req(verb, resource, sub, group=group, ns="ns", user=user)).allowed

    assert can("view", "list", "pods") and can("view", "get", "pods", "log")
    assert not can("view", "get", "secrets") and not can("view", "create", "pods")
    assert can("view", "watch", "deployments", group="apps")
    assert can("edit", "create", "pods") and can("edit", "get", "secrets") and can("edit", "create", "pods", "exec")
    assert can("edit", "patch", "deployments", "scale", group="apps")
    assert not can("edit", "create", "roles", group="rbac.authorization.k8s.io")
    assert can("admin", "create", "rolebindings", group="rbac.authorization.k8s.io")
    assert not can("admin", "list", "nodes")


def test_rules_for_lists_what_applies() -> None:
    a = _authorizer()
    res, non = a.rules_for("alice", ("system:authenticated",), "team")
    assert {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]} in res
    assert any("/version" in r["nonResourceURLs"] for r in non)
    res_other, _ = a.rules_for("alice", ("system:authenticated",), "other")
    assert {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]} not in res_other


class _Store:
    """Only what the node rules read: a pod list."""

    def __init__(self, pods: list[dict[str, Any]]) -> None:
        self.pods = pods

    async def list(self, prefix: str, **_: Any) -> Any:
        import json
        from types import SimpleNamespace

        return SimpleNamespace(items=[SimpleNamespace(value=json.dumps(p).encode()) for p in self.pods])

    async def get(self, key: str) -> Any:
        import json
        from types import SimpleNamespace

        for p in self.pods:
            if key.endswith(f"/{p['metadata']['namespace']}/{p['metadata']['name']}"):
                return SimpleNamespace(value=json.dumps(p).encode())
        return None


async def test_chain_masters_nodes_rbac() -> None:
    store = _Store(
        [{"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "n1", "serviceAccountName": "app"}}]
    )
    authz = Authorizer(store, rbac=True)  # type: ignore[arg-type]
    assert authz.cache is not None
    authz.cache.load(_objs())
    node = {"username": "system:node:n1", "groups": ["system:nodes", "system:authenticated"]}
    master = {"username": "admin", "groups": ["system:masters"]}
    alice = {"username": "alice", "groups": ["system:authenticated"]}
    assert (await authz.authorize(master, Attributes("delete", "", "nodes", name="x"))).allowed
    assert (await authz.authorize(node, Attributes("patch", "", "pods", "status", "ns", "p"))).allowed
    assert not (await authz.authorize(node, Attributes("update", "", "pods", None, "ns", "p"))).allowed
    assert (await authz.authorize(node, Attributes("create", "", "serviceaccounts", "token", "ns", "app"))).allowed
    assert not (await authz.authorize(node, Attributes("create", "", "serviceaccounts", "token", "ns", "db"))).allowed
    assert (await authz.authorize(node, Attributes("get", path="/apis"))).allowed  # RBAC: discovery
    assert (await authz.authorize(alice, Attributes("list", "", "pods", namespace="team"))).allowed
    assert not (await authz.authorize(alice, Attributes("list", "", "pods", namespace="ns"))).allowed


def test_forbidden_messages() -> None:
    e = forbidden("u", Attributes("list", "", "pods", namespace="ns"))
    assert e.code == 403 and e.reason == "Forbidden"
    assert e.message == 'pods is forbidden: User "u" cannot list resource "pods" in API group "" in the namespace "ns"'
    e = forbidden("u", Attributes("get", "apps", "deployments", "scale", "ns", "web"))
    assert e.message == (
        'deployments.apps "web" is forbidden: User "u" cannot get resource "deployments/scale" in API group "apps" '
        'in the namespace "ns"'
    )
    assert e.details == {"kind": "deployments", "group": "apps", "name": "web"}
    e = forbidden("u", Attributes("list", "rbac.authorization.k8s.io", "clusterroles"))
    assert e.message.endswith(
        'cannot list resource "clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope'
    )
    e = forbidden("u", Attributes("get", path="/metrics"))
    assert e.message == 'forbidden: User "u" cannot get path "/metrics"'
