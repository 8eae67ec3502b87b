"""Objects every cluster starts with: the four system namespaces and their default ServiceAccounts,
the default RBAC roles and bindings (:mod:`peapod.apiserver.rbac_defaults`), and the role that lets
joining nodes (``system:bootstrappers``) and nodes renewing their certificates (``system:nodes``)
POST to the node credentials endpoint (:mod:`peapod.apiserver.nodejoin`) and nothing else."""

from __future__ import annotations

from typing import Any

from peapod.api import errors
from peapod.api.resources import REGISTRY
from peapod.apiserver.checks import WriteOptions
from peapod.apiserver.context import ApiContext
from peapod.apiserver.namespaces import DEFAULT_NAMESPACES, ensure_default_service_account
from peapod.apiserver.rbac_defaults import reconcile as reconcile_rbac
from peapod.clock import Clock
from peapod.store.base import Store


async def bootstrap(store: Store, clock: Clock) -> None:
    """Create the default namespaces (and their ``default`` ServiceAccount) and the default RBAC
    roles and bindings if missing. Idempotent."""
    from peapod.apiserver.rest import create

    ctx = ApiContext(store=store, clock=clock)
    info = REGISTRY.get("", "v1", "namespaces")
    assert info is not None
    for name in DEFAULT_NAMESPACES:
        if await ctx.storage.get(info, None, name) is None:
            obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            try:
                await create(ctx, info, None, obj, WriteOptions(field_manager="peapod-bootstrap"))
            except errors.ApiError as e:
                if e.code != 409:
                    raise
        await ensure_default_service_account(ctx, name)
    await reconcile_rbac(ctx)
    await _ensure_node_bootstrapper_rbac(ctx)


NODE_BOOTSTRAPPER_ROLE = "system:peapod:node-bootstrapper"


def node_bootstrapper_rbac() -> list[tuple[str, dict[str, Any]]]:
    from peapod.apiserver.clusterinit import BOOTSTRAPPERS_GROUP
    from peapod.apiserver.nodejoin import NODE_CREDENTIALS_PATH

    group = "rbac.authorization.k8s.io"
    labels = {"kubernetes.io/bootstrapping": "rbac-defaults"}
    role = {"apiVersion": f"{group}/v1", "kind": "ClusterRole",
            "metadata": {"name": NODE_BOOTSTRAPPER_ROLE, "labels": labels},
            "rules": [{"verbs": ["post"], "nonResourceURLs": [NODE_CREDENTIALS_PATH]}]}
    binding = {"apiVersion": f"{group}/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": NODE_BOOTSTRAPPER_ROLE, "labels": labels},
               "roleRef": {"apiGroup": group, "kind": "ClusterRole", "name": NODE_BOOTSTRAPPER_ROLE},
               "subjects": [{"apiGroup": group, "kind": "Group", "name": g}
                            for g in (BOOTSTRAPPERS_GROUP, "system:nodes")]}
    return [("clusterroles", role), ("clusterrolebindings", binding)]


async def _ensure_node_bootstrapper_rbac(ctx: ApiContext) -> None:
    from peapod.apiserver.rest import create

    for resource, obj in node_bootstrapper_rbac():
        info = REGISTRY.get("rbac.authorization.k8s.io", "v1", resource)
        assert info is not None
        if await ctx.storage.get(info, None, obj["metadata"]["name"]) is not None:
            continue
        try:
            await create(ctx, info, None, obj, WriteOptions(field_manager="peapod-bootstrap"))
        except errors.ApiError as e:
            if e.code != 409:
                raise
