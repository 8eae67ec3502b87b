"""Generic create/update/delete over the store with kube-apiserver's semantics.

Handlers decode and check the request; this module owns the object lifecycle: system metadata,
defaulting, strategy, validation, managed fields, compare-and-swap with retries, finalizers and
graceful deletion.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from peapod.api import errors, jsoncodec
from peapod.api.defaults import apply_defaults
from peapod.api.names import generate_name
from peapod.api.patch import update_managed_fields
from peapod.api.resources import ResourceInfo
from peapod.api.validation import validate_object, validate_update
from peapod.apiserver import admission, strategy
from peapod.apiserver.checks import WriteOptions
from peapod.apiserver.codec import from_storage, stored_copy
from peapod.apiserver.context import ApiContext
from peapod.apiserver.metadata import keep_system_fields, reset_for_create, same_ignoring_managed
from peapod.apiserver.namespaces import (
    check_namespace_delete,
    check_namespace_for_create,
    ensure_default_service_account,
)
from peapod.apiserver.storage import Conflict
from peapod.clock import rfc3339

MAX_RETRIES = 16

Transform = Callable[[dict[str, Any] | None], Awaitable[dict[str, Any]]]


def _now(ctx: ApiContext) -> str:
    return rfc3339(ctx.clock.now())


def _check_name(info: ResourceInfo, name: Any, field_path: str = "metadata.name") -> None:
    """Names become store keys: refuse anything that could escape its key segment."""
    if not isinstance(name, str) or name in (".", "..") or "/" in name or "%" in name or len(name) > 253:
        raise errors.invalid_object(
            info.group,
            info.kind,
            name if isinstance(name, str) else "",
            [errors.invalid(field_path, name, "a name may not be '.', '..' or contain '/' or '%'")],
        )


def _validation_error(info: ResourceInfo, name: str, errs: list[errors.FieldError]) -> errors.ApiError:
    return errors.invalid_object(info.group, info.kind, name, errs)


def managed(
    ctx: ApiContext,
    info: ResourceInfo,
    old: dict[str, Any] | None,
    new: dict[str, Any],
    manager: str,
    operation: str = "Update",
    subresource: str = "",
) -> dict[str, Any]:
    return update_managed_fields(
        old,
        new,
        manager=manager,
        operation=operation,
        api_version=info.api_version,
        now=_now(ctx),
        group=info.group,
        version=info.version,
        kind=info.kind,
        subresource=subresource,
    )


# -- create ------------------------------------------------------------------------------------


async def create(
    ctx: ApiContext,
    info: ResourceInfo,
    namespace: str | None,
    obj: dict[str, Any],
    opts: WriteOptions,
    *,
    operation: str = "Update",
    managed_done: bool = False,
) -> dict[str, Any]:
    """Create ``obj`` (wire form, already type-checked); returns the created object (wire form)."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise errors.bad_request("metadata must be an object")
    if info.namespaced:
        body_ns = meta.get("namespace")
        if body_ns not in (None, "") and body_ns != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        meta["namespace"] = namespace
    else:
        meta.pop("namespace", None)
    if meta.get("resourceVersion"):
        raise errors.bad_request("resourceVersion should not be set on objects to be created")
    name = meta.get("name") or ""
    gen = meta.get("generateName") or ""
    generated = False
    if not name and gen:
        name = generate_name(gen, ctx.rng)
        generated = True
    if not name:
        raise _validation_error(
            info, "", [errors.required("metadata.name", "name or generateName is required")]
        )
    _check_name(info, name)
    meta["name"] = name
    if info.namespaced:
        assert namespace is not None
        await check_namespace_for_create(ctx, info.resource, info.group, namespace)
    reset_for_create(meta, _now(ctx))
    apply_defaults(info.group, info.version, info.kind, obj)
    strategy.prepare_for_create(info, obj)
    errs = validate_object(info.group, info.version, info.kind, obj)
    if errs:
        raise _validation_error(info, name, errs)
    await admission.admit(ctx, info, namespace, obj, None, "main", opts)  # validating admission (PodSecurity)
    if not managed_done:
        obj = managed(ctx, info, None, obj, opts.field_manager, operation)
    if opts.dry_run:
        return obj
    for attempt in range(4):
        stored = stored_copy(info, obj)
        try:
            stored = await ctx.storage.create(info, namespace, name, stored)
            break
        except errors.ApiError as e:
            if not (generated and e.code == 409 and attempt < 3):
                raise
            name = generate_name(gen, ctx.rng)
            obj["metadata"]["name"] = name
    result = from_storage(info, stored)
    await after_create(ctx, info, result)
    return result


