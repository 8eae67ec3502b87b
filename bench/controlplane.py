"""Control-plane benchmark: idle RSS, cold start, API latency under load, LIST size, watch fan-out.

Usage: .venv/bin/python bench/controlplane.py [--smoke] [--stores sqlite,etcd] [--store etcd://...]
       [--only cold,idle,load,list,watch] [--py-spy DIR] [--json OUT]
Prints a table and (optionally) writes the figures as JSON, per store. Nothing is asserted: numbers only.

``--stores etcd`` starts a fresh single-member loopback etcd (``--etcd-members``) for each peapod
started (each cold start, the idle run, the API run), so every run sees an empty store; etcd's own
RSS is reported beside peapod's. ``--py-spy DIR`` records peapod during the idle window, the load,
the LIST and the watch phases (an SVG each; it perturbs the figures, use it to explain them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
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


def tree_rss_mb(pid: int) -> float:
    """RSS summed over a process and its descendants (``peapod up`` may run helpers)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d))
    total, todo, seen = 0.0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            total += rss_mb(p)
        except (FileNotFoundError, ProcessLookupError):
            pass
        todo.extend(children.get(p, ()))
    return total


class Profiler:
    """``py-spy record`` of one process while a block runs (``--py-spy DIR``), as an SVG flame graph."""

    def __init__(self, out_dir: Path | None, prefix: str) -> None:
        self.dir, self.prefix = out_dir, prefix
        self.written: list[str] = []

    @contextlib.asynccontextmanager
    async def record(self, pid: int, name: str) -> AsyncIterator[None]:
        if self.dir is None:
            yield
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        dest = self.dir / f"{self.prefix}{name}.svg"
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        proc = await asyncio.create_subprocess_exec(
            exe, "record", "--nonblocking", "--pid", str(pid), "--rate", "200", "--output", str(dest),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await asyncio.sleep(1.0)  # let it attach
        try:
            yield
        finally:
            proc.send_signal(signal.SIGINT)
            await proc.wait()
            if dest.exists():
                self.written.append(str(dest))


@contextlib.asynccontextmanager
async def store_for(kind: str, workdir: Path, members: int) -> AsyncIterator[tuple[list[str], int | None]]:
    """(``--store`` arguments, etcd leader PID or None) for a fresh store of ``kind``: ``sqlite`` (the
    default, in the data dir), ``etcd`` (a new loopback etcd cluster of ``members``, stopped after) or
    an explicit ``etcd://...`` spec."""
    if kind == "sqlite":
        yield [], None
    elif kind == "etcd":
        from peapod.testing.etcd import EtcdCluster

        etcd = EtcdCluster(workdir / "etcd", members=members)
        await etcd.start()
        try:
            spec = "etcd://" + ",".join(e.removeprefix("http://") for e in etcd.endpoints)
            proc = etcd.members[0].process
            yield ["--store", spec], proc.pid if proc else None
        finally:
            await etcd.stop()
    else:
        yield ["--store", kind], None


def cold_start(runs: int, kind: str, command: str, members: int) -> dict[str, float]:
    """Seconds from exec to /readyz of a fresh data dir (and, on etcd, a fresh etcd started before)."""

    async def once() -> float:
        with tempfile.TemporaryDirectory() as d:
            async with store_for(kind, Path(d), members) as (store_args, _):
                c = PeapodCluster(Path(d) / "data", command=command, extra_args=store_args)
                t0 = time.perf_counter()
                await asyncio.to_thread(c.start)
                elapsed = time.perf_counter() - t0
                await asyncio.to_thread(c.stop)
                return elapsed

    times = [asyncio.run(once()) for _ in range(runs)]
    return {"runs": runs, "cold_start_median_s": statistics.median(times), "cold_start_max_s": max(times)}


async def idle(kind: str, command: str, members: int, smoke: bool, prof: Profiler) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        async with store_for(kind, Path(d), members) as (store_args, etcd_pid):
            c = PeapodCluster(Path(d) / "data", command=command, extra_args=store_args)
            await asyncio.to_thread(c.start)
            try:
                assert c.proc is not None
                await asyncio.sleep(2 if smoke else 5)
                window = 2 if smoke else 10
                async with prof.record(c.proc.pid, "idle"):
                    cpu0 = cpu_seconds(c.proc.pid)
                    await asyncio.sleep(window)
                    cpu = 100 * (cpu_seconds(c.proc.pid) - cpu0) / window
                out = {"rss_mb": rss_mb(c.proc.pid), "tree_rss_mb": tree_rss_mb(c.proc.pid), "cpu_percent": cpu}
                if etcd_pid:
                    out["etcd_rss_mb"] = rss_mb(etcd_pid)
                return out
            finally:
                await asyncio.to_thread(c.stop)


async def api_phases(kind: str, members: int, smoke: bool, only: set[str], watch_rate: float,
                     prof: Profiler) -> dict[str, Any]:
    """Load, LIST and watches on the control plane alone (`peapod server`): the pods are not run."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        async with store_for(kind, Path(d), members) as (store_args, _):
            c = PeapodCluster(Path(d) / "data", command="server", extra_args=store_args)
            await asyncio.to_thread(c.start)
            try:
                assert c.proc is not None
                pid = c.proc.pid
                api = Api(c)
                try:
                    if "load" in only:
                        async with prof.record(pid, "load"):
                            out["load"] = await mixed_load(api, 50 if smoke else 200, 2 if smoke else 20)
                    if "list" in only:
                        async with prof.record(pid, "list"):
                            out["list"] = await list_pods(api, 200 if smoke else 5000)
                    if "watch" in only:
                        async with prof.record(pid, "watch"):
                            out["watch"] = await watch_fanout(api, 10 if smoke else 100, 50 if smoke else 1000,
                                                              watch_rate)
                    out["loaded_rss_mb"] = rss_mb(pid)
                finally:
                    await api.close()
            finally:
                await asyncio.to_thread(c.stop)
    return out


PHASES = ("cold", "idle", "load", "list", "watch")


def measure_store(args: argparse.Namespace, kind: str, whole: str) -> dict[str, Any]:
    only = set(args.only)
    prof = Profiler(args.py_spy, f"controlplane-{kind if kind in ('sqlite', 'etcd') else 'custom'}-")
    out: dict[str, Any] = {}
    if "cold" in only:
        out["cold_start"] = cold_start(args.cold_runs or (2 if args.smoke else 5), kind, whole, args.etcd_members)
    if "idle" in only:
        out["idle"] = asyncio.run(idle(kind, whole, args.etcd_members, args.smoke, prof))
    if only & {"load", "list", "watch"}:
        out.update(asyncio.run(api_phases(kind, args.etcd_members, args.smoke, only, args.watch_rate, prof)))
    if prof.written:
        out["profiles"] = prof.written
    return out


def measure(args: argparse.Namespace) -> dict[str, Any]:
    # Cold start and idle cost of the whole single-node system (`peapod up`, root) or of the
    # control plane alone; load, LIST and watches run on the control plane alone, so the 5,000
    # pods are not scheduled onto a node.
    whole = "up" if os.geteuid() == 0 else "server"
    out: dict[str, Any] = {"machine": {"cores": os.cpu_count(), "kernel": platform.release(),
                                       "python": platform.python_version()},
                           "system": whole, "stores": {}}
    for kind in args.stores:
        if kind == "etcd":
            from peapod.testing.etcd import EtcdCluster

            if not EtcdCluster.available():
                out["stores"]["etcd"] = {"skipped": "etcd is not installed (Debian etcd-server)"}
                continue
        print(f"[{time.strftime('%H:%M:%S')}] control plane on {kind}", file=sys.stderr, flush=True)
        out["stores"][kind] = measure_store(args, kind, whole)
    return out


def report(r: dict[str, Any]) -> str:
    lines = [f"| measure ({r['system']}) | " + " | ".join(r["stores"]) + " | goal |",
             "|---|" + "---|" * len(r["stores"]) + "---|"]

    def row(label: str, goal: str, get: Any) -> None:
        cells = []
        for fig in r["stores"].values():
            try:
                cells.append(get(fig))
            except (KeyError, TypeError):
                cells.append("-")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {goal} |")

    row("idle RSS (MB)", "<= 100", lambda f: f"{f['idle']['rss_mb']:.1f}")
    row("idle CPU (%)", "<= 1", lambda f: f"{f['idle']['cpu_percent']:.2f}")
    row("etcd's own idle RSS (MB)", "", lambda f: f"{f['idle']['etcd_rss_mb']:.1f}")
    row("cold start to /readyz (s, median)", "<= 1", lambda f: f"{f['cold_start']['cold_start_median_s']:.2f}")
    row("mixed load: mutating p99 (ms)", "<= 100",
        lambda f: f"{f['load']['mutating_p99_ms']:.1f} ({f['load']['requests']} req)")
    row("mixed load: GET p99 (ms)", "<= 20", lambda f: f"{f['load']['get_p99_ms']:.1f}")
    row("LIST of N pods (ms, median)", "<= 300", lambda f: f"{f['list']['list_median_ms']:.0f} ({f['list']['pods']})")
    row("watch lag p99 (ms)", "<= 100",
        lambda f: f"{f['watch']['lag_p99_ms']:.1f} ({f['watch']['watchers']} x {f['watch']['events']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script runs")
    p.add_argument("--stores", default="sqlite", type=lambda s: [x for x in s.split(",") if x],
                   help="comma-separated: sqlite, etcd (a fresh loopback etcd per phase), or etcd://HOST:PORT")
    p.add_argument("--store", default=None, help="an explicit store spec (etcd://...); overrides --stores")
    p.add_argument("--etcd-members", type=int, default=1)
    p.add_argument("--only", default=",".join(PHASES), type=lambda s: [x for x in s.split(",") if x],
                   help=f"phases to run, of {','.join(PHASES)}")
    p.add_argument("--cold-runs", type=int, default=None, help="cold starts (default 5; --smoke: 2)")
    p.add_argument("--watch-rate", type=float, default=100.0, help="creates per second in the watch test")
    p.add_argument("--py-spy", type=Path, default=None, help="write py-spy flame graphs of peapod per phase to DIR")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.store:
        args.stores = [args.store]
    unknown = set(args.only) - set(PHASES)
    if unknown:
        p.error(f"unknown phases {sorted(unknown)}")
    r = measure(args)
    print(report(r))
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
