"""Prometheus metrics of the API server and of the node agent."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from peapod.apiserver.app import build_app
from peapod.apiserver.bootstrap import bootstrap
from peapod.apiserver.prom import ApiServerMetrics, RequestLabels, request_labels
from peapod.node.probes.types import Outcome, ProbeResult
from peapod.node.prom import AgentMetrics, CountingImages, CountingProber, PodStartTracker, probe_type_of
from peapod.store.sqlite import SQLiteStore
from peapod.testing.clock import FakeClock

P = "/api/v1/namespaces/ns/pods"


@pytest.mark.parametrize(("method", "path", "query", "ctype", "want"), [
    ("GET", P, {}, "", RequestLabels("LIST", "", "v1", "pods", "", "namespace")),
    ("GET", P + "/x", {}, "", RequestLabels("GET", "", "v1", "pods", "", "resource")),
    ("GET", P, {"watch": "true"}, "", RequestLabels("WATCH", "", "v1", "pods", "", "namespace")),
    ("GET", "/api/v1/watch/pods", {}, "", RequestLabels("WATCH", "", "v1", "pods", "", "cluster")),
    ("POST", P + "/x/exec", {}, "", RequestLabels("CONNECT", "", "v1", "pods", "exec", "resource")),
    ("GET", P + "/x/log", {}, "", RequestLabels("GET", "", "v1", "pods", "log", "resource")),
    ("DELETE", P, {}, "", RequestLabels("DELETECOLLECTION", "", "v1", "pods", "", "namespace")),
    ("PATCH", "/apis/apps/v1/namespaces/ns/deployments/d", {}, "application/apply-patch+yaml",
     RequestLabels("APPLY", "apps", "v1", "deployments", "", "resource")),
    ("PUT", "/api/v1/nodes/n/status", {}, "", RequestLabels("PUT", "", "v1", "nodes", "status", "resource")),
    ("GET", "/version", {}, "", RequestLabels("GET")),
])
def test_request_labels(method: str, path: str, query: dict[str, str], ctype: str, want: RequestLabels) -> None:
    assert request_labels(method, path, query, ctype) == want


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[str, ApiServerMetrics]]:
    store = await SQLiteStore.open(tmp_path / "state.db")
    clock = FakeClock()
    await bootstrap(store, clock)
    ticks = itertools.count()
    metrics = ApiServerMetrics(timer=lambda: next(ticks) * 0.01)  # every reading is 10 ms later
    srv = TestServer(build_app(store=store, clock=clock, metrics=metrics, bookmark_interval=3600), host="127.0.0.1")
    await srv.start_server()
    try:
        yield f"http://127.0.0.1:{srv.port}", metrics
    finally:
        await srv.close()
        await store.close()


def _value(metrics: ApiServerMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_requests_are_counted_and_timed_by_verb_resource_and_code(
        server: tuple[str, ApiServerMetrics]) -> None:
    base, metrics = server
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/api/v1/namespaces/default/configmaps") as r:
            assert r.status == 200
        async with s.get(f"{base}/api/v1/namespaces/default/configmaps/nope") as r:
            assert r.status == 404
        async with s.get(f"{base}/metrics") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain")
            text = await r.text()
    labels = dict(group="", version="v1", resource="configmaps", subresource="")
    assert _value(metrics, "apiserver_request_duration_seconds_count", verb="LIST", scope="namespace",
                  code="200", **labels) == 1
    assert _value(metrics, "apiserver_request_total", verb="GET", scope="resource", code="404", **labels) == 1
    # the fake timer moves 10 ms per reading: the request spans at least one tick
    assert _value(metrics, "apiserver_request_duration_seconds_sum", verb="LIST", scope="namespace",
                  code="200", **labels) >= 0.01
    assert 'apiserver_request_duration_seconds_bucket{code="200"' in text
    assert _value(metrics, "peapod_store_request_duration_seconds_count", operation="get",
                  type="configmaps") == 1


async def test_watches_are_gauged_while_open_and_not_timed(server: tuple[str, ApiServerMetrics]) -> None:
    base, metrics = server
    watch = dict(group="", version="v1", resource="configmaps")
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/api/v1/configmaps?watch=true&timeoutSeconds=30") as r:
            assert r.status == 200
            for _ in range(100):
                if _value(metrics, "apiserver_registered_watchers", **watch) == 1:
                    break
                await asyncio.sleep(0)
            assert _value(metrics, "apiserver_registered_watchers", **watch) == 1
            assert _value(metrics, "apiserver_longrunning_requests", verb="WATCH", subresource="",
                          scope="cluster", **watch) == 1
    for _ in range(200):
        if _value(metrics, "apiserver_registered_watchers", **watch) == 0:
            break
        await asyncio.sleep(0.01)
    assert _value(metrics, "apiserver_registered_watchers", **watch) == 0
    assert _value(metrics, "apiserver_request_duration_seconds_count", verb="WATCH", subresource="",
                  scope="cluster", code="200", **watch) is None


async def test_no_metrics_route_without_metrics(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "state.db")
    srv = TestServer(build_app(store=store, clock=FakeClock()), host="127.0.0.1")
    await srv.start_server()
    try:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{srv.port}/metrics") as r:
            assert r.status == 404
    finally:
        await srv.close()
        await store.close()


# -- node agent ------------------------------------------------------------------------------------

CONTAINER = {
    "name": "app",
    "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 3},
    "readinessProbe": {"tcpSocket": {"port": 8080}},
}


def test_probe_type_is_found_from_the_handler() -> None:
    assert probe_type_of({"httpGet": {"path": "/healthz", "port": 8080}}, CONTAINER) == "liveness"
    assert probe_type_of({"tcpSocket": {"port": 8080}}, CONTAINER) == "readiness"
    assert probe_type_of({"exec": {"command": ["true"]}}, CONTAINER) == "unknown"


class FakeProber:
    def __init__(self, results: list[ProbeResult]) -> None:
        self.results = results

    async def run(self, handler: Any, *, container: Any, target: Any, timeout: float) -> ProbeResult:
        return self.results.pop(0)


async def test_counting_prober_counts_results_that_ran() -> None:
    metrics = AgentMetrics()
    results = [ProbeResult(Outcome.SUCCESS), ProbeResult(Outcome.FAILURE), ProbeResult(Outcome.WARNING),
               ProbeResult(Outcome.UNKNOWN, error="bad port")]
    prober = CountingProber(FakeProber(results), metrics)
    for _ in range(4):
        await prober.run({"tcpSocket": {"port": 8080}}, container=CONTAINER, target=None, timeout=1)

    def count(result: str) -> float | None:
        return metrics.registry.get_sample_value(
            "prober_probe_total", {"probe_type": "readiness", "result": result, "container": "app"})

    assert (count("successful"), count("failed"), count("unknown")) == (2, 1, None)


class FakeImages:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def get(self, ref: str) -> str:
        return "got " + ref

    async def ensure(self, ref: str, policy: Any = None, auth: Any = None, *, progress: Any = None) -> str:
        self.calls.append(ref)
        for digest, done in (("a", 100), ("a", 300), ("b", 50), ("a", 0), ("a", 300), ("b", 60)):
            progress({"digest": digest, "downloaded": done, "total": 300})
        return ref


async def test_counting_images_adds_downloaded_bytes_and_passes_the_rest_through() -> None:
    metrics = AgentMetrics()
    inner = FakeImages()
    images = CountingImages(inner, metrics)
    seen: list[dict[str, Any]] = []
    assert await images.ensure("busybox", "IfNotPresent", None) == "busybox"
    assert await images.ensure("other", progress=seen.append) == "other"
    # per pull: a to 300, b to 60, a retried from 0 to 300 again -> 300 + 60 + 300
    assert metrics.registry.get_sample_value("kubelet_image_pull_bytes_total") == 2 * 660
    assert len(seen) == 6
    assert images.get("x") == "got x"


def _pod(uid: str, phase: str = "Pending", running: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"metadata": {"uid": uid}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": phase, "containerStatuses": [
                {"name": n, "state": {"running": {}}} for n in running]}}


def test_pod_start_latency_from_first_seen_to_all_containers_running() -> None:
    metrics, clock = AgentMetrics(), FakeClock()
    t = PodStartTracker(metrics, clock)
    t.update(_pod("u1"))
    clock.advance(3)
    t.update(_pod("u1", "Running", ("a",)))  # not all containers yet
    clock.advance(2)
    t.update(_pod("u1", "Running", ("a", "b")))
    t.update(_pod("u1", "Running", ("a", "b")))  # observed once
    t.update(_pod("adopted", "Running", ("a", "b")))  # already running when first seen: not observed
    clock.advance(100)
    t.update(_pod("adopted", "Running", ("a", "b")))
    r = metrics.registry
    assert r.get_sample_value("kubelet_pod_start_duration_seconds_count") == 1
    assert r.get_sample_value("kubelet_pod_start_duration_seconds_sum") == 5
    assert r.get_sample_value("kubelet_pod_start_duration_seconds_bucket", {"le": "5.0"}) == 1
    assert r.get_sample_value("kubelet_pod_start_duration_seconds_bucket", {"le": "4.0"}) == 0
    t.forget(_pod("u1"))
    assert "u1" not in t._done


def test_agent_exposition_has_every_family() -> None:
    metrics = AgentMetrics()
    metrics.set_running(2, 3)
    text = metrics.exposition().decode()
    for family in ("kubelet_pod_start_duration_seconds", "prober_probe_total", "kubelet_image_pull_bytes_total",
                   "kubelet_running_pods 2.0", 'kubelet_running_containers{container_state="running"} 3.0'):
        assert family in text
