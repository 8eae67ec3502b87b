"""POST (create), PUT (update), PATCH (four patch types) and DELETE of resources."""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from peapod.api import errors
from peapod.api.patch import (
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
    server_side_apply,
)
from peapod.api.resources import ResourceInfo
from peapod.apiserver import rest
from peapod.apiserver.checks import WriteOptions, check_fields, check_object
from peapod.apiserver.context import ApiContext
from peapod.apiserver.handlers.common import parse_bool, parse_int, parse_selectors, reply, write_options
from peapod.apiserver.handlers.read import list_objects
from peapod.apiserver.negotiation import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    PATCH_TYPES,
    STRATEGIC_PATCH,
    Decoded,
    Output,
    decode_object,
    media_type,
    parse_json,
    parse_yaml,
    read_body,
)
from peapod.apiserver.strategy import allows_create_on_update
from peapod.clock import rfc3339


async def decode_checked(
    request: web.Request,
    info: ResourceInfo,
    opts: WriteOptions,
    group: str | None = None,
    version: str | None = None,
    kind: str | None = None,
) -> dict[str, Any]:
    raw = await read_body(request)
    decoded = decode_object(raw, request.headers.get("Content-Type"))
    g = info.group if group is None else group
    v = version or info.version
    k = kind or info.kind
    obj = check_object(decoded.value, g, v, k)
    check_fields(obj, g, v, k, opts, decoded.duplicates)
    return obj


# -- create / update ---------------------------------------------------------------------------


async def handle_create(
    ctx: ApiContext, request: web.Request, info: ResourceInfo, namespace: str | None, out: Output
) -> web.Response:
    opts = write_options(request)
    obj = await decode_checked(request, info, opts)
    created = await rest.create(ctx, info, namespace, obj, opts)
    return reply(created, out, 201, opts.warnings)


async def handle_update(
    ctx: ApiContext,
    request: web.Request,
    info: ResourceInfo,
    namespace: str | None,
    name: str,
    out: Output,
    mode: str = "main",
) -> web.Response:
    opts = write_options(request)
    body = await decode_checked(request, info, opts)

    async def transform(current: dict[str, Any] | None) -> dict[str, Any]:
        return copy.deepcopy(body)

    async def on_missing() -> dict[str, Any]:
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if meta.get("name") not in (None, "", name):
            raise errors.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )
        meta["name"] = name
        meta.pop("resourceVersion", None)
        return await rest.create(ctx, info, namespace, obj, opts)

    spec = rest.UpdateSpec(
        transform,
        mode=mode,
        allow_create=mode == "main" and allows_create_on_update(info),
        on_missing=on_missing,
    )
    result = await rest.update(ctx, info, namespace, name, spec, opts)
    return reply(result, out, 201 if spec.created else 200, opts.warnings)


# -- patch ---------------------------------------------------------------------------------------


def _parse_patch(raw: bytes, ptype: str) -> Any:
    if ptype == APPLY_PATCH:
        try:
            return parse_json(raw, "error decoding YAML").value
        except errors.ApiError:
            return parse_yaml(raw, "error decoding YAML").value
    value = parse_json(raw, "error decoding patch").value
    if ptype == JSON_PATCH and not isinstance(value, list):
        raise errors.bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    if ptype in (MERGE_PATCH, STRATEGIC_PATCH) and not isinstance(value, dict):
        raise errors.bad_request("error decoding patch: patch must be a JSON object")
    return value


def _apply_patch(
    ptype: str, current: dict[str, Any], patch: Any, info: ResourceInfo, group: str, version: str, kind: str
) -> Any:
    try:
        if ptype == JSON_PATCH:
            return apply_json_patch(current, patch)
        if ptype == MERGE_PATCH:
            return apply_merge_patch(current, patch)
        return apply_strategic_merge_patch(current, patch, group, version, kind)
    except errors.ApiError as e:
        raise client_error(e) from None
    except RecursionError:
        raise errors.bad_request("patch is nested too deeply") from None
    except Exception as e:  # every failure to apply a client's patch is the client's error
        raise errors.ApiError(
            422, "Invalid", f"the server rejected our request due to an error in our request: {e}"
        ) from None


