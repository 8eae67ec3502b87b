"""The ClusterRoles and ClusterRoleBindings every cluster starts with (kube's bootstrap policy).

- ``cluster-admin`` (everything) bound to group ``system:masters``;
- ``admin`` / ``edit`` / ``view``: user-facing roles meant for RoleBindings, with their rules written
  out (kube aggregates them from labelled roles; peapod does not evaluate ``aggregationRule``);
- ``system:basic-user`` (self reviews), ``system:discovery`` (/api, /apis, /openapi, /version,
  health) and ``system:public-info-viewer`` (/version, health) bound to ``system:authenticated``.

Nodes are authorized by the node rules (:mod:`peapod.apiserver.authz`), so no ``system:node`` role.
:func:`reconcile` creates what is missing and, for objects still annotated
``rbac.authorization.kubernetes.io/autoupdate: "true"``, adds back default rules/subjects that were
removed (kube's reconciliation is additive too).
"""

from __future__ import annotations

import copy
from typing import Any

from peapod.api import errors
from peapod.api.resources import REGISTRY
from peapod.apiserver.checks import WriteOptions
from peapod.apiserver.context import ApiContext

GROUP = "rbac.authorization.k8s.io"
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
READ = ["get", "list", "watch"]
WRITE = ["create", "delete", "deletecollection", "patch", "update"]

Obj = dict[str, Any]


def _rule(verbs: list[str], groups: list[str], resources: list[str]) -> Obj:
    return {"verbs": list(verbs), "apiGroups": list(groups), "resources": list(resources)}


# What "view" may read (no secrets), as in kube's view role.
_VIEW_CORE = [
    "configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods",
    "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services",
    "services/status", "bindings", "events", "limitranges", "namespaces/status", "pods/log",
    "pods/status", "replicationcontrollers/status", "resourcequotas", "resourcequotas/status",
]
_VIEW_APPS = [
    "controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale",
    "deployments/status", "replicasets", "replicasets/scale", "replicasets/status", "statefulsets",
    "statefulsets/scale", "statefulsets/status",
]
_EDIT_CORE = [
    "pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "pods/eviction",
    "configmaps", "events", "persistentvolumeclaims", "replicationcontrollers",
    "replicationcontrollers/scale", "secrets", "serviceaccounts", "services", "services/proxy",
    "endpoints",
]
_EDIT_APPS = [
    "daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets",
    "replicasets/scale", "statefulsets", "statefulsets/scale",
]


