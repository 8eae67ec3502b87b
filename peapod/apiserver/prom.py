"""The API server's Prometheus metrics, served on ``/metrics`` (authenticated like any other path).

Named like kube-apiserver's where one exists:
- ``apiserver_request_duration_seconds{verb,group,version,resource,subresource,scope,code}``: latency
  of every request that is not long-running (watches and exec/attach/port-forward are not timed);
- ``apiserver_request_total{...same labels}``: every request, long-running ones included;
- ``apiserver_registered_watchers{group,version,resource}``: watches being served now;
- ``apiserver_longrunning_requests{verb,group,version,resource,subresource,scope}``: watches and
  connections (exec, attach, port-forward, followed logs are GETs and are timed) open now;
- ``peapod_store_request_duration_seconds{operation,type}``: the store's latency per operation
  (kube-apiserver's ``etcd_request_duration_seconds``; the store may be SQLite).

Each API server owns its :class:`ApiServerMetrics` (a registry of its own), passed to ``build_app``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from peapod.apiserver.requestinfo import parse_resource_path
from peapod.store.base import Event, KeyValue, ListResult, Store

# kube-apiserver's request latency buckets
REQUEST_BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20,
                   30, 45, 60)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_CONNECT = {"exec", "attach", "portforward", "proxy"}
_REQUEST_LABELS = ("verb", "group", "version", "resource", "subresource", "scope")
_TRUE = {"1", "true", "True"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class RequestLabels:
    verb: str  # GET LIST WATCH POST PUT PATCH APPLY DELETE DELETECOLLECTION CONNECT, or the method
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    scope: str = ""  # resource | namespace | cluster; "" for non-resource paths

    @property
    def long_running(self) -> bool:
        return self.verb in ("WATCH", "CONNECT")

    def values(self) -> tuple[str, ...]:
        return (self.verb, self.group, self.version, self.resource, self.subresource, self.scope)


def request_labels(method: str, path: str, query: dict[str, str], content_type: str = "") -> RequestLabels:
    """kube-apiserver's metric labels of a request (verb in upper case, as its metrics show)."""
    method = method.upper()
    ri = parse_resource_path(path)
    if ri is None:
        return RequestLabels(verb=method)
    watch = ri.watch_path or (method == "GET" and query.get("watch", "") in _TRUE)
    if ri.subresource in _CONNECT:
        verb = "CONNECT"
    elif watch:
        verb = "WATCH"
    elif method == "GET":
        verb = "GET" if ri.name else "LIST"
    elif method == "DELETE" and not ri.name:
        verb = "DELETECOLLECTION"
    elif method == "PATCH" and content_type.startswith("application/apply-patch"):
        verb = "APPLY"
    else:
        verb = method
    scope = "resource" if ri.name else "namespace" if ri.namespace else "cluster"
    return RequestLabels(verb, ri.group, ri.version, ri.resource, ri.subresource or "", scope)


def _store_type(key: str) -> str:
    """``/registry/deployments.apps/ns/x`` -> ``deployments.apps``."""
    parts = key.split("/")
    return parts[2] if len(parts) > 2 and parts[1] == "registry" else ""


class ApiServerMetrics:
    """The API server's collectors, in a registry of their own."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        self.registry = registry or CollectorRegistry()
        self.timer = timer
        r = self.registry
        self.request_duration = Histogram(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, group, version, resource, "
            "subresource, scope and code.",
            [*_REQUEST_LABELS, "code"], buckets=REQUEST_BUCKETS, registry=r)
        self.requests = Counter("apiserver_request", "Requests by verb, resource and HTTP response code.",
                                [*_REQUEST_LABELS, "code"], registry=r)
        self.watchers = Gauge("apiserver_registered_watchers", "Watches being served, by resource.",
                              ["group", "version", "resource"], registry=r)
        self.longrunning = Gauge("apiserver_longrunning_requests", "Long-running requests being served.",
                                 list(_REQUEST_LABELS), registry=r)
        self.store_duration = Histogram(
            "peapod_store_request_duration_seconds", "Store operation latency by operation and type.",
            ["operation", "type"], buckets=STORE_BUCKETS, registry=r)

    # -- requests ------------------------------------------------------------------------------

    def middleware(self) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
        """Put it first (outermost) so that refused requests are counted too."""

        @web.middleware
        async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            labels = request_labels(request.method, request.path, dict(request.query),
                                    request.headers.get("Content-Type", ""))
            start = self.timer()
            code = 500
            tracked = [self.longrunning.labels(*labels.values())] if labels.long_running else []
            if labels.verb == "WATCH":
                tracked.append(self.watchers.labels(labels.group, labels.version, labels.resource))
            for g in tracked:
                g.inc()
            try:
                resp = await handler(request)
                code = resp.status
                return resp
            except web.HTTPException as e:
                code = e.status
                raise
            finally:
                for g in tracked:
                    g.dec()
                self.observe(labels, code, self.timer() - start)

        return metrics_middleware

    def observe(self, labels: RequestLabels, code: int, seconds: float) -> None:
        values = (*labels.values(), str(code))
        self.requests.labels(*values).inc()
        if not labels.long_running:
            self.request_duration.labels(*values).observe(seconds)

    async def handle_metrics(self, request: web.Request) -> web.Response:
        """``GET /metrics``: the text exposition format."""
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": self.content_type})

    # -- store ---------------------------------------------------------------------------------

    @contextmanager
    def time_store(self, operation: str, key: str) -> Any:
        start = self.timer()
        try:
            yield
        finally:
            self.store_duration.labels(operation, _store_type(key)).observe(self.timer() - start)

    def instrument_store(self, store: Store) -> Store:
        return InstrumentedStore(store, self)


class InstrumentedStore:
    """A Store that times each operation (watch streams are passed through untimed)."""

    def __init__(self, inner: Store, metrics: ApiServerMetrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def get(self, key: str) -> KeyValue | None:
        with self.metrics.time_store("get", key):
            return await self.inner.get(key)

    async def list(self, prefix: str, *, revision: int = 0, limit: int = 0,
                   start_key: str | None = None) -> ListResult:
        with self.metrics.time_store("list", prefix):
            return await self.inner.list(prefix, revision=revision, limit=limit, start_key=start_key)

    async def create(self, key: str, value: bytes) -> KeyValue:
        with self.metrics.time_store("create", key):
            return await self.inner.create(key, value)

    async def update(self, key: str, value: bytes, expected_revision: int) -> KeyValue:
        with self.metrics.time_store("update", key):
            return await self.inner.update(key, value, expected_revision)

    async def delete(self, key: str, expected_revision: int = 0) -> KeyValue:
        with self.metrics.time_store("delete", key):
            return await self.inner.delete(key, expected_revision)

    def watch(self, prefix: str, after_revision: int) -> AsyncIterator[Event]:
        return self.inner.watch(prefix, after_revision)

    async def current_revision(self) -> int:
        return await self.inner.current_revision()

    async def compact(self, revision: int) -> None:
        with self.metrics.time_store("compact", ""):
            await self.inner.compact(revision)

    async def compacted_revision(self) -> int:
        return await self.inner.compacted_revision()

    async def close(self) -> None:
        await self.inner.close()
