"""CPU of a real `peapod up` probing 110 pods: each pod is busybox httpd with an HTTP liveness and an
HTTP readiness probe every second (220 probes/s), all on one node.

Starts `peapod up` in a temporary data dir (its own bridge and pod CIDR) and a loopback registry
holding a busybox image, creates the pods, waits until every pod is Ready, lets it settle, then
reads the peapod process's CPU time (user+sys of all its threads, /proc/<pid>/stat) over
``--seconds`` and reports it as % of one core. The same is measured before the pods exist (idle)
and, for reference, the CPU of the pods' conmon and httpd processes. Goal: <= 15 % with probes.

Needs root. Everything it creates is removed at the end: pods deleted through the API, peapod
stopped by its PID, then `peapod down` on the data dir, the registry stopped by its PID.

    sudo .venv/bin/python bench/probes_agent_bench.py [--pods 110] [--seconds 30] [--smoke] [--json OUT]

``--smoke``: 3 pods, 3 s. ``--py-spy OUT``: collapsed stacks of peapod during the measurement
(`py-spy record --nonblocking`; install with `.venv/bin/pip install py-spy`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from peapod.testing.cluster import PeapodCluster, peapod_executable
from peapod.testing.images import busybox_image, push_image
from peapod.testing.registry import LoopbackRegistry

NS = "probes-bench"
TICK = os.sysconf("SC_CLK_TCK")
SERVE = "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    """user+sys CPU seconds of a process (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def pids_named(names: tuple[str, ...], token: str) -> list[int]:
    """PIDs whose comm is one of ``names`` and whose command line holds ``token``."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            comm = Path(f"/proc/{d}/comm").read_text().strip()
            if comm in names and token.encode() in Path(f"/proc/{d}/cmdline").read_bytes():
                out.append(int(d))
        except OSError:
            continue
    return out


def children_of(parents: set[int]) -> list[int]:
    """Direct children of ``parents`` (the containers' processes under their conmon)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid in parents:
                out.append(int(d))
    return out


def measure(pid: int, seconds: float, others: list[int] = ()) -> dict[str, float]:  # type: ignore[assignment]
    """% of one core used by ``pid`` (and by ``others`` together) over ``seconds``."""

    def others_cpu() -> dict[int, float]:
        got = {}
        for p in others:
            try:
                got[p] = cpu_seconds(p)
            except OSError:
                pass
        return got

    c0, o0, t0 = cpu_seconds(pid), others_cpu(), time.monotonic()
    time.sleep(seconds)
    c1, o1, t1 = cpu_seconds(pid), others_cpu(), time.monotonic()
    other = sum(o1[p] - o0[p] for p in o0.keys() & o1.keys())  # processes alive throughout
    wall = t1 - t0
    return {"peapod_cpu_pct": round(100 * (c1 - c0) / wall, 2), "others_cpu_pct": round(100 * other / wall, 2),
            "wall_s": round(wall, 2)}


def pod(name: str, image: str, period: int) -> dict[str, Any]:
    probe = {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": period, "timeoutSeconds": 1,
             "failureThreshold": 3}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
            "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                "name": "web", "image": image, "command": ["sh", "-c", SERVE],
                "livenessProbe": probe, "readinessProbe": probe,
                "resources": {"requests": {"cpu": "1m", "memory": "4Mi"}}}]}}


def ready_count(cluster: PeapodCluster) -> tuple[int, int, int]:
    """(ready, total, restarts) of the bench pods."""
    r = cluster.kubectl("get", "pods", "-n", NS, "-o", "json", timeout=120)
    if r.returncode != 0:
        return 0, 0, 0
    items = r.json()["items"]
    ready = sum(1 for p in items if any(c.get("type") == "Ready" and c.get("status") == "True"
                                        for c in (p.get("status") or {}).get("conditions") or []))
    restarts = sum(s.get("restartCount", 0) for p in items
                   for s in (p.get("status") or {}).get("containerStatuses") or [])
    return ready, len(items), restarts


