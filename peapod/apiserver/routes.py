"""Resource URL -> handler, with kube-apiserver's verb mapping and 404/405 answers."""

from __future__ import annotations

from aiohttp import web

from peapod.api import errors
from peapod.apiserver.context import ApiContext
from peapod.apiserver.handlers.common import parse_bool
from peapod.apiserver.handlers.read import handle_get, handle_list
from peapod.apiserver.handlers.watch import handle_watch
from peapod.apiserver.handlers.write import (
    handle_create,
    handle_delete,
    handle_delete_collection,
    handle_patch,
    handle_update,
)
from peapod.apiserver.metricsapi import GROUP as METRICS_GROUP
from peapod.apiserver.metricsapi import handle_metrics_api
from peapod.apiserver.negotiation import Output
from peapod.apiserver.requestinfo import parse_resource_path
from peapod.apiserver.reviews import handle_self_subject_access_review, handle_self_subject_rules_review
from peapod.apiserver.subresources import handle_subresource

_NOT_FOUND = "the server could not find the requested resource"
# Listed in the registry but not served by this server.
NOT_SERVED: set[str] = set()


def _not_found() -> errors.ApiError:
    return errors.ApiError(404, "NotFound", _NOT_FOUND)


def _not_allowed(method: str) -> errors.ApiError:
    return errors.method_not_allowed(
        f"the server does not allow this method on the requested resource ({method})"
    )


async def dispatch_resource(
    ctx: ApiContext, request: web.Request, segs: list[str], out: Output
) -> web.StreamResponse:
    ri = parse_resource_path("/" + "/".join(segs))
    if ri is None:
        raise _not_found()
    info = ctx.registry.get(ri.group, ri.version, ri.resource)
    if info is None:
        raise _not_found()
    if not info.namespaced and ri.namespace is not None:
        raise _not_found()
    if info.namespaced and ri.name is not None and ri.namespace is None:
        raise _not_found()
    for part in (ri.namespace, ri.name):
        if part is not None and (part in (".", "..") or not part):
            raise _not_found()
    method = request.method
    ns = ri.namespace if info.namespaced else None
    verbs = info.verbs

    if info.group == METRICS_GROUP:  # computed from node agents' stats, read-only
        if ri.subresource is not None:
            raise _not_found()
        if method != "GET" or ri.watch_path or parse_bool(request.query, "watch"):
            raise _not_allowed(method)
        return await handle_metrics_api(ctx, request, info, ns, ri.name, out)

    if ri.subresource is not None:
        if ri.watch_path or info.subresource(ri.subresource) is None or ri.subresource in NOT_SERVED:
            raise _not_found()
        assert ri.name is not None
        return await handle_subresource(ctx, request, info, ns, ri.name, ri.subresource, out)

    watch = ri.watch_path or (method == "GET" and parse_bool(request.query, "watch"))
    if watch:
        if method != "GET" or "watch" not in verbs:
            raise _not_allowed(method)
        return await handle_watch(ctx, request, info, ns, ri.name, out)

    if ri.name is None:
        if method == "GET":
            if "list" not in verbs:
                raise _not_allowed(method)
            return await handle_list(ctx, request, info, ns, out)
        if method == "POST":
            if "create" not in verbs:
                raise _not_allowed(method)
            if info.namespaced and ns is None:
                raise _not_allowed(method)  # kube: no cluster-wide create for namespaced resources
            if (info.group, info.resource) == ("authorization.k8s.io", "selfsubjectaccessreviews"):
                return await handle_self_subject_access_review(ctx, request, info, out)
            if (info.group, info.resource) == ("authorization.k8s.io", "selfsubjectrulesreviews"):
                return await handle_self_subject_rules_review(ctx, request, info, out)
            return await handle_create(ctx, request, info, ns, out)
        if method == "DELETE":
            if "deletecollection" not in verbs:
                raise _not_allowed(method)
            return await handle_delete_collection(ctx, request, info, ns, out)
        raise _not_allowed(method)

    name = ri.name
    if method == "GET" and "get" in verbs:
        return await handle_get(ctx, request, info, ns, name, out)
    if method == "PUT" and "update" in verbs:
        return await handle_update(ctx, request, info, ns, name, out)
    if method == "PATCH" and "patch" in verbs:
        return await handle_patch(ctx, request, info, ns, name, out)
    if method == "DELETE" and "delete" in verbs:
        return await handle_delete(ctx, request, info, ns, name, out)
    raise _not_allowed(method)
