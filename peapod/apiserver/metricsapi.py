"""metrics.k8s.io/v1beta1 (NodeMetrics, PodMetrics): what ``kubectl top`` reads.

Served by the API server itself (no aggregated metrics-server): each request asks the node agents
concerned for their ``/stats/summary`` (:mod:`peapod.node.stats`) over the same client-certificate
TLS used for pods/log and exec, and converts it the way metrics-server does. Read-only: get and list
(nodes cluster-wide, pods per namespace or across all), with label and field selectors
(``metadata.name``, ``metadata.namespace``). A node that does not answer is left out, as are pods
and nodes without a CPU rate yet (fewer than two samples).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import aiohttp
from aiohttp import web

from peapod.api import errors
from peapod.api.resources import REGISTRY, ResourceInfo
from peapod.api.selectors import parse_field_selector_or_raise, parse_label_selector_or_raise
from peapod.apiserver.context import ApiContext
from peapod.apiserver.handlers.common import render_list, render_object, reply
from peapod.apiserver.negotiation import Output
from peapod.apiserver.storage import decode
from peapod.clock import rfc3339

log = logging.getLogger(__name__)

Obj = dict[str, Any]
GROUP = "metrics.k8s.io"
SUMMARY_PATH = "/stats/summary"
SUMMARY_TIMEOUT = 5.0
_NODES = REGISTRY.get("", "v1", "nodes")
_PODS = REGISTRY.get("", "v1", "pods")


# -- conversion (pure) -----------------------------------------------------------------------------


def cpu_quantity(nanocores: int) -> str:
    return f"{max(0, int(nanocores))}n"


def memory_quantity(n: int) -> str:
    """metrics-server's BinarySI form: ``12345Ki`` when a whole number of KiB, else plain bytes."""
    n = max(0, int(n))
    return f"{n // 1024}Ki" if n and n % 1024 == 0 else str(n)


def go_duration(seconds: float) -> str:
    """A metav1.Duration string: ``10s``, ``10.5s``."""
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"{text or '0'}s"


def _usage(stats: Obj) -> Obj | None:
    cpu = (stats.get("cpu") or {}).get("usageNanoCores")
    mem = (stats.get("memory") or {}).get("workingSetBytes")
    if cpu is None or mem is None:
        return None
    return {"cpu": cpu_quantity(cpu), "memory": memory_quantity(mem)}


def node_metrics(node: Obj, summary_node: Obj, now: str) -> Obj | None:
    """NodeMetrics of ``node`` from its agent's summary; None without a CPU rate yet."""
    usage = _usage(summary_node)
    if usage is None:
        return None
    md = node.get("metadata") or {}
    return {
        "kind": "NodeMetrics",
        "apiVersion": f"{GROUP}/v1beta1",
        "metadata": {"name": md.get("name"), "creationTimestamp": now, "labels": dict(md.get("labels") or {})},
        "timestamp": (summary_node.get("cpu") or {}).get("time") or now,
        "window": go_duration(float(summary_node.get("windowSeconds") or 0)),
        "usage": usage,
    }


def pod_metrics(pod: Obj, summary_pod: Obj, now: str) -> Obj | None:
    """PodMetrics of ``pod``; None unless every reported container has a CPU rate."""
    containers = []
    for c in summary_pod.get("containers") or []:
        usage = _usage(c)
        if usage is None:
            return None
        containers.append({"name": c.get("name"), "usage": usage})
    if not containers:
        return None
    md = pod.get("metadata") or {}
    return {
        "kind": "PodMetrics",
        "apiVersion": f"{GROUP}/v1beta1",
        "metadata": {"name": md.get("name"), "namespace": md.get("namespace"), "creationTimestamp": now,
                     "labels": dict(md.get("labels") or {})},
        "timestamp": (summary_pod.get("cpu") or {}).get("time") or now,
        "window": go_duration(float(summary_pod.get("windowSeconds") or 0)),
        "containers": containers,
    }


def agent_endpoint(node: Obj) -> tuple[str, int] | None:
    """(address, port) of a node's agent from its status, as pods/log proxying finds it."""
    status = node.get("status") or {}
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or [] if isinstance(a, dict)}
    address = addresses.get("InternalIP") or addresses.get("ExternalIP") or addresses.get("Hostname")
    if not isinstance(port, int) or port <= 0 or not address:
        return None
    return address, port


# -- fetching --------------------------------------------------------------------------------------


def _ssl(ctx: ApiContext) -> ssl.SSLContext | bool | None:
    if ctx.node_scheme != "https":
        return None
    return ctx.node_client_ssl if ctx.node_client_ssl is not None else True


