"""Scheduler benchmark: the pure scheduling core (filter, score, assume) without the API.

Usage: .venv/bin/python bench/scheduler_bench.py [--smoke] [--nodes 1000] [--pods 10000]
       [--scenario all|plain|affinity|anti|spread] [--json OUT]
Simulates ``--nodes`` nodes (4 cpu / 16Gi / 110 pods, 3 zones) and schedules ``--pods`` pods one at a
time through SchedulerCore.schedule + assume, as the scheduler loop does, and prints pods/s.
Scenarios: ``plain`` (requests only), ``affinity`` (required node affinity to two of the three zones
plus a preferred one), ``anti`` (required pod anti-affinity per hostname within groups of 10 pods),
``spread`` (zone topology spread, DoNotSchedule). ``--smoke``: 50 nodes, 200 pods.
Nothing is asserted: numbers only.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

from peapod.controlplane.scheduler.core import FitError, SchedulerCore
from peapod.controlplane.scheduler.model import pod_info
from peapod.controlplane.scheduler.snapshot import Snapshot

SCENARIOS = ("plain", "affinity", "anti", "spread")


def make_node(i: int) -> dict[str, Any]:
    name = f"node-{i:05d}"
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                               "topology.kubernetes.io/zone": f"zone-{i % 3}"}},
        "spec": {},
        "status": {
            "allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "conditions": [{"type": "Ready", "status": "True"}],
            "images": [{"names": ["registry.local/app:1"], "sizeBytes": 50 * 1024 * 1024}] if i % 10 == 0
            else [],
        },
    }


def make_pod(i: int, scenario: str) -> dict[str, Any]:
    app = f"app-{i // 10}"
    spec: dict[str, Any] = {"containers": [{
        "name": "c", "image": "registry.local/app:1",
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
    }]}
    if scenario == "affinity":
        zone = "topology.kubernetes.io/zone"
        spec["affinity"] = {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": zone, "operator": "In", "values": ["zone-0", "zone-1"]}]}]},
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "preference": {
                "matchExpressions": [{"key": zone, "operator": "In", "values": [f"zone-{i % 2}"]}]}}]}}
    elif scenario == "anti":
        spec["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "kubernetes.io/hostname"}]}}
    elif scenario == "spread":
        spec["topologySpreadConstraints"] = [{
            "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": app}}}]
    md = {"name": f"pod-{i}", "namespace": "default", "uid": f"uid-{i}", "labels": {"app": app}}
    return {"metadata": md, "spec": spec}


def run(scenario: str, nodes: int, pods: int, seed: int = 1) -> dict[str, Any]:
    snap = Snapshot()
    for i in range(nodes):
        snap.set_node(make_node(i))
    core = SchedulerCore(snap, rng=random.Random(seed))
    objs = [make_pod(i, scenario) for i in range(pods)]
    bound = failed = 0
    t0 = time.perf_counter()
    for obj in objs:
        p = pod_info(obj)
        try:
            placement = core.schedule(p)
        except FitError:
            failed += 1
            continue
        core.assume(p, placement.node)
        bound += 1
    dt = time.perf_counter() - t0
    return {"scenario": scenario, "nodes": nodes, "pods": pods, "bound": bound, "failed": failed,
            "seconds": round(dt, 2), "pods_per_second": round(bound / dt, 1)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="50 nodes, 200 pods: checks the script runs")
    ap.add_argument("--nodes", type=int, default=None, help="simulated nodes (default 1000)")
    ap.add_argument("--pods", type=int, default=None, help="pods to schedule (default 10000)")
    ap.add_argument("--scenario", default="all", choices=["all", *SCENARIOS])
    ap.add_argument("--json", help="also write the results as JSON to this file")
    args = ap.parse_args(argv)
    args.nodes = args.nodes or (50 if args.smoke else 1000)
    args.pods = args.pods or (200 if args.smoke else 10000)
    scenarios = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    results = []
    print(f"{'scenario':10} {'nodes':>6} {'pods':>6} {'bound':>6} {'failed':>6} {'seconds':>8} {'pods/s':>8}")
    for s in scenarios:
        r = run(s, args.nodes, args.pods)
        results.append(r)
        print(f"{r['scenario']:10} {r['nodes']:6} {r['pods']:6} {r['bound']:6} {r['failed']:6} "
              f"{r['seconds']:8} {r['pods_per_second']:8}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
