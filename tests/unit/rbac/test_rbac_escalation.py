"""RBAC escalation prevention: rule coverage (kube's Covers) and the admission step."""

from __future__ import annotations

from typing import Any

import pytest

from peapod.api.errors import ApiError
from peapod.apiserver import rbac_defaults
from peapod.apiserver.authz import Authorizer
from peapod.apiserver.rbac import RBACAuthorizer, RBACCache
from peapod.apiserver.rbac_escalation import (
    REQUEST_AUTH,
    admit,
    breakdown,
    compact_string,
    covers,
    escalation_message,
    rule_covers,
)

G = "rbac.authorization.k8s.io"


def rule(verbs: list[str], groups: list[str] | None = None, resources: list[str] | None = None,
         names: list[str] | None = None, urls: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"verbs": verbs}
    if groups is not None:
        out["apiGroups"] = groups
    if resources is not None:
        out["resources"] = resources
    if names is not None:
        out["resourceNames"] = names
    if urls is not None:
        out["nonResourceURLs"] = urls
    return out


PODS_RW = rule(["get", "list", "create"], [""], ["pods"])

COVER_CASES: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    ("same", PODS_RW, rule(["get"], [""], ["pods"]), True),
    ("more verbs wanted", rule(["get"], [""], ["pods"]), rule(["get", "delete"], [""], ["pods"]), False),
    ("star verb", rule(["*"], [""], ["pods"]), rule(["escalate"], [""], ["pods"]), True),
    ("star group", rule(["get"], ["*"], ["pods"]), rule(["get"], ["apps"], ["pods"]), True),
    ("other group", rule(["get"], [""], ["pods"]), rule(["get"], ["apps"], ["pods"]), False),
    ("star resource covers subresource", rule(["get"], [""], ["*"]), rule(["get"], [""], ["pods/log"]), True),
    ("*/sub covers x/sub", rule(["get"], [""], ["*/scale"]), rule(["get"], [""], ["deployments/scale"]), True),
    ("*/sub not x", rule(["get"], [""], ["*/scale"]), rule(["get"], [""], ["deployments"]), False),
    ("parent not subresource", rule(["get"], [""], ["pods"]), rule(["get"], [""], ["pods/exec"]), False),
    ("all names cover one", PODS_RW, rule(["get"], [""], ["pods"], names=["a"]), True),
    ("names cover subset", rule(["get"], [""], ["pods"], ["a", "b"]), rule(["get"], [""], ["pods"], ["a"]), True),
    ("names do not cover all", rule(["get"], [""], ["pods"], ["a"]), rule(["get"], [""], ["pods"]), False),
    ("names do not cover other", rule(["get"], [""], ["pods"], ["a"]), rule(["get"], [""], ["pods"], ["b"]), False),
    ("url exact", rule(["get"], urls=["/healthz"]), rule(["get"], urls=["/healthz"]), True),
    ("url prefix", rule(["get"], urls=["/apis/*"]), rule(["get"], urls=["/apis/apps"]), True),
    ("url prefix covers narrower prefix", rule(["get"], urls=["/apis/*"]), rule(["get"], urls=["/apis/a/*"]), True),
    ("url star", rule(["*"], urls=["*"]), rule(["post"], urls=["/x"]), True),
    ("url not covered", rule(["get"], urls=["/healthz"]), rule(["get"], urls=["/metrics"]), False),
    ("resource rule does not cover url", rule(["*"], ["*"], ["*"]), rule(["get"], urls=["/healthz"]), False),
    ("url rule does not cover resource", rule(["*"], urls=["*"]), rule(["get"], [""], ["pods"]), False),
]


@pytest.mark.parametrize(("owner", "sub", "want"), [c[1:] for c in COVER_CASES], ids=[c[0] for c in COVER_CASES])
def test_rule_covers(owner: dict[str, Any], sub: dict[str, Any], want: bool) -> None:
    assert all(rule_covers(owner, s) for s in breakdown(sub)) is want
    assert covers([owner], [sub])[0] is want


def test_breakdown_and_union_of_owner_rules() -> None:
    wanted = rule(["get", "list"], ["", "apps"], ["pods", "deployments"], names=["x"])
    parts = breakdown(wanted)
    assert len(parts) == 8 and {"apiGroups": ["apps"], "resources": ["pods"], "verbs": ["list"],
                                "resourceNames": ["x"]} in parts
    # No single owner rule covers it, the two together do.
    owners = [rule(["get", "list"], [""], ["*"]), rule(["*"], ["apps"], ["pods", "deployments"])]
    assert covers(owners, [wanted]) == (True, [])
    ok, missing = covers(owners[:1], [wanted])
    assert not ok and all(m["apiGroups"] == ["apps"] for m in missing)
    assert breakdown(rule(["get", "post"], urls=["/a", "/b"])) == [
        {"nonResourceURLs": ["/a"], "verbs": ["get"]}, {"nonResourceURLs": ["/a"], "verbs": ["post"]},
        {"nonResourceURLs": ["/b"], "verbs": ["get"]}, {"nonResourceURLs": ["/b"], "verbs": ["post"]},
    ]