def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"pods": args.pods, "seconds": args.seconds, "period_s": args.period,
                              "probes_per_s": round(2 * args.pods / args.period, 1), "cpus": os.cpu_count()}
    work = Path(tempfile.mkdtemp(prefix="peapod-probes-bench-"))
    reg = LoopbackRegistry().start()
    cluster = PeapodCluster(work / "data")
    try:
        image = reg.ref("busybox", "1")
        asyncio.run(push_image(image, busybox_image()))
        cluster.start(timeout=60)
        assert cluster.proc is not None
        pid = cluster.proc.pid
        time.sleep(5)
        result["idle"] = measure(pid, min(args.seconds, 10))
        log(f"idle: {result['idle']['peapod_cpu_pct']} % of one core")
        cluster.kubectl("create", "namespace", NS, check=True)
        manifest = work / "pods.json"
        manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List",
                                        "items": [pod(f"web-{i}", image, args.period) for i in range(args.pods)]}))
        t0 = time.monotonic()
        cluster.kubectl("apply", "-f", str(manifest), check=True, timeout=300)
        deadline = t0 + args.ready_timeout
        ready = total = 0
        while time.monotonic() < deadline:
            ready, total, _ = ready_count(cluster)
            if ready == args.pods:
                break
            time.sleep(2)
        result["all_ready_s"] = round(time.monotonic() - t0, 1)
        if ready != args.pods:
            raise RuntimeError(f"only {ready}/{args.pods} pods Ready after {args.ready_timeout}s:\n"
                               f"{cluster.log_tail(40)}")
        log(f"{args.pods} pods Ready after {result['all_ready_s']} s; settling")
        time.sleep(args.settle)
        conmons = pids_named(("conmon",), str(work))
        others = conmons + children_of(set(conmons))
        spy = None
        if args.py_spy:
            spy = subprocess.Popen(["py-spy", "record", "--nonblocking", "-p", str(pid), "-d", str(int(args.seconds)),
                                    "-f", "raw", "-o", str(args.py_spy)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        result["probing"] = measure(pid, args.seconds, sorted(set(others)))
        if spy is not None:
            spy.wait(60)
        ready, total, restarts = ready_count(cluster)
        result["after"] = {"ready": ready, "pods": total, "restarts": restarts}
        log(f"probing: {result['probing']['peapod_cpu_pct']} % of one core "
            f"(conmon+httpd: {result['probing']['others_cpu_pct']} %), restarts {restarts}")
        result["goal_met"] = result["probing"]["peapod_cpu_pct"] <= 15.0
        return result
    finally:
        log("cleaning up")
        if cluster.proc is not None and cluster.proc.poll() is None:
            cluster.kubectl("delete", "pods", "--all", "-n", NS, "--grace-period=0", "--force", "--wait=false",
                            timeout=300)
            end = time.monotonic() + 300
            while time.monotonic() < end and ready_count(cluster)[1] > 0:
                time.sleep(2)
        cluster.stop(timeout=120)
        subprocess.run([*peapod_executable(), "down", "--data-dir", str(cluster.data_dir)],
                       capture_output=True, text=True)
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=None, help="pods (default 110; --smoke: 3)")
    ap.add_argument("--seconds", type=float, default=None, help="measurement window (default 30; --smoke: 3)")
    ap.add_argument("--period", type=int, default=1, help="probe periodSeconds")
    ap.add_argument("--settle", type=float, default=None,
                    help="wait after all are Ready before measuring (default 10; --smoke: 1)")
    ap.add_argument("--ready-timeout", type=float, default=900.0)
    ap.add_argument("--smoke", action="store_true", help="3 pods, 3 s: checks the script runs")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--py-spy", type=Path, default=None, help="record peapod while measuring (collapsed stacks)")
    args = ap.parse_args(argv)
    small = args.smoke
    args.pods = args.pods if args.pods is not None else (3 if small else 110)
    args.seconds = args.seconds if args.seconds is not None else (3.0 if small else 30.0)
    args.settle = args.settle if args.settle is not None else (1.0 if small else 10.0)
    if os.geteuid() != 0:
        sys.exit("needs root")
    res = run(args)
    print("| pods | probes/s | all Ready after | peapod idle | peapod probing | conmon+httpd | restarts |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {res['pods']} | {res['probes_per_s']} | {res['all_ready_s']} s | {res['idle']['peapod_cpu_pct']} % | "
          f"{res['probing']['peapod_cpu_pct']} % | {res['probing']['others_cpu_pct']} % | "
          f"{res['after']['restarts']} |")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
