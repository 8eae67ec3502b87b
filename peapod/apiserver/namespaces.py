"""Namespace lifecycle rules: content only in live namespaces, protected namespaces, default SA."""

from __future__ import annotations

from typing import Any

from peapod.api import errors
from peapod.api.resources import REGISTRY
from peapod.apiserver.context import ApiContext

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
UNDELETABLE = ("default", "kube-system", "kube-public")

_NS = REGISTRY.get("", "v1", "namespaces")
_SA = REGISTRY.get("", "v1", "serviceaccounts")


async def check_namespace_for_create(ctx: ApiContext, info_resource: str, group: str, namespace: str) -> None:
    """404 when the namespace is missing; 403 when it is terminating (kube's NamespaceLifecycle)."""
    assert _NS is not None
    got = await ctx.storage.get(_NS, None, namespace)
    if got is None:
        raise errors.not_found("", "namespaces", namespace)
    ns = got[0]
    if ns.get("metadata", {}).get("deletionTimestamp") or ns.get("status", {}).get("phase") == "Terminating":
        qualified = f"{info_resource}.{group}" if group else info_resource
        raise errors.ApiError(
            403,
            "Forbidden",
            f"{qualified} is forbidden: unable to create new content in namespace {namespace} "
            "because it is being terminated",
            {
                "kind": info_resource,
                **({"group": group} if group else {}),
                "causes": [
                    {
                        "reason": "NamespaceTerminating",
                        "message": f"namespace {namespace} is being terminated",
                        "field": "metadata.namespace",
                    }
                ],
            },
        )


def check_namespace_delete(name: str) -> None:
    if name in UNDELETABLE:
        raise errors.ApiError(
            403,
            "Forbidden",
            f'namespaces "{name}" is forbidden: this namespace may not be deleted',
            {"name": name, "kind": "namespaces"},
        )


def default_service_account(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "default", "namespace": namespace},
    }


async def ensure_default_service_account(ctx: ApiContext, namespace: str) -> None:
    """Create the namespace's ``default`` ServiceAccount if missing (kube's serviceaccount controller)."""
    from peapod.apiserver.checks import WriteOptions
    from peapod.apiserver.rest import create

    assert _SA is not None
    if await ctx.storage.get(_SA, namespace, "default") is not None:
        return
    try:
        await create(
            ctx,
            _SA,
            namespace,
            default_service_account(namespace),
            WriteOptions(field_manager="peapod-serviceaccount-controller"),
        )
    except errors.ApiError as e:
        if e.code not in (404, 403, 409):  # namespace gone/terminating, or raced: nothing to do
            raise