def test_message_like_kube() -> None:
    _, missing = covers([], [rule(["get", "list"], [""], ["pods"]), rule(["*"], ["*"], ["*"])])
    assert compact_string(rule(["get"], ["apps"], ["deployments"], ["a"])) == (
        '{APIGroups:["apps"], Resources:["deployments"], ResourceNames:["a"], Verbs:["get"]}'
    )
    assert escalation_message("bob", ["system:authenticated", "dev"], missing) == (
        'user "bob" (groups=["system:authenticated" "dev"]) is attempting to grant RBAC permissions not '
        'currently held:\n{APIGroups:[""], Resources:["pods"], Verbs:["get" "list"]}\n'
        '{APIGroups:["*"], Resources:["*"], Verbs:["*"]}'
    )


# -- aggregated ClusterRoles --------------------------------------------------------------------


def _cr(name: str, rules: list[dict[str, Any]], labels: dict[str, str] | None = None,
        agg: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"kind": "ClusterRole", "metadata": {"name": name, "labels": labels or {}}, "rules": rules}
    if agg is not None:
        obj["aggregationRule"] = {"clusterRoleSelectors": agg}
    return obj


def _crb(name: str, role: str, user: str) -> dict[str, Any]:
    return {"kind": "ClusterRoleBinding", "metadata": {"name": name},
            "roleRef": {"apiGroup": G, "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "User", "name": user}]}


def _rb(ns: str, name: str, kind: str, role: str, user: str) -> dict[str, Any]:
    return {"kind": "RoleBinding", "metadata": {"name": name, "namespace": ns},
            "roleRef": {"apiGroup": G, "kind": kind, "name": role},
            "subjects": [{"kind": "User", "name": user}]}


def test_aggregated_cluster_role_rules_are_held() -> None:
    cache = RBACCache(None)  # type: ignore[arg-type]
    sel = [{"matchLabels": {"agg": "monitoring"}}]
    cache.load([
        _cr("monitoring", [], agg=sel),
        _cr("pods-reader", [rule(["get", "list"], [""], ["pods"])], {"agg": "monitoring"}),
        _cr("nested", [rule(["get"], ["apps"], ["deployments"])], {"agg": "monitoring"},
            agg=[{"matchLabels": {"agg": "deeper"}}]),
        _cr("deeper", [rule(["get"], [""], ["nodes"])], {"agg": "deeper"}),
        _cr("other", [rule(["delete"], [""], ["pods"])], {"agg": "no"}),
        _crb("mon", "monitoring", "alice"),
    ])
    rbac = RBACAuthorizer(cache)
    owner = rbac.owner_rules("alice", (), "")
    assert covers(owner, [rule(["list"], [""], ["pods"]), rule(["get"], ["apps"], ["deployments"]),
                          rule(["get"], [""], ["nodes"])])[0]
    assert not covers(owner, [rule(["delete"], [""], ["pods"])])[0]
    assert rbac.role_ref_rules({"kind": "ClusterRole", "name": "monitoring"}, "") == owner
    assert rbac.role_ref_rules({"kind": "ClusterRole", "name": "missing"}, "") is None


# -- the admission step ---------------------------------------------------------------------------


def _authorizer(*objs: dict[str, Any]) -> Authorizer:
    authz = Authorizer(None, rbac=True)  # type: ignore[arg-type]
    assert authz.cache is not None
    authz.cache.load([*rbac_defaults.cluster_roles(), *objs])
    return authz


async def _admit(authz: Authorizer, user: str, resource: str, ns: str | None, obj: dict[str, Any],
                 old: dict[str, Any] | None = None, groups: tuple[str, ...] = ("system:authenticated",)) -> None:
    token = REQUEST_AUTH.set(({"username": user, "groups": list(groups)}, authz))
    try:
        await admit(resource, ns, obj, old)
    finally:
        REQUEST_AUTH.reset(token)


def _binding(kind: str, name: str, role_kind: str, role: str, ns: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if ns:
        meta["namespace"] = ns
    return {"kind": kind, "metadata": meta, "roleRef": {"apiGroup": G, "kind": role_kind, "name": role},
            "subjects": [{"kind": "User", "name": "mallory"}]}


async def test_edit_user_cannot_bind_cluster_admin_but_can_bind_view() -> None:
    authz = _authorizer(
        _rb("dev", "bob-edit", "ClusterRole", "edit", "bob"),
        _cr("crb-maker", [rule(["create"], [G], ["clusterrolebindings", "rolebindings"])]),
        _crb("bob-crb", "crb-maker", "bob"),
    )
    with pytest.raises(ApiError) as e:
        await _admit(authz, "bob", "clusterrolebindings", None,
                     _binding("ClusterRoleBinding", "pwn", "ClusterRole", "cluster-admin"))
    assert e.value.code == 403
    assert e.value.message.startswith(
        'clusterrolebindings.rbac.authorization.k8s.io "pwn" is forbidden: user "bob" '
        '(groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held:\n'
    )
    assert '{APIGroups:["*"], Resources:["*"], Verbs:["*"]}' in e.value.message
    assert '{NonResourceURLs:["*"], Verbs:["*"]}' in e.value.message
    # bob holds view (edit includes it) in dev: binding view there is fine, cluster-wide it is not.
    await _admit(authz, "bob", "rolebindings", "dev", _binding("RoleBinding", "v", "ClusterRole", "view", "dev"))
    with pytest.raises(ApiError):
        await _admit(authz, "bob", "rolebindings", "prod", _binding("RoleBinding", "v", "ClusterRole", "view", "prod"))
    with pytest.raises(ApiError):
        await _admit(authz, "bob", "clusterrolebindings", None, _binding("ClusterRoleBinding", "v", "ClusterRole",
                                                                         "view"))
    with pytest.raises(ApiError) as e:
        await _admit(authz, "bob", "rolebindings", "dev", _binding("RoleBinding", "x", "Role", "nope", "dev"))
    assert e.value.message.endswith('is forbidden: role.rbac.authorization.k8s.io "nope" not found')


async def test_bind_and_escalate_verbs_and_masters() -> None:
    authz = _authorizer(
        _cr("binder", [rule(["bind"], [G], ["clusterroles"], names=["cluster-admin"])]),
        _crb("carol-binder", "binder", "carol"),
        _cr("escalator", [rule(["escalate"], [G], ["clusterroles"])]),
        _crb("dave-escalator", "escalator", "dave"),
    )
    await _admit(authz, "carol", "clusterrolebindings", None,
                 _binding("ClusterRoleBinding", "ok", "ClusterRole", "cluster-admin"))
    with pytest.raises(ApiError):  # bind is on cluster-admin only
        await _admit(authz, "carol", "clusterrolebindings", None,
                     _binding("ClusterRoleBinding", "no", "ClusterRole", "admin"))
    everything = _cr("everything", [rule(["*"], ["*"], ["*"])])
    await _admit(authz, "dave", "clusterroles", None, everything)
    with pytest.raises(ApiError) as e:
        await _admit(authz, "carol", "clusterroles", None, everything)
    assert e.value.message.startswith('clusterroles.rbac.authorization.k8s.io "everything" is forbidden: user "carol"')
    await _admit(authz, "root", "clusterroles", None, everything, groups=("system:masters",))
    # No request user (a write by the server itself): not checked.
    await admit("clusterroles", None, everything, None)


async def test_roles_within_what_is_held() -> None:
    authz = _authorizer(_rb("dev", "bob-admin", "ClusterRole", "admin", "bob"))
    role = {"kind": "Role", "metadata": {"name": "r", "namespace": "dev"},
            "rules": [rule(["get", "list"], [""], ["pods", "configmaps"]), rule(["create"], [""], ["pods/exec"])]}
    await _admit(authz, "bob", "roles", "dev", role)
    with pytest.raises(ApiError):
        await _admit(authz, "bob", "roles", "other", {**role, "metadata": {"name": "r", "namespace": "other"}})
    bigger = {**role, "rules": [rule(["get"], [""], ["nodes"])]}
    with pytest.raises(ApiError) as e:
        await _admit(authz, "bob", "roles", "dev", bigger, old=role)
    assert e.value.message.endswith('{APIGroups:[""], Resources:["nodes"], Verbs:["get"]}')
    # An update that only touches ownerReferences/finalizers is not checked (garbage collection).
    gc_only = {**bigger, "metadata": {**bigger["metadata"], "finalizers": ["x"]}}
    await _admit(authz, "bob", "roles", "dev", gc_only, old=bigger)


async def test_aggregation_rule_needs_full_authority() -> None:
    authz = _authorizer(_crb("dave-esc", "escalator", "dave"),
                        _cr("escalator", [rule(["*"], [G], ["clusterroles"])]))
    agg = _cr("agg", [], agg=[{"matchLabels": {"x": "y"}}])
    with pytest.raises(ApiError) as e:
        await _admit(authz, "erin", "clusterroles", None, agg)
    assert e.value.message.endswith("must have cluster-admin privileges to use the aggregationRule")
    await _admit(authz, "dave", "clusterroles", None, agg)  # escalate allows it, as in kube
