"""metrics.k8s.io served by the API server from node agents' summaries (a fake agent over HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from peapod.apiserver.app import build_app
from peapod.apiserver.bootstrap import bootstrap
from peapod.apiserver.discovery import aggregated_discovery, api_group_list, api_resource_list
from peapod.apiserver.metricsapi import (
    agent_endpoint,
    cpu_quantity,
    go_duration,
    memory_quantity,
    node_metrics,
    pod_metrics,
)
from peapod.store.sqlite import SQLiteStore
from peapod.testing.clock import FakeClock

Obj = dict[str, Any]


def test_quantities_and_durations() -> None:
    assert cpu_quantity(123456) == "123456n"
    assert cpu_quantity(-5) == "0n"
    assert memory_quantity(12345 * 1024) == "12345Ki"
    assert memory_quantity(1000) == "1000"
    assert memory_quantity(0) == "0"
    assert go_duration(10.0) == "10s"
    assert go_duration(10.5) == "10.5s"
    assert go_duration(2.0004) == "2s"


def test_conversions_need_a_cpu_rate() -> None:
    node = {"metadata": {"name": "n1", "labels": {"zone": "a"}}}
    stats = {"cpu": {"time": "2026-01-01T00:00:10Z", "usageNanoCores": 250_000_000},
             "memory": {"workingSetBytes": 2048}, "windowSeconds": 10.0}
    m = node_metrics(node, stats, "NOW")
    assert m == {"kind": "NodeMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
                 "metadata": {"name": "n1", "creationTimestamp": "NOW", "labels": {"zone": "a"}},
                 "timestamp": "2026-01-01T00:00:10Z", "window": "10s",
                 "usage": {"cpu": "250000000n", "memory": "2Ki"}}
    assert node_metrics(node, {"cpu": {"usageCoreNanoSeconds": 5}, "memory": {"workingSetBytes": 1}}, "N") is None
    pod = {"metadata": {"name": "p", "namespace": "ns"}}
    sp = {"cpu": {"time": "T"}, "windowSeconds": 4,
          "containers": [{"name": "a", "cpu": {"usageNanoCores": 1}, "memory": {"workingSetBytes": 1024}},
                         {"name": "b", "cpu": {}, "memory": {"workingSetBytes": 1024}}]}
    assert pod_metrics(pod, sp, "N") is None  # one container without a rate yet
    sp["containers"].pop()
    assert pod_metrics(pod, sp, "N")["containers"] == [{"name": "a", "usage": {"cpu": "1n", "memory": "1Ki"}}]
    assert pod_metrics(pod, {"containers": []}, "N") is None


def test_agent_endpoint_from_node_status() -> None:
    status = {"addresses": [{"type": "Hostname", "address": "h"}, {"type": "InternalIP", "address": "10.0.0.1"}],
              "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}
    assert agent_endpoint({"status": status}) == ("10.0.0.1", 10250)
    assert agent_endpoint({"status": {"addresses": status["addresses"]}}) is None


def test_discovery_lists_the_metrics_group() -> None:
    assert any(g["name"] == "metrics.k8s.io" for g in api_group_list()["groups"])
    rl = api_resource_list("metrics.k8s.io", "v1beta1")
    assert rl is not None
    assert {(r["name"], r["kind"], r["namespaced"], tuple(r["verbs"])) for r in rl["resources"]} == {
        ("nodes", "NodeMetrics", False, ("get", "list")), ("pods", "PodMetrics", True, ("get", "list"))}
    assert "metrics.k8s.io" in [g["metadata"]["name"] for g in aggregated_discovery(False)["items"]]


def _summary(node: str, pods: list[tuple[str, str, str]]) -> Obj:
    return {
        "node": {"nodeName": node, "cpu": {"time": "2026-01-01T00:00:00Z", "usageNanoCores": 1_500_000_000},
                 "memory": {"workingSetBytes": 512 << 20}, "windowSeconds": 10.0},
        "pods": [{"podRef": {"name": n, "namespace": ns, "uid": uid}, "windowSeconds": 10.0,
                  "cpu": {"time": "2026-01-01T00:00:00Z", "usageNanoCores": 200_000_000},
                  "memory": {"workingSetBytes": 4 << 20},
                  "containers": [{"name": "c", "cpu": {"usageNanoCores": 200_000_000},
                                  "memory": {"workingSetBytes": 4 << 20}}]}
                 for ns, n, uid in pods],
    }


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[str, aiohttp.ClientSession, dict[str, Obj]]]:
    """An API server (plain HTTP to agents) and a fake agent whose summary the test sets."""
    summaries: dict[str, Obj] = {}

    async def summary(request: web.Request) -> web.Response:
        return web.json_response(summaries["n1"])

    agent_app = web.Application()
    agent_app.router.add_get("/stats/summary", summary)
    agent = TestServer(agent_app, host="127.0.0.1")
    await agent.start_server()
    store = await SQLiteStore.open(tmp_path / "state.db")
    clock = FakeClock()
    await bootstrap(store, clock)
    server = TestServer(build_app(store=store, clock=clock, node_scheme="http"), host="127.0.0.1")
    await server.start_server()
    base = f"http://127.0.0.1:{server.port}"
    session = aiohttp.ClientSession()
    try:
        for name, port in (("n1", agent.port), ("n2", 1)):  # n2's agent does not answer
            node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"n": name}},
                    "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                               "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}}
            async with session.post(f"{base}/api/v1/nodes", json=node) as r:
                assert r.status == 201, await r.text()
        for ns, name, labels in (("default", "a", {"app": "x"}), ("default", "b", {"app": "y"}),
                                 ("kube-system", "c", {"app": "x"})):
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
                   "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}}
            async with session.post(f"{base}/api/v1/namespaces/{ns}/pods", json=pod) as r:
                assert r.status == 201, await r.text()
                summaries.setdefault("pods", []).append((ns, name, (await r.json())["metadata"]["uid"]))
        summaries["n1"] = _summary("n1", summaries.pop("pods")[:2])  # pod c has no stats yet
        yield base, session, summaries
    finally:
        await session.close()
        await server.close()
        await agent.close()
        await store.close()


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, Obj]:
    async with session.get(url) as r:
        return r.status, await r.json()


async def test_node_metrics_list_and_get(api: tuple[str, aiohttp.ClientSession, dict[str, Obj]]) -> None:
    base, session, _ = api
    code, body = await _get(session, f"{base}/apis/metrics.k8s.io/v1beta1/nodes")
    assert code == 200, body
    assert body["kind"] == "NodeMetricsList" and body["apiVersion"] == "metrics.k8s.io/v1beta1"
    assert [(i["metadata"]["name"], i["usage"]) for i in body["items"]] == [
        ("n1", {"cpu": "1500000000n", "memory": "524288Ki"})]
    code, one = await _get(session, f"{base}/apis/metrics.k8s.io/v1beta1/nodes/n1")
    assert code == 200 and one["kind"] == "NodeMetrics" and one["window"] == "10s"
    code, missing = await _get(session, f"{base}/apis/metrics.k8s.io/v1beta1/nodes/n2")
    assert code == 404 and missing["reason"] == "NotFound"
    code, sel = await _get(session, f"{base}/apis/metrics.k8s.io/v1beta1/nodes?labelSelector=n%3Dn2")
    assert code == 200 and sel["items"] == []


async def test_pod_metrics_by_namespace_selector_and_name(
        api: tuple[str, aiohttp.ClientSession, dict[str, Obj]]) -> None:
    base, session, _ = api
    gv = f"{base}/apis/metrics.k8s.io/v1beta1"
    code, body = await _get(session, f"{gv}/namespaces/default/pods")
    assert code == 200 and body["kind"] == "PodMetricsList"
    assert [i["metadata"]["name"] for i in body["items"]] == ["a", "b"]
    assert body["items"][0]["containers"] == [{"name": "c", "usage": {"cpu": "200000000n", "memory": "4096Ki"}}]
    code, body = await _get(session, f"{gv}/pods")  # all namespaces: c has no stats yet
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in body["items"]] == [
        ("default", "a"), ("default", "b")]
    code, body = await _get(session, f"{gv}/namespaces/default/pods?labelSelector=app%3Dy")
    assert [i["metadata"]["name"] for i in body["items"]] == ["b"]
    code, body = await _get(session, f"{gv}/namespaces/default/pods?fieldSelector=metadata.name%3Da")
    assert [i["metadata"]["name"] for i in body["items"]] == ["a"]
    code, one = await _get(session, f"{gv}/namespaces/default/pods/b")
    assert code == 200 and one["kind"] == "PodMetrics" and one["metadata"]["labels"] == {"app": "y"}
    code, _ = await _get(session, f"{gv}/namespaces/kube-system/pods/c")
    assert code == 404
    code, _ = await _get(session, f"{gv}/namespaces/default/pods/zzz")
    assert code == 404


async def test_read_only(api: tuple[str, aiohttp.ClientSession, dict[str, Obj]]) -> None:
    base, session, _ = api
    gv = f"{base}/apis/metrics.k8s.io/v1beta1"
    async with session.post(f"{gv}/nodes", json={}) as r:
        assert r.status == 405
    async with session.delete(f"{gv}/namespaces/default/pods/a") as r:
        assert r.status == 405
    async with session.get(f"{gv}/nodes?watch=true") as r:
        assert r.status == 405
    async with session.get(f"{gv}/namespaces/default/pods/a/status") as r:
        assert r.status == 404
