"""Deployment and scheduler benchmark through the real API.

Usage: .venv/bin/python bench/deployment_bench.py [--smoke] [--replicas 100] [--nodes 1000] [--pods 2000]
       [--parts deployment,scheduler] [--json OUT]

(a) ``deployment`` (root): a real ``peapod up`` and a loopback registry; a Deployment of ``--replicas``
    busybox ``sleep`` pods is created and timed until every replica is available (also: until all are
    bound, until all run); then ``kubectl set image``-style patch to a new tag, timed until the rollout
    is complete (updated == available == replicas, old pods gone); then the Deployment is deleted, timed
    until the last pod is gone. Default RollingUpdate (25% surge / 25% unavailable), grace period 1 s.
(b) ``scheduler``: ``peapod server`` (no agent) with ``--nodes`` Node objects made by hand (Ready, 4 cpu,
    16Gi, 110 pods, 3 zones) and ``--pods`` plain pods (100m / 128Mi) POSTed as fast as the API takes
    them; bound pods/s end to end, from the first POST to the last binding seen on a watch opened
    beforehand, next to the pure scheduling core on the same sizes (bench/scheduler_bench.py).
    The simulated nodes have no Lease: the node lifecycle controller marks them unreachable 40 s after
    it first sees them, so the run reports how many were tainted by the end (0 means the figure is clean).
Nothing is asserted: numbers only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peapod.testing.cluster import PeapodCluster


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Api:
    """A plain aiohttp client with the cluster's admin token (the benchmark's own load is small)."""

    def __init__(self, cluster: PeapodCluster, limit: int = 100) -> None:
        self.base = cluster.url
        ctx = ssl.create_default_context(cafile=str(cluster.data_dir / "tls" / "ca.crt"))
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx, limit=limit),
            headers={"Authorization": f"Bearer {cluster.admin_token()}"},
            timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
        )

    async def call(self, method: str, path: str, body: Any = None,
                   content_type: str = "application/json") -> Any:
        data = json.dumps(body).encode() if body is not None else None
        async with self.session.request(method, self.base + path, data=data,
                                        headers={"Content-Type": content_type}) as r:
            payload = await r.read()
            if r.status >= 300:
                raise RuntimeError(f"{method} {path}: {r.status} {payload[:300]!r}")
            return json.loads(payload) if payload else None

    async def close(self) -> None:
        await self.session.close()


# How long any one wait may take (``--timeout``; --smoke: 120 s), so a stuck rollout fails the run.
TIMEOUT = 1800.0


async def poll(check: Any, interval: float = 0.25, timeout: float | None = None) -> float:
    """Seconds until ``await check()`` is true."""
    t0 = time.perf_counter()
    while not await check():
        if time.perf_counter() - t0 > (TIMEOUT if timeout is None else timeout):
            raise TimeoutError("gave up waiting")
        await asyncio.sleep(interval)
    return time.perf_counter() - t0


# -- (a) a Deployment on one real node ----------------------------------------------------------------------

def deployment(name: str, image: str, replicas: int) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {
                         "terminationGracePeriodSeconds": 1,
                         "containers": [{"name": "c", "image": image, "command": ["sleep", "3600"]}]}}}}


async def deployment_part(replicas: int) -> dict[str, Any]:
    from peapod.testing.images import busybox_image, push_image
    from peapod.testing.registry import LoopbackRegistry

    out: dict[str, Any] = {"replicas": replicas}
    with LoopbackRegistry() as reg, tempfile.TemporaryDirectory() as d:
        await push_image(reg.ref("busybox", "1"), busybox_image())
        await push_image(reg.ref("busybox", "2"), busybox_image(extra_files={"etc/v2": "2\n"}))
        c = PeapodCluster(Path(d), command="up")
        c.start()
        api = Api(c)
        try:
            await poll(lambda: _has_node(api), timeout=60)
            ns = "/apis/apps/v1/namespaces/default/deployments"
            pods_path = "/api/v1/namespaces/default/pods?labelSelector=app%3Dbench"

            async def pods() -> list[dict[str, Any]]:
                return list((await api.call("GET", pods_path))["items"])

            async def dep() -> dict[str, Any]:
                return dict(await api.call("GET", f"{ns}/bench"))

            milestones: dict[str, float] = {}

            async def watch_milestones(t0: float) -> None:
                while "running" not in milestones:
                    items = await pods()
                    if "bound" not in milestones and len(items) == replicas and all(
                            p["spec"].get("nodeName") for p in items):
                        milestones["bound"] = time.perf_counter() - t0
                    if len(items) == replicas and all(p["status"].get("phase") == "Running" for p in items):
                        milestones["running"] = time.perf_counter() - t0
                    await asyncio.sleep(0.5)

            async def available() -> bool:
                st = (await dep()).get("status") or {}
                return st.get("availableReplicas") == replicas == st.get("updatedReplicas")

            log(f"creating a Deployment of {replicas}")
            t0 = time.perf_counter()
            await api.call("POST", ns, deployment("bench", reg.ref("busybox", "1"), replicas))
            watcher = asyncio.create_task(watch_milestones(t0))
            out["create_to_available_s"] = round(await poll(available, 0.5), 2)
            await asyncio.wait_for(watcher, 120)
            out["create_to_all_bound_s"] = round(milestones["bound"], 2)
            out["create_to_all_running_s"] = round(milestones["running"], 2)
            log(f"available after {out['create_to_available_s']} s; rolling to a new tag")

            async def rolled() -> bool:
                d = await dep()
                st = d.get("status") or {}
                return (st.get("observedGeneration", 0) >= d["metadata"]["generation"]
                        and st.get("updatedReplicas") == st.get("availableReplicas") == st.get("replicas")
                        == replicas and len(await pods()) == replicas)

            await api.call("PATCH", f"{ns}/bench", {"spec": {"template": {"spec": {"containers": [
                {"name": "c", "image": reg.ref("busybox", "2")}]}}}}, "application/strategic-merge-patch+json")
            out["rolling_update_s"] = round(await poll(rolled, 0.5), 2)
            log(f"rolled in {out['rolling_update_s']} s; deleting")
            t1 = time.perf_counter()
            await api.call("DELETE", f"{ns}/bench")

            async def gone() -> bool:
                return not await pods()
            await poll(gone, 0.5)
            out["delete_to_no_pods_s"] = round(time.perf_counter() - t1, 2)
        finally:
            await api.close()
            c.stop()
    return out


async def _has_node(api: Api) -> bool:
    return bool((await api.call("GET", "/api/v1/nodes"))["items"])


# -- (b) the scheduler through the API with simulated nodes ---------------------------------------------------

def sim_node(i: int) -> dict[str, Any]:
    from scheduler_bench import make_node  # the same nodes as the pure-core benchmark

    node = make_node(i)
    node["status"]["capacity"] = dict(node["status"]["allocatable"])
    return {"apiVersion": "v1", "kind": "Node", **node}


def sim_pod(i: int) -> dict[str, Any]:
    from scheduler_bench import make_pod

    p = make_pod(i, "plain")
    md = {k: v for k, v in p["metadata"].items() if k in ("name", "labels")}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": p["spec"]}


async def gather_limited(n: int, limit: int, make: Any) -> None:
    it = iter(range(n))

    async def worker() -> None:
        for i in it:
            await make(i)
    await asyncio.gather(*(worker() for _ in range(limit)))


async def scheduler_part(nodes: int, pods: int) -> dict[str, Any]:
    from scheduler_bench import run as core_run

    out: dict[str, Any] = {"nodes": nodes, "pods": pods}
    with tempfile.TemporaryDirectory() as d:
        c = PeapodCluster(Path(d), command="server")
        c.start()
        api = Api(c)
        try:
            log(f"creating {nodes} Node objects")
            t = time.perf_counter()
            await gather_limited(nodes, 20, lambda i: api.call("POST", "/api/v1/nodes", sim_node(i)))
            out["node_create_s"] = round(time.perf_counter() - t, 2)
            await asyncio.sleep(2)  # the scheduler's node informer catches up
            rv = (await api.call("GET", "/api/v1/namespaces/default/pods?limit=1"))["metadata"]["resourceVersion"]
            bound_at: dict[str, float] = {}
            done = asyncio.Event()

            async def watch() -> None:
                url = (f"{api.base}/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}"
                       "&allowWatchBookmarks=false")
                async with api.session.get(url) as r:
                    async for line in r.content:
                        ev = json.loads(line)
                        obj = ev["object"]
                        if obj.get("spec", {}).get("nodeName"):
                            bound_at.setdefault(obj["metadata"]["name"], time.perf_counter())
                            if len(bound_at) >= pods:
                                done.set()
                                return

            w = asyncio.create_task(watch())
            await asyncio.sleep(0.5)
            log(f"creating {pods} pods")
            t0 = time.perf_counter()
            await gather_limited(pods, 20, lambda i: api.call("POST", "/api/v1/namespaces/default/pods", sim_pod(i)))
            created = time.perf_counter() - t0
            try:
                await asyncio.wait_for(done.wait(), min(600, TIMEOUT))
            finally:
                w.cancel()
            last = max(bound_at.values()) - t0
            out["create_pods_per_s"] = round(pods / created, 1)
            out["bound"] = len(bound_at)
            out["first_post_to_last_bound_s"] = round(last, 2)
            out["api_pods_per_s"] = round(len(bound_at) / last, 1)
            # Throughput after creation ended: what the scheduler drains on its own.
            after = sorted(v for v in bound_at.values() if v >= t0 + created)
            if len(after) > 10:
                out["drain_pods_per_s"] = round(len(after) / (after[-1] - (t0 + created)), 1)
            tainted = sum(1 for n in (await api.call("GET", "/api/v1/nodes"))["items"]
                          if (n.get("spec") or {}).get("taints"))
            out["nodes_tainted_by_the_end"] = tainted
        finally:
            await api.close()
            c.stop()
    log("the pure core on the same sizes")
    out["core_pods_per_s"] = core_run("plain", nodes, pods)["pods_per_second"]
    return out


def report(r: dict[str, Any]) -> str:
    lines = ["| measure | value |", "|---|---|"]
    if "deployment" in r:
        d = r["deployment"]
        n = d["replicas"]
        lines += [
            f"| Deployment of {n}: create -> all bound (s) | {d['create_to_all_bound_s']} |",
            f"| Deployment of {n}: create -> all Running (s) | {d['create_to_all_running_s']} |",
            f"| Deployment of {n}: create -> all available (s) | {d['create_to_available_s']} |",
            f"| Deployment of {n}: rolling update to a new tag (s) | {d['rolling_update_s']} |",
            f"| Deployment of {n}: delete -> no pods (s) | {d['delete_to_no_pods_s']} |",
        ]
    if "scheduler" in r:
        s = r["scheduler"]
        lines += [
            f"| {s['nodes']} simulated nodes: created (s) | {s['node_create_s']} |",
            f"| {s['pods']} plain pods: POST rate (pods/s) | {s['create_pods_per_s']} |",
            f"| {s['pods']} plain pods: bound end to end through the API (pods/s) | {s['api_pods_per_s']} |",
            f"| ... after the last POST, draining (pods/s) | {s.get('drain_pods_per_s', '-')} |",
            f"| {s['pods']} plain pods: pure scheduling core (pods/s) | {s['core_pods_per_s']} |",
            f"| simulated nodes tainted unreachable by the end | {s['nodes_tainted_by_the_end']} |",
        ]
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"machine": {"cores": os.cpu_count()}}
    parts = args.parts.split(",")
    if "deployment" in parts:
        if os.geteuid() != 0:
            log("the deployment part needs root (real pods); skipped")
        else:
            out["deployment"] = await deployment_part(5 if args.smoke else args.replicas)
    if "scheduler" in parts:
        out["scheduler"] = await scheduler_part(20 if args.smoke else args.nodes, 50 if args.smoke else args.pods)
    return out


def main(argv: list[str] | None = None) -> None:
    global TIMEOUT
    p = argparse.ArgumentParser()
    p.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script runs")
    p.add_argument("--replicas", type=int, default=100)
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--pods", type=int, default=2000)
    p.add_argument("--parts", default="deployment,scheduler")
    p.add_argument("--timeout", type=float, default=None, help="seconds any one wait may take (1800; --smoke: 120)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    TIMEOUT = args.timeout or (120.0 if args.smoke else 1800.0)
    r = asyncio.run(main_async(args))
    print(report(r))
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
