"""The aiohttp application: routes, error handling, lifecycle of the watch caches."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

import aiohttp
from aiohttp import web

from peapod.api import errors
from peapod.apiserver import discovery, openapi
from peapod.apiserver.context import ApiContext
from peapod.apiserver.limits import MAX_BODY_BYTES
from peapod.apiserver.negotiation import JSON, dumps, negotiate_output, status_response
from peapod.apiserver.prom import ApiServerMetrics
from peapod.apiserver.routes import dispatch_resource
from peapod.apiserver.watchcache import WatchCaches
from peapod.clock import Clock
from peapod.store.base import Store

log = logging.getLogger(__name__)

CTX: web.AppKey[ApiContext] = web.AppKey("peapod_api_ctx", ApiContext)

DEFAULT_VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-04-23T00:00:00Z",
    "goVersion": "go1.24.2",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def build_app(
    *,
    store: Store,
    clock: Clock,
    middlewares: Iterable[Any] = (),
    server_address: str = "127.0.0.1:6443",
    version_info: dict[str, Any] | None = None,
    node_client_ssl: ssl.SSLContext | bool | None = None,
    node_auth_header: str | None = None,
    node_scheme: str = "https",
    watch_cache_capacity: int = 1024,
    bookmark_interval: float = 60.0,
    pod_security_default: str = "baseline",
    metrics: ApiServerMetrics | None = None,
) -> web.Application:
    """The Kubernetes-compatible API server as an aiohttp Application (not yet started).

    ``pod_security_default``: the PodSecurity enforce level (privileged|baseline|restricted) of
    namespaces without a ``pod-security.kubernetes.io/enforce`` label. ``metrics``: Prometheus
    metrics of requests and store operations, served on ``/metrics`` (behind ``middlewares``).
    """
    if pod_security_default not in ("privileged", "baseline", "restricted"):
        raise ValueError(
            f"pod_security_default must be privileged, baseline or restricted, not {pod_security_default!r}"
        )
    if metrics is not None:
        store = metrics.instrument_store(store)
    ctx = ApiContext(
        store=store,
        clock=clock,
        server_address=server_address,
        version_info={**DEFAULT_VERSION, **(version_info or {})},
        node_client_ssl=node_client_ssl,
        node_auth_header=node_auth_header,
        node_scheme=node_scheme,
        watch_cache_capacity=watch_cache_capacity,
        bookmark_interval=bookmark_interval,
        pod_security_default=pod_security_default,
    )
    first = [metrics.middleware()] if metrics is not None else []
    app = web.Application(
        middlewares=[*first, *middlewares, _errors_middleware], client_max_size=MAX_BODY_BYTES
    )
    app[CTX] = ctx
    app.on_startup.append(_startup)
    app.on_shutdown.append(_shutdown)
    app.on_cleanup.append(_cleanup)
    r = app.router
    r.add_get("/version", _version)
    if metrics is not None:
        r.add_get("/metrics", metrics.handle_metrics)
    for path in ("/livez", "/readyz", "/healthz"):
        r.add_get(path, _ok)
        r.add_get(path + "/{check:.*}", _ok)
    r.add_get("/openapi/v2", _openapi_v2)
    r.add_get("/openapi/v3", _openapi_v3_index)
    r.add_get("/openapi/v3/{path:.+}", _openapi_v3)
    r.add_route("*", "/api", _api_tree)
    r.add_route("*", "/api/{tail:.*}", _api_tree)
    r.add_route("*", "/apis", _api_tree)
    r.add_route("*", "/apis/{tail:.*}", _api_tree)
    return app


async def _startup(app: web.Application) -> None:
    ctx = app[CTX]
    ctx.caches = WatchCaches(ctx.store, capacity=ctx.watch_cache_capacity)
    ctx.node_session = aiohttp.ClientSession()
    for info in ctx.registry.resources:
        if "watch" in info.verbs:
            await ctx.caches.get(info.prefix(None))


async def _shutdown(app: web.Application) -> None:
    ctx = app[CTX]
    if ctx.caches is not None:
        await ctx.caches.stop()


async def _cleanup(app: web.Application) -> None:
    ctx = app[CTX]
    if ctx.node_session is not None:
        await ctx.node_session.close()
        ctx.node_session = None


@web.middleware
async def _errors_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except errors.ApiError as e:
        return status_response(e)
    except web.HTTPRequestEntityTooLarge:
        return status_response(errors.too_large())
    except web.HTTPNotFound:
        return status_response(
            errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        )
    except web.HTTPMethodNotAllowed:
        return status_response(
            errors.method_not_allowed("the server does not allow this method on the requested resource")
        )
    except web.HTTPException:
        raise
    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
        raise
    except Exception as e:
        log.exception("internal error serving %s %s", request.method, request.path)
        return status_response(errors.internal(f"{type(e).__name__}: {e}"))


def _json(obj: Any, status: int = 200, content_type: str = JSON) -> web.Response:
    resp = web.Response(body=dumps(obj), status=status)
    resp.headers["Content-Type"] = content_type
    return resp


async def _version(request: web.Request) -> web.Response:
    return _json(request.app[CTX].version_info)


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok", content_type="text/plain")


async def _openapi_v2(request: web.Request) -> web.Response:
    """Swagger 2.0 as JSON, or as gnostic protobuf when asked (kubectl 1.27/1.28 validate with it).

    The answer's content type is the ``.v1.0`` form: kubectl rejects the ``@v1.0`` form it sends.
    """
    if openapi.wants_v2_protobuf(request.headers.get("Accept")):
        return web.Response(
            body=openapi.openapi_v2_protobuf(), headers={"Content-Type": openapi.V2_PROTOBUF_CONTENT_TYPE}
        )
    resp = web.Response(body=openapi.openapi_v2())
    resp.headers["Content-Type"] = JSON
    return resp


async def _openapi_v3_index(request: web.Request) -> web.Response:
    return _json(openapi.openapi_v3_index())


async def _openapi_v3(request: web.Request) -> web.Response:
    path = request.match_info["path"]
    body = openapi.openapi_v3_document(path)
    if body is None:
        raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = JSON
    digest = openapi.openapi_v3_hash(path)
    if digest:
        resp.headers["Etag"] = f'"{digest}"'
        if request.query.get("hash") == digest:
            resp.headers["Cache-Control"] = "public, immutable"
    return resp


def _segments(request: web.Request) -> list[str]:
    raw = request.raw_path.split("?", 1)[0]
    segs = [unquote(s) for s in raw.split("/") if s != ""]
    for s in segs:
        if "/" in s or "\x00" in s:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
    return segs


async def _api_tree(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    segs = _segments(request)
    if (segs[0] == "api" and len(segs) <= 2) or (segs[0] == "apis" and len(segs) <= 3):
        if request.method != "GET":
            raise errors.method_not_allowed("the server does not allow this method on the requested resource")
        return _discovery(ctx, request, segs)
    out = negotiate_output(request.headers.get("Accept"))
    return await dispatch_resource(ctx, request, segs, out)


_NOT_FOUND = errors.ApiError(404, "NotFound", "the server could not find the requested resource")


def _discovery(ctx: ApiContext, request: web.Request, segs: list[str]) -> web.Response:
    if len(segs) == 1:
        version, ctype = discovery.negotiate_discovery(request.headers.get("Accept"))
        core = segs[0] == "api"
        if version is not None:
            return _json(discovery.aggregated_discovery(core, version), content_type=ctype)
        if core:
            return _json(discovery.api_versions(ctx.server_address))
        return _json(discovery.api_group_list())
    if segs[0] == "api":
        doc = discovery.api_resource_list("", segs[1])
    elif len(segs) == 2:
        doc = discovery.api_group(segs[1])
    else:
        doc = discovery.api_resource_list(segs[1], segs[2])
    if doc is None:
        raise _NOT_FOUND
    return _json(doc)