async def read_patch(request: web.Request) -> tuple[str, Any]:
    ptype = media_type(request.headers.get("Content-Type"))
    if ptype not in PATCH_TYPES:
        raise errors.unsupported_media_type(ptype or "(none)")
    raw = await read_body(request)
    return ptype, _parse_patch(raw, ptype)


async def handle_patch(
    ctx: ApiContext,
    request: web.Request,
    info: ResourceInfo,
    namespace: str | None,
    name: str,
    out: Output,
    mode: str = "main",
) -> web.Response:
    ptype, patch = await read_patch(request)
    apply = ptype == APPLY_PATCH
    opts = write_options(request, apply=apply)
    if apply:
        return await _server_side_apply(ctx, info, namespace, name, patch, opts, out, mode)

    async def transform(current: dict[str, Any] | None) -> dict[str, Any]:
        assert current is not None
        patched = _apply_patch(
            ptype, current, copy.deepcopy(patch), info, info.group, info.version, info.kind
        )
        obj = check_object(patched, info.group, info.version, info.kind)
        check_fields(obj, info.group, info.version, info.kind, opts)
        return obj

    spec = rest.UpdateSpec(transform, mode=mode, operation="Update")
    result = await rest.update(ctx, info, namespace, name, spec, opts)
    return reply(result, out, 200, _dedupe(opts.warnings))


def client_error(e: errors.ApiError) -> errors.ApiError:
    """Patch failures come from the client's patch: never answer them with a 5xx."""
    if e.code >= 500:
        return errors.bad_request(e.message)
    return e


def _dedupe(warnings: list[str]) -> list[str]:
    return list(dict.fromkeys(warnings))


async def _server_side_apply(
    ctx: ApiContext,
    info: ResourceInfo,
    namespace: str | None,
    name: str,
    applied: Any,
    opts: WriteOptions,
    out: Output,
    mode: str,
) -> web.Response:
    applied = check_object(applied, info.group, info.version, info.kind)
    check_fields(applied, info.group, info.version, info.kind, opts)
    meta = applied["metadata"]
    if not isinstance(meta, dict):
        raise errors.bad_request("metadata must be an object")
    if meta.get("name") not in (None, "", name):
        raise errors.bad_request(
            f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
        )

    def ssa(live: dict[str, Any] | None) -> dict[str, Any]:
        try:
            return server_side_apply(
                live,
                copy.deepcopy(applied),
                manager=opts.field_manager,
                force=opts.force,
                group=info.group,
                version=info.version,
                kind=info.kind,
                now=rfc3339(ctx.clock.now()),
                subresource="" if mode == "main" else mode,
            )
        except errors.ApiError as e:
            raise client_error(e) from None
        except RecursionError:
            raise errors.bad_request("apply configuration is nested too deeply") from None
        except Exception as e:
            raise errors.ApiError(
                422, "Invalid", f"the server rejected our request due to an error in our request: {e}"
            ) from None

    async def transform(current: dict[str, Any] | None) -> dict[str, Any]:
        return ssa(current)

    async def on_missing() -> dict[str, Any]:
        if mode != "main":
            raise errors.not_found(info.group, info.resource, name)
        obj = ssa(None)
        obj.setdefault("metadata", {})["name"] = name
        return await rest.create(ctx, info, namespace, obj, opts, operation="Apply", managed_done=True)

    spec = rest.UpdateSpec(
        transform, mode=mode, allow_create=True, on_missing=on_missing, operation="Apply", managed_done=True
    )
    result = await rest.update(ctx, info, namespace, name, spec, opts)
    return reply(result, out, 201 if spec.created else 200, _dedupe(opts.warnings))


# -- delete ----------------------------------------------------------------------------------------