def _view_rules() -> list[Obj]:
    return [
        _rule(READ, [""], _VIEW_CORE),
        _rule(READ, [""], ["namespaces"]),
        _rule(READ, ["apps"], _VIEW_APPS),
        _rule(READ, ["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
        _rule(READ, ["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
        _rule(READ, ["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
        _rule(READ, ["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"]),
        _rule(READ, ["discovery.k8s.io"], ["endpointslices"]),
        _rule(READ, ["events.k8s.io"], ["events"]),
        _rule(READ, ["coordination.k8s.io"], ["leases"]),
        _rule(READ, ["metrics.k8s.io"], ["pods", "nodes"]),
    ]


def _edit_rules() -> list[Obj]:
    return [
        _rule(WRITE, [""], _EDIT_CORE),
        _rule(READ, [""], ["secrets", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "services/proxy"]),
        _rule(["create"], [""], ["serviceaccounts/token"]),
        _rule(["impersonate"], [""], ["serviceaccounts"]),
        _rule(WRITE, ["apps"], _EDIT_APPS),
        _rule(WRITE, ["autoscaling"], ["horizontalpodautoscalers"]),
        _rule(WRITE, ["batch"], ["cronjobs", "jobs"]),
        _rule(WRITE, ["policy"], ["poddisruptionbudgets"]),
        _rule(WRITE, ["networking.k8s.io"], ["ingresses", "networkpolicies"]),
        _rule(WRITE, ["discovery.k8s.io"], ["endpointslices"]),
        _rule(WRITE, ["events.k8s.io"], ["events"]),
        _rule(WRITE, ["coordination.k8s.io"], ["leases"]),
        *_view_rules(),
    ]


def _admin_rules() -> list[Obj]:
    return [
        _rule(["create"], ["authorization.k8s.io"], ["localsubjectaccessreviews"]),
        _rule([*READ, *WRITE], [GROUP], ["rolebindings", "roles"]),
        *_edit_rules(),
    ]


_DISCOVERY_URLS = [
    "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz",
    "/version", "/version/",
]
_PUBLIC_URLS = ["/healthz", "/livez", "/readyz", "/version", "/version/"]


def _cluster_role(name: str, rules: list[Obj], labels: dict[str, str] | None = None) -> Obj:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults", **(labels or {})},
            "annotations": {AUTOUPDATE: "true"},
        },
        "rules": rules,
    }


def _binding(name: str, role: str, groups: list[str]) -> Obj:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {AUTOUPDATE: "true"},
        },
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": GROUP, "kind": "Group", "name": g} for g in groups],
    }


def cluster_roles() -> list[Obj]:
    return [
        _cluster_role(
            "cluster-admin",
            [_rule(["*"], ["*"], ["*"]), {"verbs": ["*"], "nonResourceURLs": ["*"]}],
        ),
        _cluster_role("admin", _admin_rules()),
        _cluster_role("edit", _edit_rules(), {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}),
        _cluster_role("view", _view_rules(), {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}),
        _cluster_role(
            "system:basic-user",
            [
                _rule(["create"], ["authorization.k8s.io"], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
                _rule(["create"], ["authentication.k8s.io"], ["selfsubjectreviews"]),
            ],
        ),
        _cluster_role("system:discovery", [{"verbs": ["get"], "nonResourceURLs": _DISCOVERY_URLS}]),
        _cluster_role("system:public-info-viewer", [{"verbs": ["get"], "nonResourceURLs": _PUBLIC_URLS}]),
    ]


def cluster_role_bindings() -> list[Obj]:
    return [
        _binding("cluster-admin", "cluster-admin", ["system:masters"]),
        _binding("system:basic-user", "system:basic-user", ["system:authenticated"]),
        _binding("system:discovery", "system:discovery", ["system:authenticated"]),
        _binding(
            "system:public-info-viewer", "system:public-info-viewer", ["system:authenticated", "system:unauthenticated"]
        ),
    ]


def _merge(current: Obj, default: Obj, field_name: str) -> Obj | None:
    """``current`` with the default entries it lacks added back, or None when nothing is missing."""
    have = current.get(field_name) or []
    missing = [x for x in default.get(field_name) or [] if x not in have]
    if not missing:
        return None
    out = copy.deepcopy(current)
    out[field_name] = [*have, *missing]
    return out


async def reconcile(ctx: ApiContext) -> None:
    """Create the default roles and bindings; restore what was removed from auto-updated ones."""
    from peapod.apiserver.rest import UpdateSpec, create, update

    opts = WriteOptions(field_manager="peapod-bootstrap")
    for resource, objs, field_name in (
        ("clusterroles", cluster_roles(), "rules"),
        ("clusterrolebindings", cluster_role_bindings(), "subjects"),
    ):
        info = REGISTRY.get(GROUP, "v1", resource)
        assert info is not None
        for obj in objs:
            name = obj["metadata"]["name"]
            got = await ctx.storage.get(info, None, name)
            if got is None:
                try:
                    await create(ctx, info, None, copy.deepcopy(obj), opts)
                except errors.ApiError as e:
                    if e.code != 409:
                        raise
                continue
            current = got[0]
            if (current.get("metadata", {}).get("annotations") or {}).get(AUTOUPDATE) != "true":
                continue
            if _merge(current, obj, field_name) is None:
                continue

            async def transform(cur: Obj | None, default: Obj = obj, f: str = field_name) -> Obj:
                assert cur is not None
                return _merge(cur, default, f) or cur

            await update(ctx, info, None, name, UpdateSpec(transform=transform, manager="peapod-bootstrap"), opts)
