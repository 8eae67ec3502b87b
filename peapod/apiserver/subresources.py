"""Subresources served by the API server itself: status, scale, binding, finalize, ephemeralcontainers."""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from peapod.api import errors
from peapod.api.resources import ResourceInfo
from peapod.apiserver import rest
from peapod.apiserver.checks import check_fields, check_object
from peapod.apiserver.context import ApiContext
from peapod.apiserver.handlers.common import reply, write_options
from peapod.apiserver.handlers.read import get_object
from peapod.apiserver.handlers.write import (
    _apply_patch,
    decode_checked,
    handle_patch,
    handle_update,
    read_patch,
)
from peapod.apiserver.negotiation import APPLY_PATCH, Output
from peapod.clock import rfc3339

# subresource -> update mode of the parent object
_MODES = {"status": "status", "finalize": "finalize", "ephemeralcontainers": "ephemeralcontainers"}


async def handle_subresource(
    ctx: ApiContext,
    request: web.Request,
    info: ResourceInfo,
    namespace: str | None,
    name: str,
    sub: str,
    out: Output,
) -> web.StreamResponse:
    method = request.method
    if sub in _MODES:
        if method == "GET" and sub != "finalize":
            return reply(await get_object(ctx, info, namespace, name), out)
        if method == "PUT":
            return await handle_update(ctx, request, info, namespace, name, out, mode=_MODES[sub])
        if method == "PATCH" and sub != "finalize":
            return await handle_patch(ctx, request, info, namespace, name, out, mode=_MODES[sub])
    elif sub == "scale":
        if method == "GET":
            return reply(to_scale(await get_object(ctx, info, namespace, name)), out)
        if method in ("PUT", "PATCH"):
            return await _write_scale(ctx, request, info, namespace, name, out)
    elif sub == "binding" and method == "POST":
        return await _bind(ctx, request, info, namespace, name, out)
    elif sub == "token" and method == "POST":
        from peapod.apiserver.serviceaccounts import handle_token_request

        return await handle_token_request(ctx, request, info, namespace, name, out)
    elif sub in ("log", "exec", "attach", "portforward"):
        from peapod.apiserver.nodeproxy import proxy_to_node

        if (sub == "log" and method != "GET") or (sub != "log" and method not in ("GET", "POST")):
            raise errors.method_not_allowed(f"{method} is not supported on pods/{sub}")
        return await proxy_to_node(ctx, request, info, namespace, name, sub)
    raise errors.method_not_allowed(
        f"the server does not allow this method on the requested resource ({method} {info.resource}/{sub})"
    )


# -- scale ---------------------------------------------------------------------------------------


def selector_string(selector: Any) -> str:
    """A metav1.LabelSelector as the string form kube puts in Scale.status.selector."""
    if not isinstance(selector, dict):
        return ""
    parts: list[tuple[str, str]] = []
    for k, v in sorted((selector.get("matchLabels") or {}).items()):
        parts.append((k, f"{k}={v}"))
    for e in selector.get("matchExpressions") or []:
        key, op, values = e.get("key", ""), e.get("operator", ""), sorted(e.get("values") or [])
        if op == "In":
            parts.append((key, f"{key} in ({','.join(values)})"))
        elif op == "NotIn":
            parts.append((key, f"{key} notin ({','.join(values)})"))
        elif op == "Exists":
            parts.append((key, key))
        elif op == "DoesNotExist":
            parts.append((key, f"!{key}"))
    return ",".join(p for _, p in sorted(parts, key=lambda x: x[0]))


def to_scale(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata", {})
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    scale_status: dict[str, Any] = {"replicas": status.get("replicas", 0)}
    sel = selector_string(spec.get("selector"))
    if sel:
        scale_status["selector"] = sel
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": spec.get("replicas", 1)},
        "status": scale_status,
    }