async def delete_options(request: web.Request) -> rest.DeleteOptions:
    q = request.query
    body: dict[str, Any] = {}
    raw = await read_body(request)
    if raw.strip():
        decoded: Decoded = decode_object(raw, request.headers.get("Content-Type") or "application/json")
        if not isinstance(decoded.value, dict):
            raise errors.bad_request("DeleteOptions must be a JSON object")
        body = decoded.value
        kind = body.get("kind")
        if kind not in (None, "", "DeleteOptions"):
            raise errors.bad_request(
                f"the object provided is unrecognized (must be of type DeleteOptions): {kind}"
            )
    opts = rest.DeleteOptions()
    grace = body.get("gracePeriodSeconds")
    if grace is None:
        grace = parse_int(q, "gracePeriodSeconds", minimum=-(2**31))
    if grace is not None:
        if isinstance(grace, bool) or not isinstance(grace, int):
            raise errors.bad_request("gracePeriodSeconds must be an integer")
        opts.grace_period = max(grace, 0)
    policy = body.get("propagationPolicy") or q.get("propagationPolicy") or None
    if policy is not None and policy not in ("Orphan", "Background", "Foreground"):
        raise errors.bad_request(
            f'propagationPolicy: Unsupported value: "{policy}": supported values: '
            '"Background", "Foreground", "Orphan"'
        )
    orphan = body.get("orphanDependents")
    if orphan is None and q.get("orphanDependents") not in (None, ""):
        orphan = parse_bool(q, "orphanDependents")
    if orphan is not None:
        if not isinstance(orphan, bool):
            raise errors.bad_request("orphanDependents must be a boolean")
        if policy is not None:
            raise errors.bad_request(
                "orphanDependents: Invalid value: Cannot both set OrphanDependents and PropagationPolicy"
            )
        policy = "Orphan" if orphan else "Background"
    opts.propagation = policy
    pre = body.get("preconditions")
    if pre is not None:
        if not isinstance(pre, dict):
            raise errors.bad_request("preconditions must be an object")
        uid, rv = pre.get("uid"), pre.get("resourceVersion")
        if (uid is not None and not isinstance(uid, str)) or (rv is not None and not isinstance(rv, str)):
            raise errors.bad_request("preconditions.uid and preconditions.resourceVersion must be strings")
        opts.uid, opts.resource_version = uid, rv
    dry = body.get("dryRun")
    if dry is None:
        dry = q.getall("dryRun", [])
    if not isinstance(dry, list) or any(d != "All" for d in dry):
        raise errors.bad_request('dryRun: Unsupported value: supported values: "All"')
    opts.dry_run = bool(dry)
    return opts


def delete_body(info: ResourceInfo, result: rest.DeleteResult) -> dict[str, Any]:
    if result.deleted and (info.group, info.kind) not in rest.RETURNS_DELETED_OBJECT:
        return rest.delete_status(info, result.obj)
    return result.obj


async def handle_delete(
    ctx: ApiContext, request: web.Request, info: ResourceInfo, namespace: str | None, name: str, out: Output
) -> web.Response:
    opts = await delete_options(request)
    result = await rest.delete(ctx, info, namespace, name, opts)
    return reply(delete_body(info, result), out, 200)


async def handle_delete_collection(
    ctx: ApiContext, request: web.Request, info: ResourceInfo, namespace: str | None, out: Output
) -> web.Response:
    opts = await delete_options(request)
    sel = parse_selectors(info, request.query)
    query = {k: v for k, v in request.query.items() if k in ("labelSelector", "fieldSelector")}
    items, meta = await list_objects(ctx, info, namespace, query, sel)
    deleted: list[dict[str, Any]] = []
    for obj in items:
        m = obj["metadata"]
        try:
            res = await rest.delete(
                ctx, info, m.get("namespace") if info.namespaced else None, m["name"], opts
            )
        except errors.ApiError as e:
            if e.code == 404:
                continue
            raise
        deleted.append(res.obj)
    meta = {"resourceVersion": meta["resourceVersion"]}
    return reply(
        {"kind": info.list_kind, "apiVersion": info.api_version, "metadata": meta, "items": deleted}, out, 200
    )