async def after_create(ctx: ApiContext, info: ResourceInfo, obj: dict[str, Any]) -> None:
    if (info.group, info.kind) == ("", "Namespace"):
        await ensure_default_service_account(ctx, obj["metadata"]["name"])


# -- update ------------------------------------------------------------------------------------


@dataclass
class UpdateSpec:
    """How one update request turns the current object into the new one."""

    transform: Transform  # current (wire form, a private copy) -> desired object
    # main | status | finalize | ephemeralcontainers | raw (server-made change: no strategy/validation)
    mode: str = "main"
    allow_create: bool = False
    manager: str = ""
    operation: str = "Update"
    # Called instead of create() when the object is missing and allow_create is set (SSA, events).
    on_missing: Callable[[], Awaitable[dict[str, Any]]] | None = None
    managed_done: bool = False  # the transform already maintained managedFields (server-side apply)
    created: bool = field(default=False, init=False)


def _check_identity(
    info: ResourceInfo, new: dict[str, Any], namespace: str | None, name: str
) -> dict[str, Any]:
    meta = new.get("metadata")
    if meta is None:
        meta = new["metadata"] = {}
    if not isinstance(meta, dict):
        raise errors.bad_request("metadata must be an object")
    body_name = meta.get("name")
    if body_name in (None, ""):
        meta["name"] = name
    elif body_name != name:
        raise errors.bad_request(
            f"the name of the object ({body_name}) does not match the name on the URL ({name})"
        )
    if info.namespaced:
        body_ns = meta.get("namespace")
        if body_ns not in (None, "") and body_ns != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        meta["namespace"] = namespace
    else:
        meta.pop("namespace", None)
    return meta


def _precondition_failed(info: ResourceInfo, name: str, what: str, want: Any, have: Any) -> errors.ApiError:
    return errors.conflict(
        info.group,
        info.resource,
        name,
        f"Precondition failed: {what} in precondition: {want}, {what} in object meta: {have}",
    )


async def update(
    ctx: ApiContext,
    info: ResourceInfo,
    namespace: str | None,
    name: str,
    spec: UpdateSpec,
    opts: WriteOptions,
) -> dict[str, Any]:
    """Guaranteed update: re-read and retry on CAS conflicts unless the client fixed a resourceVersion."""
    for _ in range(MAX_RETRIES):
        got = await ctx.storage.get(info, namespace, name)
        if got is None:
            if spec.allow_create and spec.on_missing is not None:
                spec.created = True
                return await spec.on_missing()
            raise errors.not_found(info.group, info.resource, name)
        current_stored, rev = got
        old = from_storage(info, current_stored)
        new = await spec.transform(jsoncodec.clone(old))
        try:
            return await _write_update(ctx, info, namespace, name, old, new, rev, spec, opts)
        except Conflict:
            continue
    raise errors.ApiError(409, "Conflict", f"too many conflicting updates to {info.resource} {name!r}; retry")


