"""Validation of the rbac.authorization.k8s.io kinds, with Kubernetes' field paths and messages."""

from __future__ import annotations

from typing import Any

from peapod.api.defaults import apply_defaults
from peapod.api.validation import validate_object, validate_update

G = "rbac.authorization.k8s.io"


def msgs(kind: str, obj: dict[str, Any]) -> list[str]:
    apply_defaults(G, "v1", kind, obj)
    return [e.message() for e in validate_object(G, "v1", kind, obj)]


def test_role_rules() -> None:
    meta = {"name": "r", "namespace": "ns"}
    good = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    assert msgs("Role", {"metadata": meta, "rules": good}) == []
    assert msgs("Role", {"metadata": meta, "rules": [{}]}) == [
        "rules[0].verbs: Required value: verbs must contain at least one value",
        "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
        "rules[0].resources: Required value: resource rules must supply at least one resource",
    ]
    assert msgs("Role", {"metadata": meta, "rules": [{"nonResourceURLs": ["/x"], "verbs": ["get"]}]}) == [
        'rules[0].nonResourceURLs: Invalid value: []string{"/x"}: namespaced rules cannot apply to non-resource URLs'
    ]
    assert msgs("ClusterRole", {"metadata": {"name": "system:x"}, "rules": [
        {"nonResourceURLs": ["/x"], "verbs": ["get"], "resources": ["pods"]}]}) == [
        'rules[0].nonResourceURLs: Invalid value: []string{"/x"}: rules cannot apply to both regular resources and '
        "non-resource URLs"
    ]
    assert msgs("ClusterRole", {"metadata": {"name": "a/b"}}) == [
        "metadata.name: Invalid value: \"a/b\": may not contain '/'"
    ]
    assert msgs("ClusterRole", {"metadata": {"name": ".."}}) == [
        "metadata.name: Invalid value: \"..\": may not be '..'"
    ]


def test_bindings() -> None:
    ok = {"metadata": {"name": "b", "namespace": "ns"}, "roleRef": {"kind": "Role", "name": "r"},
          "subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "sa"}]}
    assert msgs("RoleBinding", ok) == []
    assert ok["roleRef"]["apiGroup"] == G and ok["subjects"][0]["apiGroup"] == G
    assert "apiGroup" not in ok["subjects"][1]
    bad = {"metadata": {"name": "b"}, "roleRef": {"apiGroup": "x", "kind": "Role", "name": ""},
           "subjects": [{"kind": "ServiceAccount", "name": "Bad_Name", "apiGroup": G}, {"kind": "Robot", "name": "r"},
                        {"kind": "Group", "name": ""}]}
    assert msgs("ClusterRoleBinding", bad) == [
        'roleRef.apiGroup: Unsupported value: "x": supported values: "rbac.authorization.k8s.io"',
        'roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"',
        "roleRef.name: Required value",
        "subjects[0].name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case "
        "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. "
        "'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        'subjects[0].apiGroup: Unsupported value: "rbac.authorization.k8s.io": supported values: ""',
        "subjects[0].namespace: Required value",
        'subjects[1].kind: Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group"',
        "subjects[2].name: Required value",
    ]


def test_role_ref_is_immutable() -> None:
    old = {"metadata": {"name": "b", "namespace": "ns", "resourceVersion": "1"},
           "roleRef": {"apiGroup": G, "kind": "Role", "name": "r"}, "subjects": []}
    new = {**old, "roleRef": {"apiGroup": G, "kind": "Role", "name": "other"}}
    assert [e.message() for e in validate_update(G, "v1", "RoleBinding", new, old)] == [
        'roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"Role", Name:"other"}: '
        "cannot change roleRef"
    ]
    assert validate_update(G, "v1", "RoleBinding", {**old, "subjects": [{"kind": "User", "name": "x", "apiGroup": G}]},
                           old) == []