async def _write_scale(
    ctx: ApiContext, request: web.Request, info: ResourceInfo, namespace: str | None, name: str, out: Output
) -> web.Response:
    opts = write_options(request)
    if request.method == "PUT":
        body = await decode_checked(request, info, opts, "autoscaling", "v1", "Scale")
        patch = None
        ptype = ""
    else:
        ptype, patch = await read_patch(request)
        if ptype == APPLY_PATCH:
            raise errors.unsupported_media_type(f"{ptype} (server-side apply is not supported on /scale)")
        body = None

    async def transform(current: dict[str, Any] | None) -> dict[str, Any]:
        assert current is not None
        scale = to_scale(current)
        if body is not None:
            wanted = copy.deepcopy(body)
        else:
            wanted = _apply_patch(ptype, scale, copy.deepcopy(patch), info, "autoscaling", "v1", "Scale")
            wanted = check_object(wanted, "autoscaling", "v1", "Scale")
            check_fields(wanted, "autoscaling", "v1", "Scale", opts)
        wmeta = wanted.get("metadata") if isinstance(wanted.get("metadata"), dict) else {}
        rv = wmeta.get("resourceVersion")
        if rv not in (None, "") and str(rv) != current["metadata"].get("resourceVersion"):
            raise errors.stale_conflict(info.group, info.resource, name)
        replicas = (
            (wanted.get("spec") or {}).get("replicas", 0) if isinstance(wanted.get("spec"), dict) else 0
        )
        if (
            isinstance(replicas, bool)
            or not isinstance(replicas, int)
            or replicas < 0
            or replicas > 2**31 - 1
        ):
            raise errors.invalid_object(
                "autoscaling",
                "Scale",
                name,
                [errors.invalid("spec.replicas", replicas, "must be greater than or equal to 0")],
            )
        new = copy.deepcopy(current)
        new.setdefault("spec", {})["replicas"] = replicas
        new["metadata"].pop("resourceVersion", None)
        return new

    spec = rest.UpdateSpec(transform, mode="main")
    result = await rest.update(ctx, info, namespace, name, spec, opts)
    return reply(to_scale(result), out, 200, opts.warnings)


# -- binding -------------------------------------------------------------------------------------


async def _bind(
    ctx: ApiContext, request: web.Request, info: ResourceInfo, namespace: str | None, name: str, out: Output
) -> web.Response:
    opts = write_options(request)
    binding = await decode_checked(request, info, opts, "", "v1", "Binding")
    bmeta = binding.get("metadata") or {}
    if bmeta.get("name") not in (None, "", name):
        raise errors.bad_request(
            f"the name of the object ({bmeta.get('name')}) does not match the name on the URL ({name})"
        )
    target = binding.get("target") or {}
    node = target.get("name") if isinstance(target, dict) else None
    if not isinstance(node, str) or not node:
        raise errors.invalid_object("", "Binding", name, [errors.required("target.name")])
    if target.get("kind") not in (None, "", "Node"):
        raise errors.invalid_object(
            "", "Binding", name, [errors.not_supported("target.kind", target.get("kind"), ["Node"])]
        )

    async def transform(current: dict[str, Any] | None) -> dict[str, Any]:
        assert current is not None
        meta = current["metadata"]
        if meta.get("deletionTimestamp"):
            raise errors.conflict(
                "", "pods/binding", name, f"pod {name} is being deleted, cannot be assigned to a host"
            )
        assigned = (current.get("spec") or {}).get("nodeName")
        if assigned:
            raise errors.conflict(
                "", "pods/binding", name, f'pod {name} is already assigned to node "{assigned}"'
            )
        current.setdefault("spec", {})["nodeName"] = node
        annotations = bmeta.get("annotations")
        if isinstance(annotations, dict) and annotations:
            meta.setdefault("annotations", {}).update(annotations)
        status = current.setdefault("status", {})
        conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        conds.append(
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": rfc3339(ctx.clock.now()),
            }
        )
        status["conditions"] = conds
        meta.pop("resourceVersion", None)
        return current

    spec = rest.UpdateSpec(transform, mode="raw")
    await rest.update(ctx, info, namespace, name, spec, opts)
    return reply(
        {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201},
        out,
        201,
        opts.warnings,
    )