async def _write_update(
    ctx: ApiContext,
    info: ResourceInfo,
    namespace: str | None,
    name: str,
    old: dict[str, Any],
    new: dict[str, Any],
    rev: int,
    spec: UpdateSpec,
    opts: WriteOptions,
) -> dict[str, Any]:
    if not isinstance(new, dict):
        raise errors.bad_request("the request body must be an object")
    new["apiVersion"] = info.api_version
    new["kind"] = info.kind
    meta = _check_identity(info, new, namespace, name)
    old_meta = old["metadata"]
    rv = meta.get("resourceVersion")
    if rv not in (None, "") and str(rv) != old_meta.get("resourceVersion"):
        raise errors.stale_conflict(info.group, info.resource, name)
    meta["resourceVersion"] = old_meta.get(
        "resourceVersion"
    )  # unconditional update: as of the current object
    uid = meta.get("uid")
    if uid not in (None, "") and uid != old_meta.get("uid"):
        raise _precondition_failed(info, name, "UID", uid, old_meta.get("uid"))
    keep_system_fields(meta, old_meta)
    if spec.mode == "status":
        new = strategy.status_update(info, new, old)
    elif spec.mode == "finalize":
        new = strategy.finalize_update(new, old)
    elif spec.mode == "ephemeralcontainers":
        new = strategy.ephemeral_update(new, old)
    if spec.mode not in ("raw", "finalize"):  # finalize changes only spec.finalizers: nothing to default
        apply_defaults(info.group, info.version, info.kind, new)
    if spec.mode == "main":
        strategy.prepare_for_update(info, new, old)
    meta = new["metadata"]
    if old_meta.get("deletionTimestamp"):
        added = [f for f in (meta.get("finalizers") or []) if f not in (old_meta.get("finalizers") or [])]
        if added:
            raise _validation_error(
                info,
                name,
                [
                    errors.forbidden(
                        "metadata.finalizers",
                        "no new finalizers can be added if the object is being deleted, found new finalizers "
                        + "[]string{"
                        + ", ".join(f'"{f}"' for f in added)
                        + "}",
                    )
                ],
            )
    if spec.mode == "raw":
        errs = []
    elif spec.mode == "ephemeralcontainers":
        # Pod spec is immutable except through this subresource: check the pod as a whole instead.
        errs = validate_object(info.group, info.version, info.kind, new)
    else:
        errs = validate_update(info.group, info.version, info.kind, new, old)
    if errs:
        raise _validation_error(info, name, errs)
    if spec.mode != "raw":
        await admission.admit(ctx, info, namespace, new, old, spec.mode, opts)  # validating admission (PodSecurity)
    if not spec.managed_done:
        new = managed(
            ctx,
            info,
            old,
            new,
            spec.manager or opts.field_manager,
            spec.operation,
            "" if spec.mode in ("main", "raw") else spec.mode,
        )
    if same_ignoring_managed(new, old):
        return old
    new["metadata"]["resourceVersion"] = old_meta.get("resourceVersion")
    if opts.dry_run:
        return new
    if _should_delete_during_update(new):
        await ctx.storage.delete(info, namespace, name, rev)
        return new
    stored = await ctx.storage.update(info, namespace, name, stored_copy(info, new), rev)
    return from_storage(info, stored)


def _should_delete_during_update(obj: dict[str, Any]) -> bool:
    """Kube's ShouldDeleteDuringUpdate: deleting, no finalizers left, no grace period pending."""
    m = obj["metadata"]
    if obj.get("kind") == "Namespace" and (obj.get("spec") or {}).get("finalizers"):
        return False
    return (
        bool(m.get("deletionTimestamp"))
        and not m.get("finalizers")
        and not m.get("deletionGracePeriodSeconds")
    )


# -- delete ------------------------------------------------------------------------------------


@dataclass
class DeleteOptions:
    grace_period: int | None = None
    propagation: str | None = None  # Orphan | Background | Foreground
    uid: str | None = None
    resource_version: str | None = None
    dry_run: bool = False


@dataclass
class DeleteResult:
    obj: dict[str, Any]
    deleted: bool  # removed from the store now (not waiting on grace or finalizers)


# kube-apiserver returns the deleted object for these; a Status for the rest.
RETURNS_DELETED_OBJECT = {("", "Pod"), ("", "Namespace")}


