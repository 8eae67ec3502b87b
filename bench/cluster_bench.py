"""`peapod cluster up --nodes 3` time, and pod start latency on each node of the cluster.

Usage (root): .venv/bin/python bench/cluster_bench.py [--smoke] [--runs 3] [--pods 10] [--json OUT]

1. Time of ``peapod cluster up --nodes 3`` (the CLI's wall time: hosts, etcd, 2 servers, 3 agents, until
   every node is Ready), ``--runs`` times (3; ``--smoke``: 1), median reported; then ``cluster down``.
2. Pod start latency per node, on the last cluster: busybox ``sleep 3600`` pods pinned to one node by
   ``spec.nodeName`` (no scheduler), created one at a time with ``kubectl create``; latency = from
   just before the create until the pod is seen ``Running`` on a ``kubectl get -w`` opened beforehand.
   One warm-up pod per node first (pulls the image into that node's store). ``--pods`` per node
   (10; ``--smoke``: 2); p50/p90 nearest-rank. Every node is a "remote" host (its own network
   namespace, reached over the bridge); the client and the API servers are on the machine.

Nothing is asserted: numbers only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from peapod.testing.images import busybox_image, push_image
from peapod.testing.multinode import KUBECTL, MultiNodeCluster
from peapod.testing.registry import LoopbackRegistry


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


class RunningWatch:
    """``kubectl get pods -w``: the monotonic time each pod was first seen Running."""

    def __init__(self, c: MultiNodeCluster) -> None:
        self.seen: dict[str, float] = {}
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(
            [KUBECTL, f"--kubeconfig={c.kubeconfig}", "get", "pods", "-l", "bench=1", "-w",
             "-o", 'jsonpath={.metadata.name} {.status.phase}{"\\n"}'],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            parts = line.split()
            if len(parts) == 2 and parts[1] == "Running":
                with self.cond:
                    self.seen.setdefault(parts[0], time.monotonic())
                    self.cond.notify_all()

    def wait(self, name: str, timeout: float = 120.0) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: name in self.seen, timeout):
                raise TimeoutError(f"pod {name} not Running after {timeout}s")
            return self.seen[name]

    def close(self) -> None:
        self.proc.kill()
        self.proc.communicate()


def pod(name: str, node: str, image: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": "1"}},
                       "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0,
                                "containers": [{"name": "c", "image": image, "command": ["sleep", "3600"]}]}})


def pod_latencies(c: MultiNodeCluster, image: str, per_node: int) -> dict[str, list[float]]:
    watch = RunningWatch(c)
    out: dict[str, list[float]] = {}
    try:
        time.sleep(0.5)  # the watch is open
        for node in c.node_names():
            warm = f"warm-{node}"
            c.kubectl("create", "-f", "-", input=pod(warm, node, image), check=True)
            watch.wait(warm)
            out[node] = []
            for i in range(per_node):
                name = f"p-{node}-{i}"
                t0 = time.monotonic()
                c.kubectl("create", "-f", "-", input=pod(name, node, image), check=True)
                out[node].append(watch.wait(name) - t0)
    finally:
        watch.close()
    c.kubectl("delete", "pods", "-l", "bench=1", "--wait=false")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="1 run, 2 pods per node")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pods", type=int, default=10, help="pods per node")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None, metavar="OUT")
    args = ap.parse_args(argv)
    runs, per_node = (1, 2) if args.smoke else (args.runs, args.pods)
    result: dict[str, Any] = {"nodes": args.nodes, "runs": runs, "pods_per_node": per_node}
    reg = LoopbackRegistry().start()
    try:
        image = reg.ref("busybox", "1")
        asyncio.run(push_image(image, busybox_image()))
        ups: list[float] = []
        with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
            for r in range(runs):
                c = MultiNodeCluster(Path(tmp) / f"c{r}", nodes=args.nodes, registries=[reg.host])
                c.start()
                ups.append(c.up_seconds)
                try:
                    if r == runs - 1:
                        lat = pod_latencies(c, image, per_node)
                        result["pod_start_s"] = {n: {"p50": pct(v, 50), "p90": pct(v, 90), "all": v}
                                                 for n, v in lat.items()}
                finally:
                    t0 = time.monotonic()
                    c.down()
                    result.setdefault("down_s", []).append(time.monotonic() - t0)
        result["up_s"] = ups
        result["up_median_s"] = statistics.median(ups)
    finally:
        reg.stop()
    print(f"\npeapod cluster up --nodes {args.nodes}: median {result['up_median_s']:.2f} s "
          f"(runs: {', '.join(f'{u:.2f}' for u in ups)}); down: "
          f"{', '.join(f'{d:.2f}' for d in result['down_s'])} s\n")
    print("| node | pod start p50 (s) | p90 (s) | pods |")
    print("|---|---|---|---|")
    for node, v in result.get("pod_start_s", {}).items():
        print(f"| {node} | {v['p50']:.3f} | {v['p90']:.3f} | {len(v['all'])} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
