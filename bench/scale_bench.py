"""Control plane at scale on simulated nodes (kwok-style), on a 3-member etcd and on SQLite.

Usage: .venv/bin/python bench/scale_bench.py [--smoke] [--nodes 1000] [--pods 30000] [--stores etcd,sqlite]
       [--create-qps 20] [--lease-interval 10] [--concurrency 16] [--sim-workers 16] [--json OUT]

For each store a real ``peapod server`` (API server, scheduler, controllers) runs on it; ``--nodes``
simulated nodes (peapod/testing/simnodes.py: Node objects, Leases renewed every ``--lease-interval`` s,
pods bound to them marked Running, deletes finished at once) join, then ``--pods`` pods (100m CPU,
128Mi each, in 10 namespaces) are created by ``--concurrency`` concurrent clients at ``--create-qps``
pods per second (20, clusterloader2's default density throughput, under which Kubernetes states its
latency SLOs; 0: as fast as the server takes them, which measures throughput) while a sampler reads
single pods. Reported, against Kubernetes' API call latency SLOs (mutating and single-object reads
p99 <= 1 s): client-side latency of the creates and the reads, the API server's own histogram
(``apiserver_request_duration_seconds`` for every request it served, leases and status writes of
the simulated nodes included), create and scheduling throughput, time until every pod ran, the
peak RSS of the API server process and of the etcd members. Nothing is asserted: numbers only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from peapod.api.errors import ApiError
from peapod.api.resources import resource
from peapod.client.rest import ApiClient
from peapod.testing.cluster import PeapodCluster
from peapod.testing.etcd import EtcdCluster
from peapod.testing.simnodes import SimulatedNodes

PODS = resource("", "v1", "pods")
NAMESPACES = resource("", "v1", "namespaces")
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
READS = {"GET"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def pod(i: int, namespaces: int) -> tuple[str, dict[str, Any]]:
    ns = f"scale-{i % namespaces}"
    return ns, {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"pod-{i:06d}", "labels": {"app": f"app-{i // 30}"}},
                "spec": {"containers": [{"name": "c", "image": "registry.local/app:1",
                                         "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}}


def histogram_p99(metrics: str, verbs: set[str], resources: set[str] | None = None) -> dict[str, float]:
    """p50/p99 (upper bucket bounds, seconds) of apiserver_request_duration_seconds summed over the
    series whose verb is in ``verbs`` (and resource in ``resources``), from the Prometheus text."""
    buckets: dict[float, float] = {}
    for line in metrics.splitlines():
        if not line.startswith("apiserver_request_duration_seconds_bucket{"):
            continue
        labels_text, value = line[len("apiserver_request_duration_seconds_bucket{"):].rsplit("} ", 1)
        labels = dict(part.split("=", 1) for part in labels_text.split('",') if "=" in part)
        labels = {k: v.strip('"') for k, v in labels.items()}
        if labels.get("verb") not in verbs:
            continue
        if resources is not None and labels.get("resource") not in resources:
            continue
        le = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
        buckets[le] = buckets.get(le, 0.0) + float(value)
    if not buckets:
        return {"count": 0}
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]

    def q(p: float) -> float:
        for b in bounds:
            if buckets[b] >= p * total:
                return b
        return bounds[-1]
    return {"count": int(total), "p50_s": q(0.5), "p99_s": q(0.99)}


class Pacer:
    """Hands out start times ``1/qps`` apart to any number of concurrent creators (qps 0: no pacing)."""

    def __init__(self, qps: float) -> None:
        self.interval = 1.0 / qps if qps > 0 else 0.0
        self.next = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.perf_counter()
        slot = max(self.next, now)
        self.next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


async def run_store(store: str, nodes: int, pods: int, *, lease_interval: float, concurrency: int,
                    namespaces: int, create_qps: float = 0.0, sim_workers: int = 16) -> dict[str, Any]:
    out: dict[str, Any] = {"store": store, "nodes": nodes, "pods": pods, "lease_interval_s": lease_interval,
                           "create_qps": create_qps or "unlimited", "sim_workers": sim_workers}
    with tempfile.TemporaryDirectory() as d:
        etcd: EtcdCluster | None = None
        extra: list[str] = []
        if store == "etcd":
            etcd = EtcdCluster(Path(d) / "etcd", members=3)
            await etcd.start()
            extra = ["--store", "etcd://" + ",".join(e.removeprefix("http://") for e in etcd.endpoints)]
        cluster = PeapodCluster(Path(d) / "peapod", command="server", extra_args=extra)
        cluster.start(timeout=60)
        assert cluster.proc is not None
        pid = cluster.proc.pid
        client = ApiClient.from_kubeconfig(cluster.kubeconfig, user_agent="scale-bench")
        sim = SimulatedNodes(client, count=nodes, lease_interval=lease_interval, workers=sim_workers)
        peaks = {"server_rss_mb": 0.0, "etcd_rss_mb": 0.0}
        stop_sampling = asyncio.Event()

        async def sample_memory() -> None:
            while not stop_sampling.is_set():
                peaks["server_rss_mb"] = max(peaks["server_rss_mb"], rss_mb(pid))
                if etcd is not None:
                    total = sum(rss_mb(m.process.pid) for m in etcd.members if m.process is not None)
                    peaks["etcd_rss_mb"] = max(peaks["etcd_rss_mb"], total)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop_sampling.wait(), 1.0)

        sampler = asyncio.create_task(sample_memory())
        try:
            t = time.perf_counter()
            await sim.start()
            out["nodes_registered_s"] = round(time.perf_counter() - t, 2)
            log(f"{store}: {nodes} simulated nodes in {out['nodes_registered_s']} s")
            for n in range(namespaces):
                await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                                 "metadata": {"name": f"scale-{n}"}})
            assert sim.informer is not None
            bound: dict[str, float] = {}
            running: dict[str, float] = {}
            all_running = asyncio.Event()

            def seen(obj: dict[str, Any]) -> None:
                name = obj["metadata"]["name"]
                now = time.perf_counter()
                if (obj.get("spec") or {}).get("nodeName"):
                    bound.setdefault(name, now)
                if (obj.get("status") or {}).get("phase") == "Running":
                    running.setdefault(name, now)
                    if len(running) >= pods:
                        all_running.set()
            sim.informer.add_handlers(on_add=seen, on_update=lambda _o, n: seen(n))

            create_ms: list[float] = []
            get_ms: list[float] = []
            created: list[tuple[str, str]] = []
            creating = True

            async def reader() -> None:
                rng = random.Random(1)
                while creating or not all_running.is_set():
                    if created:
                        ns, name = rng.choice(created)
                        t0 = time.perf_counter()
                        try:
                            await client.get(PODS, name, ns)
                        except ApiError as e:
                            errors[f"get {e.code}"] = errors.get(f"get {e.code}", 0) + 1
                        get_ms.append((time.perf_counter() - t0) * 1000)
                    await asyncio.sleep(0.1)

            it = iter(range(pods))

            errors: dict[str, int] = {}

            pacer = Pacer(create_qps)

            async def creator() -> None:
                for i in it:
                    await pacer.wait()
                    ns, body = pod(i, namespaces)
                    for attempt in range(5):  # a 5xx is counted and retried, as a controller would
                        t0 = time.perf_counter()
                        try:
                            await client.create(PODS, body, ns)
                        except ApiError as e:
                            if e.code == 409 and attempt:
                                break  # an earlier attempt was applied after all
                            if e.code < 500:
                                raise
                            errors[f"create {e.code}"] = errors.get(f"create {e.code}", 0) + 1
                            await asyncio.sleep(0.5)
                            continue
                        finally:
                            create_ms.append((time.perf_counter() - t0) * 1000)
                        break
                    else:
                        raise RuntimeError(f"could not create {body['metadata']['name']} in 5 attempts")
                    created.append((ns, body["metadata"]["name"]))
                    if len(created) % max(1, pods // 10) == 0:
                        log(f"{store}: {len(created)} pods created, {len(bound)} bound, {len(running)} running")

            read_task = asyncio.create_task(reader())
            t0 = time.perf_counter()
            await asyncio.gather(*(creator() for _ in range(concurrency)))
            create_s = time.perf_counter() - t0
            creating = False
            await asyncio.wait_for(all_running.wait(), timeout=max(600.0, pods / 5))
            done_s = time.perf_counter() - t0
            read_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await read_task
            bind_times = sorted(bound.values())
            out.update({
                "create_s": round(create_s, 1),
                "create_pods_per_s": round(pods / create_s, 1),
                "all_running_s": round(done_s, 1),
                "scheduled_pods_per_s": round(len(bind_times) / max(1e-9, bind_times[-1] - t0), 1),
                "client_create_p50_ms": round(pct(create_ms, 50), 1),
                "client_create_p99_ms": round(pct(create_ms, 99), 1),
                "client_get_p50_ms": round(pct(get_ms, 50), 1),
                "client_get_p99_ms": round(pct(get_ms, 99), 1),
                "client_gets": len(get_ms),
                "api_errors": dict(errors),
                "sim_status_writes": sim.status_writes,
                "sim_errors": sim.errors,
            })
            metrics = await client.request("GET", "/metrics")
            out["server_mutating"] = histogram_p99(metrics, MUTATING)
            out["server_single_reads"] = histogram_p99(metrics, READS)
            nodes_list = (await client.list(resource("", "v1", "nodes")))["items"]
            out["nodes_tainted_at_end"] = sum(1 for n in nodes_list if (n.get("spec") or {}).get("taints"))
        finally:
            stop_sampling.set()
            await sampler
            await sim.stop()
            await client.close()
            cluster.stop()
            if etcd is not None:
                await etcd.stop()
        out.update({k: round(v, 1) for k, v in peaks.items()})
    return out


def report(results: list[dict[str, Any]]) -> str:
    def ms(v: Any) -> str:
        return "n/a" if not isinstance(v, dict) or not v.get("count") else f"{v['p99_s'] * 1000:g} ms"

    lines = ["| measure | " + " | ".join(r["store"] for r in results) + " | goal |",
             "|---|" + "---|" * len(results) + "---|"]
    rows = [
        ("nodes / pods", lambda r: f"{r['nodes']} / {r['pods']}", ""),
        ("creates offered (pods/s)", lambda r: r.get("create_qps", "unlimited"), ""),
        ("pods created per s (client)", lambda r: r["create_pods_per_s"], ""),
        ("pods scheduled per s (first create to last bind)", lambda r: r["scheduled_pods_per_s"], ""),
        ("first create to all Running (s)", lambda r: r["all_running_s"], ""),
        ("create p99, client side (ms)", lambda r: r["client_create_p99_ms"], "<= 1000"),
        ("single GET p99, client side (ms)", lambda r: r["client_get_p99_ms"], "<= 1000"),
        ("mutating p99, server histogram (bucket bound)", lambda r: ms(r["server_mutating"]), "<= 1 s"),
        ("single-object read p99, server histogram", lambda r: ms(r["server_single_reads"]), "<= 1 s"),
        ("peak RSS of the API server process (MB)", lambda r: r["server_rss_mb"], ""),
        ("peak RSS of the etcd members, summed (MB)", lambda r: r["etcd_rss_mb"] or "-", ""),
        ("nodes tainted at the end (0 = leases kept up)", lambda r: r["nodes_tainted_at_end"], "0"),
        ("bench requests answered 5xx (retried)", lambda r: sum(r["api_errors"].values()) or 0, ""),
        ("simulated kubelet write errors", lambda r: r["sim_errors"], ""),
    ]
    for label, f, goal in rows:
        lines.append(f"| {label} | " + " | ".join(str(f(r)) for r in results) + f" | {goal} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes (20 nodes, 200 pods), to check the script runs")
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--pods", type=int, default=30000)
    p.add_argument("--stores", default="etcd,sqlite")
    p.add_argument("--lease-interval", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--create-qps", type=float, default=20.0,
                   help="pods created per second (clusterloader2's density default); 0 = as fast as possible")
    p.add_argument("--sim-workers", type=int, default=16, help="concurrent status writes of the simulated kubelets")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.smoke:
        args.nodes, args.pods = 20, 200
    results = []
    for store in args.stores.split(","):
        results.append(asyncio.run(run_store(store, args.nodes, args.pods, lease_interval=args.lease_interval,
                                             concurrency=args.concurrency, namespaces=10,
                                             create_qps=args.create_qps, sim_workers=args.sim_workers)))
    print(report(results))
    out = {"benchmark": "scale", "smoke": args.smoke, "results": results}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