def _pod_grace(obj: dict[str, Any], requested: int | None) -> int:
    spec = obj.get("spec") or {}
    grace = requested if requested is not None else spec.get("terminationGracePeriodSeconds", 30)
    if not isinstance(grace, int) or grace < 0:
        grace = 30 if requested is None else 0
    if not spec.get("nodeName"):
        return 0
    if (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return 0
    return grace


def _gc_finalizers(finalizers: list[str], policy: str | None) -> list[str]:
    out = list(finalizers)
    if policy == "Orphan":
        out = [f for f in out if f != "foregroundDeletion"]
        if "orphan" not in out:
            out.append("orphan")
    elif policy == "Foreground":
        out = [f for f in out if f != "orphan"]
        if "foregroundDeletion" not in out:
            out.append("foregroundDeletion")
    elif policy == "Background":
        out = [f for f in out if f not in ("orphan", "foregroundDeletion")]
    return out


async def delete(
    ctx: ApiContext, info: ResourceInfo, namespace: str | None, name: str, opts: DeleteOptions
) -> DeleteResult:
    if (info.group, info.kind) == ("", "Namespace"):
        check_namespace_delete(name)
    for _ in range(MAX_RETRIES):
        got = await ctx.storage.get(info, namespace, name)
        if got is None:
            raise errors.not_found(info.group, info.resource, name)
        stored, rev = got
        obj = from_storage(info, stored)
        meta = obj["metadata"]
        if opts.uid is not None and opts.uid != meta.get("uid"):
            raise _precondition_failed(info, name, "UID", opts.uid, meta.get("uid"))
        if opts.resource_version is not None and opts.resource_version != meta.get("resourceVersion"):
            raise _precondition_failed(
                info, name, "ResourceVersion", opts.resource_version, meta.get("resourceVersion")
            )
        try:
            return await _delete_once(ctx, info, namespace, name, obj, rev, opts)
        except Conflict:
            continue
    raise errors.ApiError(409, "Conflict", f"too many conflicting deletes of {info.resource} {name!r}; retry")


async def _delete_once(
    ctx: ApiContext,
    info: ResourceInfo,
    namespace: str | None,
    name: str,
    obj: dict[str, Any],
    rev: int,
    opts: DeleteOptions,
) -> DeleteResult:
    meta = obj["metadata"]
    now = ctx.clock.now()
    key = (info.group, info.kind)
    new = copy.deepcopy(obj)
    nmeta = new["metadata"]
    finalizers = _gc_finalizers(meta.get("finalizers") or [], opts.propagation)

    if key == ("", "Namespace"):
        return await _delete_namespace(ctx, info, name, obj, new, rev, opts, finalizers)

    grace = _pod_grace(obj, opts.grace_period) if key == ("", "Pod") else 0
    if grace > 0:
        current_grace = meta.get("deletionGracePeriodSeconds")
        if meta.get("deletionTimestamp") and current_grace is not None and current_grace <= grace:
            return DeleteResult(obj, False)  # already terminating at least as fast
        nmeta["deletionTimestamp"] = rfc3339(now + timedelta(seconds=grace))
        nmeta["deletionGracePeriodSeconds"] = grace
        if finalizers:
            nmeta["finalizers"] = finalizers
        return DeleteResult(await _store_update(ctx, info, namespace, name, new, rev, opts), False)

    if finalizers:
        changed = finalizers != (meta.get("finalizers") or [])
        if not meta.get("deletionTimestamp"):
            nmeta["deletionTimestamp"] = rfc3339(now)
            changed = True
        if nmeta.get("deletionGracePeriodSeconds") != 0:
            nmeta["deletionGracePeriodSeconds"] = 0
            changed = True
        nmeta["finalizers"] = finalizers
        if not changed:
            return DeleteResult(obj, False)
        return DeleteResult(await _store_update(ctx, info, namespace, name, new, rev, opts), False)

    if opts.dry_run:
        return DeleteResult(obj, True)
    deleted = await ctx.storage.delete(info, namespace, name, rev)
    return DeleteResult(from_storage(info, deleted), True)


async def _delete_namespace(
    ctx: ApiContext,
    info: ResourceInfo,
    name: str,
    obj: dict[str, Any],
    new: dict[str, Any],
    rev: int,
    opts: DeleteOptions,
    finalizers: list[str],
) -> DeleteResult:
    meta = obj["metadata"]
    spec_fin = (obj.get("spec") or {}).get("finalizers") or []
    if meta.get("deletionTimestamp"):
        if not spec_fin and not finalizers:
            if opts.dry_run:
                return DeleteResult(obj, True)
            deleted = await ctx.storage.delete(info, None, name, rev)
            return DeleteResult(from_storage(info, deleted), True)
        raise errors.conflict(
            "",
            "namespaces",
            name,
            "The system is ensuring all content is removed from this namespace.  Upon completion, "
            "this namespace will automatically be purged by the system.",
        )
    nmeta = new["metadata"]
    nmeta["deletionTimestamp"] = rfc3339(ctx.clock.now())
    nmeta["deletionGracePeriodSeconds"] = 0
    if finalizers:
        nmeta["finalizers"] = finalizers
    new.setdefault("status", {})["phase"] = "Terminating"
    if not spec_fin and not finalizers:
        if opts.dry_run:
            return DeleteResult(obj, True)
        deleted = await ctx.storage.delete(info, None, name, rev)
        return DeleteResult(from_storage(info, deleted), True)
    return DeleteResult(await _store_update(ctx, info, None, name, new, rev, opts), False)


async def _store_update(
    ctx: ApiContext,
    info: ResourceInfo,
    namespace: str | None,
    name: str,
    new: dict[str, Any],
    rev: int,
    opts: DeleteOptions,
) -> dict[str, Any]:
    if opts.dry_run:
        return new
    stored = await ctx.storage.update(info, namespace, name, stored_copy(info, new), rev)
    return from_storage(info, stored)


def delete_status(info: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
    """The Status kube answers for an immediate delete of kinds that do not return the object."""
    meta = obj.get("metadata", {})
    details: dict[str, Any] = {
        "name": meta.get("name", ""),
        "kind": info.resource,
        "uid": meta.get("uid", ""),
    }
    if info.group:
        details["group"] = info.group
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
