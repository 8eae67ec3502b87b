"""Control-plane benchmark: idle RSS, cold start, API latency under load, LIST size, watch fan-out.

Usage: .venv/bin/python bench/controlplane.py [--smoke] [--store etcd://...] [--json OUT]
Prints a table and (optionally) writes the figures as JSON. Nothing is asserted: numbers only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import ssl
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from peapod.testing.cluster import PeapodCluster


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Api:
    def __init__(self, cluster: PeapodCluster) -> None:
        self.base = cluster.url
        ctx = ssl.create_default_context(cafile=str(cluster.data_dir / "tls" / "ca.crt"))
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx, limit=300),
            headers={"Authorization": f"Bearer {cluster.admin_token()}"},
        )

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        async with self.session.request(method, self.base + path, data=data,
                                        headers={"Content-Type": "application/json"}) as r:
            return r.status, await r.read()

    async def close(self) -> None:
        await self.session.close()


def pod(name: str, pad: int = 0) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"app": "bench"},
                         "annotations": {"pad": "x" * pad} if pad else {}},
            # A scheduler of its own name: the control plane's scheduler leaves these pods alone, so
            # LIST is measured without scheduling traffic beside it.
            "spec": {"schedulerName": "bench-unscheduled",
                     "containers": [{"name": "c", "image": "busybox:1", "command": ["sleep", "3600"],
                                     "env": [{"name": f"E{i}", "value": str(i)} for i in range(10)]}]}}


async def mixed_load(api: Api, rps: int, seconds: float) -> dict[str, float]:
    """Open-loop load at ``rps``: 1/4 creates, 1/4 updates (patch), 1/2 GETs."""
    mut: list[float] = []
    get: list[float] = []
    errors = 0
    names: list[str] = []
    ns = "/api/v1/namespaces/default/configmaps"

    async def one(i: int) -> None:
        nonlocal errors
        kind = i % 4
        t0 = time.perf_counter()
        if kind == 0 or not names:
            name = f"load-{i}"
            st, _ = await api.call("POST", ns, {"metadata": {"name": name}, "data": {"v": "0"}})
            if st < 300:
                names.append(name)
            (mut if st < 300 else []).append(time.perf_counter() - t0)
        elif kind == 1:
            name = random.choice(names)
            async with api.session.patch(api.base + f"{ns}/{name}", data=json.dumps({"data": {"v": str(i)}}),
                                         headers={"Content-Type": "application/merge-patch+json"}) as r:
                st = r.status
                await r.read()
            mut.append(time.perf_counter() - t0)
        else:
            st, _ = await api.call("GET", f"{ns}/{random.choice(names)}")
            get.append(time.perf_counter() - t0)
        if st >= 300:
            errors += 1

    tasks = []
    start = time.perf_counter()
    n = int(rps * seconds)
    for i in range(n):
        delay = start + i / rps - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    return {"requests": n, "errors": errors, "mutating_p50_ms": pct(mut, 50) * 1000,
            "mutating_p99_ms": pct(mut, 99) * 1000, "get_p50_ms": pct(get, 50) * 1000,
            "get_p99_ms": pct(get, 99) * 1000}


async def list_pods(api: Api, count: int) -> dict[str, float]:
    sem = asyncio.Semaphore(32)

    async def create(i: int) -> None:
        async with sem:
            await api.call("POST", "/api/v1/namespaces/default/pods", pod(f"list-{i}"))

    t0 = time.perf_counter()
    await asyncio.gather(*(create(i) for i in range(count)))
    create_s = time.perf_counter() - t0
    times = []
    size = 0
    for _ in range(5):
        t0 = time.perf_counter()
        st, body = await api.call("GET", "/api/v1/pods")
        times.append(time.perf_counter() - t0)
        size = len(body)
        assert st == 200 and len(json.loads(body)["items"]) >= count
    return {"pods": count, "create_all_s": create_s, "list_median_ms": statistics.median(times) * 1000,
            "list_bytes": size}


async def watch_fanout(api: Api, watchers: int, events: int, rate: float) -> dict[str, float]:
    """``watchers`` clients watch one namespace while ``events`` objects are created at ``rate``
    per second; lag = arrival at a watcher minus the moment its create was sent."""
    ns = "/api/v1/namespaces/default/configmaps"
    _, body = await api.call("GET", ns + "?limit=1")
    rv = json.loads(body)["metadata"]["resourceVersion"]
    sent: dict[str, float] = {}
    lags: list[float] = []
    done = asyncio.Event()
    remaining = [watchers]

    async def watcher() -> None:
        got = 0
        async with api.session.get(api.base + f"{ns}?watch=true&resourceVersion={rv}&labelSelector=fan=out",
                                   timeout=aiohttp.ClientTimeout(total=None)) as r:
            async for line in r.content:
                ev = json.loads(line)
                if ev["type"] != "ADDED":
                    continue
                name = ev["object"]["metadata"]["name"]
                lags.append(time.perf_counter() - sent.get(name, time.perf_counter()))
                got += 1
                if got >= events:
                    break
        remaining[0] -= 1
        if remaining[0] == 0:
            done.set()

    tasks = [asyncio.create_task(watcher()) for _ in range(watchers)]
    await asyncio.sleep(1.0)
    t0 = time.perf_counter()

    async def create(i: int) -> None:
        name = f"fan-{i}"
        sent[name] = time.perf_counter()
        await api.call("POST", ns, {"metadata": {"name": name, "labels": {"fan": "out"}}})

    creates = []
    for i in range(events):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        creates.append(asyncio.create_task(create(i)))
    await asyncio.gather(*creates)
    try:
        await asyncio.wait_for(done.wait(), 120)
    finally:
        for t in tasks:
            t.cancel()
    return {"watchers": watchers, "events": events, "rate_per_s": rate, "delivered": len(lags),
            "lag_p50_ms": pct(lags, 50) * 1000, "lag_p99_ms": pct(lags, 99) * 1000,
            "total_s": time.perf_counter() - t0}


def cold_start(runs: int, store: str | None, command: str) -> dict[str, float]:
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as d:
            c = PeapodCluster(Path(d), command=command, extra_args=["--store", store] if store else [])
            t0 = time.perf_counter()
            c.start()
            times.append(time.perf_counter() - t0)
            c.stop()
    return {"runs": runs, "cold_start_median_s": statistics.median(times), "cold_start_max_s": max(times)}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"machine": {"cores": os.cpu_count(), "kernel": platform.release(),
                                       "python": platform.python_version()}}
    # Cold start and idle cost of the whole single-node system (`peapod up`, root) or of the
    # control plane alone; load, LIST and watches run on the control plane alone, so the 5,000
    # pods are not scheduled onto a node.
    whole = "up" if os.geteuid() == 0 else "server"
    out["system"] = whole
    out["cold_start"] = cold_start(2 if args.smoke else 5, args.store, whole)
    store_args = ["--store", args.store] if args.store else []
    with tempfile.TemporaryDirectory() as d:
        c = PeapodCluster(Path(d), command=whole, extra_args=store_args)
        c.start()
        try:
            assert c.proc is not None
            await asyncio.sleep(2 if args.smoke else 5)
            cpu0 = cpu_seconds(c.proc.pid)
            idle_window = 2 if args.smoke else 10
            await asyncio.sleep(idle_window)
            out["idle"] = {"rss_mb": rss_mb(c.proc.pid),
                           "cpu_percent": 100 * (cpu_seconds(c.proc.pid) - cpu0) / idle_window}
        finally:
            c.stop()
    with tempfile.TemporaryDirectory() as d:
        c = PeapodCluster(Path(d), command="server", extra_args=store_args)
        c.start()
        try:
            assert c.proc is not None
            pid = c.proc.pid
            api = Api(c)
            try:
                out["load"] = await mixed_load(api, 50 if args.smoke else 200, 2 if args.smoke else 20)
                out["list"] = await list_pods(api, 200 if args.smoke else 5000)
                out["watch"] = await watch_fanout(api, 10 if args.smoke else 100, 50 if args.smoke else 1000,
                                                  args.watch_rate)
                out["loaded_rss_mb"] = rss_mb(pid)
            finally:
                await api.close()
        finally:
            c.stop()
    return out


def report(r: dict[str, Any]) -> str:
    rows = [
        (f"idle RSS, peapod {r['system']} (MB)", f"{r['idle']['rss_mb']:.1f}", "<= 100"),
        (f"idle CPU, peapod {r['system']} (%)", f"{r['idle']['cpu_percent']:.2f}", "<= 1"),
        (f"cold start to /readyz, peapod {r['system']} (s, median)",
         f"{r['cold_start']['cold_start_median_s']:.2f}", "<= 1"),
        (f"mutating p99 at {r['load']['requests']} req mixed (ms)", f"{r['load']['mutating_p99_ms']:.1f}",
         "<= 100"),
        ("GET p99 (ms)", f"{r['load']['get_p99_ms']:.1f}", "<= 20"),
        (f"LIST {r['list']['pods']} pods (ms, median)", f"{r['list']['list_median_ms']:.0f}", "<= 300"),
        (f"watch lag p99, {r['watch']['watchers']} watchers x {r['watch']['events']} events "
         f"at {r['watch']['rate_per_s']:.0f}/s (ms)",
         f"{r['watch']['lag_p99_ms']:.1f}", "<= 100"),
    ]
    lines = ["| measure | peapod | goal |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script runs")
    p.add_argument("--store", default=None)
    p.add_argument("--watch-rate", type=float, default=100.0, help="creates per second in the watch test")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    r = asyncio.run(main_async(args))
    print(report(r))
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
