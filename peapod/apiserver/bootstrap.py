"""Objects every cluster starts with: the four system namespaces and their default ServiceAccounts,
and the default RBAC roles and bindings (:mod:`peapod.apiserver.rbac_defaults`)."""

from __future__ import annotations

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
