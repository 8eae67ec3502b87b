"""Agent restart under load, like Kubernetes' node e2e restart test: N pods run, the agent is SIGKILLed and
restarted 6 times on the same data dir, and after each restart no container was restarted or lost.

There is no separate `peapod agent` yet, so the process killed is `peapod up --keep-pods` (API server,
controllers and agent in one); the containers live on under their conmons and must be re-adopted.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest

from peapod.testing.cluster import PeapodCluster
from peapod.testing.robustness.node import container_pids, containers
from peapod.testing.robustness.run import admin_client, choose_seed, retry
from peapod.testing.robustness.watchers import resource_info
from tests.robustness.test_faults import peapod_up

RESTARTS = 6


def deployment(replicas: int, image: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "load"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "load"}},
                     "template": {"metadata": {"labels": {"app": "load"}},
                                  "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                                      {"name": "c", "image": image, "command": ["sleep", "36000"]}]}}}}


Snapshot = dict[str, tuple[str, str, str, int]]  # pod uid -> (name, container id, startedAt, restartCount)


def snapshot(pods: list[dict[str, Any]]) -> tuple[Snapshot, list[str]]:
    """Each pod's container identity, and the pods that are not Running with their container ready."""
    snap: Snapshot = {}
    unready = []
    for p in pods:
        st = p.get("status", {})
        cs = (st.get("containerStatuses") or [{}])[0]
        started = (cs.get("state") or {}).get("running", {}).get("startedAt", "")
        snap[p["metadata"]["uid"]] = (p["metadata"]["name"], cs.get("containerID", ""), started,
                                      cs.get("restartCount", -1))
        if st.get("phase") != "Running" or not cs.get("ready") or p["metadata"].get("deletionTimestamp"):
            unready.append(p["metadata"]["name"])
    return snap, unready


async def wait_all_ready(cluster: PeapodCluster, count: int, timeout: float) -> Snapshot:
    api = admin_client(cluster)
    try:
        deadline = time.monotonic() + timeout
        while True:
            lst = await retry(lambda: api.list(resource_info("pods"), "default", label_selector="app=load"))
            snap, unready = snapshot(lst.get("items", []))
            if len(snap) == count and not unready:
                return snap
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(snap)} pods, not ready: {unready[:10]} after {timeout}s")
            await asyncio.sleep(1.0)
    finally:
        await api.close()


async def create(cluster: PeapodCluster, body: dict[str, Any]) -> None:
    api = admin_client(cluster)
    try:
        await retry(lambda: api.create(resource_info("deployments"), body, "default"))
    finally:
        await api.close()


def node_pids(data_dir: Path) -> dict[str, tuple[int | None, int | None]]:
    return {c.id: container_pids(data_dir, c.id) for c in containers(data_dir) if c.status == "running"}


def restart_under_load(tmp_path: Path, image: str, pods: int, ready_timeout: float) -> None:
    rng = random.Random(choose_seed())
    with peapod_up(tmp_path / "data", "--keep-pods") as cluster:
        asyncio.run(create(cluster, deployment(pods, image)))
        before = asyncio.run(wait_all_ready(cluster, pods, ready_timeout))
        pids = node_pids(cluster.data_dir)
        assert len(pids) == pods
        problems: list[str] = []
        for i in range(RESTARTS):
            cluster.kill()
            time.sleep(rng.uniform(0, 1))
            cluster.start(timeout=90)
            time.sleep(3)  # a few relists of the new agent before judging
            after = asyncio.run(wait_all_ready(cluster, pods, 120))
            for uid, was in before.items():
                now = after.get(uid)
                if now != was:
                    problems.append(f"restart {i + 1}: pod {was[0]} was {was[1:]} now {now[1:] if now else 'gone'}")
            if node_pids(cluster.data_dir) != pids:
                problems.append(f"restart {i + 1}: conmon/container pids changed on the node")
            print(f"agent restart {i + 1}/{RESTARTS}: {len(after)} pods unchanged" if not problems else problems[-1])
        cluster.extra_args.remove("--keep-pods")  # the last stop removes the pods
        cluster.kill()
        cluster.start(timeout=90)
    assert problems == []


def test_agent_restarts_with_20_pods(tmp_path: Path, images: list[str]) -> None:
    restart_under_load(tmp_path, images[0], 20, 180)


@pytest.mark.long
@pytest.mark.timeout(1800)
def test_agent_restarts_with_100_pods(tmp_path: Path, images: list[str]) -> None:
    restart_under_load(tmp_path, images[0], 100, 600)