async def fetch_summary(ctx: ApiContext, node: Obj) -> Obj | None:
    """The agent's stats summary, or None (logged) when it cannot be had."""
    name = (node.get("metadata") or {}).get("name")
    ep = agent_endpoint(node)
    if ep is None or ctx.node_session is None:
        return None
    host, port = ep
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    headers = {"Authorization": ctx.node_auth_header} if ctx.node_auth_header else {}
    try:
        async with ctx.node_session.get(
            f"{ctx.node_scheme}://{host}:{port}{SUMMARY_PATH}", ssl=_ssl(ctx), headers=headers,
            timeout=aiohttp.ClientTimeout(total=SUMMARY_TIMEOUT),
        ) as resp:
            if resp.status != 200:
                log.info("stats of node %s: HTTP %s", name, resp.status)
                return None
            body = await resp.json(content_type=None)
            return body if isinstance(body, dict) else None
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as e:
        log.info("stats of node %s: %s", name, e)
        return None


async def _nodes(ctx: ApiContext) -> list[Obj]:
    assert _NODES is not None
    return [decode(kv) for kv in (await ctx.storage.list(_NODES, None)).items]


async def _summaries(ctx: ApiContext, nodes: list[Obj]) -> dict[str, Obj]:
    got = await asyncio.gather(*(fetch_summary(ctx, n) for n in nodes))
    return {n["metadata"]["name"]: s for n, s in zip(nodes, got, strict=True) if s is not None}


# -- handlers --------------------------------------------------------------------------------------


def _selectors(request: web.Request) -> tuple[Any, Any]:
    return (parse_label_selector_or_raise(request.query.get("labelSelector")),
            parse_field_selector_or_raise(request.query.get("fieldSelector")))


def _fields(obj: Obj) -> dict[str, str]:
    md = obj.get("metadata") or {}
    return {"metadata.name": md.get("name") or "", "metadata.namespace": md.get("namespace") or ""}


async def handle_metrics_api(
    ctx: ApiContext, request: web.Request, info: ResourceInfo, namespace: str | None, name: str | None,
    out: Output,
) -> web.Response:
    """GET of one NodeMetrics/PodMetrics or a list of them (the router checked the verb)."""
    now = rfc3339(ctx.clock.now())
    labels, fields = _selectors(request)
    if info.resource == "nodes":
        items = await _node_items(ctx, name, now)
    else:
        items = await _pod_items(ctx, namespace, name, now)
    if name is not None:
        if not items:
            raise errors.not_found(GROUP, info.resource, name)
        return reply(render_object(ctx, request, info, items[0], out), out)
    items = [i for i in items if labels.matches(i["metadata"].get("labels")) and fields.matches(_fields(i))]
    return reply(render_list(ctx, request, info, items, {"resourceVersion": ""}, out), out)


async def _node_items(ctx: ApiContext, name: str | None, now: str) -> list[Obj]:
    nodes = [n for n in await _nodes(ctx) if name is None or n["metadata"].get("name") == name]
    summaries = await _summaries(ctx, nodes)
    items = []
    for n in nodes:
        s = summaries.get(n["metadata"]["name"])
        m = node_metrics(n, s.get("node") or {}, now) if s else None
        if m is not None:
            items.append(m)
    return sorted(items, key=lambda m: m["metadata"]["name"])


async def _pod_items(ctx: ApiContext, namespace: str | None, name: str | None, now: str) -> list[Obj]:
    assert _PODS is not None
    if name is not None:
        got = await ctx.storage.get(_PODS, namespace, name)
        pods = [got[0]] if got is not None else []
    else:
        pods = [decode(kv) for kv in (await ctx.storage.list(_PODS, namespace)).items]
    pods = [p for p in pods if (p.get("spec") or {}).get("nodeName")]
    wanted = {p["spec"]["nodeName"] for p in pods}
    nodes = [n for n in await _nodes(ctx) if n["metadata"].get("name") in wanted]
    summaries = await _summaries(ctx, nodes)
    by_uid: dict[str, Obj] = {}
    for s in summaries.values():
        for sp in s.get("pods") or []:
            uid = (sp.get("podRef") or {}).get("uid")
            if uid:
                by_uid[uid] = sp
    items = []
    for p in pods:
        sp = by_uid.get(p["metadata"].get("uid"))
        m = pod_metrics(p, sp, now) if sp else None
        if m is not None:
            items.append(m)
    return sorted(items, key=lambda m: (m["metadata"]["namespace"], m["metadata"]["name"]))
