"""Agent restart under load, like Kubernetes' node e2e restart test: N pods run, the agent is SIGKILLed and
restarted 6 times on the same data dir, and after each restart no container was restarted or lost.

The main case is a split node (:class:`~peapod.testing.splitnode.SplitNode`): only ``peapod agent`` dies,
the API server keeps serving. While the agent is down a marker pod is created for it and the previous
one deleted, so each new agent must prove it works (starts the one, finishes the other) besides leaving
the load alone. After each restart: every load pod Running and Ready, its container id, start time and
restartCount unchanged, the conmon and container PIDs on the node unchanged, no new event on any load
pod. The long mode (``PEAPOD_ROBUSTNESS_LONG=1``) runs 100 pods, and 20 under ``peapod up --keep-pods``, where
the server and the agent die together (the agent then lists from a server that restarted too).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from peapod.api.errors import ApiError
from peapod.client.rest import ApiClient
from peapod.testing.cluster import PeapodCluster
from peapod.testing.robustness.node import container_pids, containers
from peapod.testing.robustness.run import admin_client, retry
from peapod.testing.robustness.watchers import resource_info
from tests.robustness.test_faults import peapod_up, split_node

RESTARTS = 6
Snapshot = dict[str, tuple[str, str, str, int]]  # pod uid -> (name, container id, startedAt, restartCount)


def deployment(replicas: int, image: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "load"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "load"}},
                     "template": {"metadata": {"labels": {"app": "load"}},
                                  "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                                      {"name": "c", "image": image, "command": ["sleep", "36000"]}]}}}}


def marker(i: int, image: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"marker-{i}", "labels": {"app": "marker"}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                {"name": "c", "image": image, "command": ["sleep", "36000"]}]}}


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
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])
        if st.get("phase") != "Running" or not cs.get("ready") or not ready or p["metadata"].get("deletionTimestamp"):
            unready.append(p["metadata"]["name"])
    return snap, unready


def node_pids(node_dir: Path, uids: set[str]) -> dict[str, tuple[int | None, int | None]]:
    """(conmon pid, container pid) of each running container of the pods ``uids`` on the node."""
    return {c.id: container_pids(node_dir, c.id) for c in containers(node_dir)
            if c.status == "running" and c.id[:36] in uids}


async def until(what: str, timeout: float, check: Callable[[], Awaitable[Any]]) -> Any:
    """``await check()`` until it is truthy (API errors of a restarting server retried); fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = await retry(check)
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting until {what}")
        await asyncio.sleep(0.5)


@dataclass
class Target:
    """What the test restarts: ``kill()`` SIGKILLs the agent (with ``peapod up``: the whole process),
    ``restart()`` starts it again and returns once it runs; ``api_while_down``: the API serves meanwhile."""

    cluster: PeapodCluster
    node_dir: Path
    kill: Callable[[], object]
    restart: Callable[[], object]
    api_while_down: bool


class Restarts:
    def __init__(self, target: Target, api: ApiClient, image: str, pods: int) -> None:
        self.t = target
        self.api = api
        self.image = image
        self.pods = pods
        self.problems: list[str] = []
        self.baseline: set[tuple[str, str, int]] = set()  # events about the load pods once they all ran

    async def load(self, label: str = "app=load") -> list[dict[str, Any]]:
        lst = await retry(lambda: self.api.list(resource_info("pods"), "default", label_selector=label))
        return list(lst.get("items", []))

    async def all_ready(self, timeout: float) -> Snapshot:
        async def check() -> Snapshot | None:
            snap, unready = snapshot(await self.load())
            return snap if len(snap) == self.pods and not unready else None

        try:
            return await until(f"{self.pods} load pods Running and Ready", timeout, check)  # type: ignore[no-any-return]
        except AssertionError:
            snap, unready = snapshot(await self.load())
            raise AssertionError(f"{len(snap)} of {self.pods} load pods; not ready: {unready[:10]}") from None

    async def events(self, uids: set[str]) -> set[tuple[str, str, int]]:
        """(pod uid, reason, count) of every event about the pods ``uids``."""
        lst = await retry(lambda: self.api.list(resource_info("events"), "default"))
        return {(e["involvedObject"].get("uid", ""), e.get("reason", ""), e.get("count", 1))
                for e in lst.get("items", []) if e.get("involvedObject", {}).get("uid") in uids}

    async def markers(self, i: int) -> None:
        """Create marker pod ``i`` and delete marker ``i - 1`` (the next running agent must do both)."""
        await retry(lambda: self.api.create(resource_info("pods"), marker(i, self.image), "default"))
        if i > 1:
            with contextlib.suppress(ApiError):
                await retry(lambda: self.api.delete(resource_info("pods"), f"marker-{i - 1}", "default"))

    async def markers_done(self, i: int, timeout: float) -> None:
        async def check() -> bool:
            names = {p["metadata"]["name"]: p for p in await self.load("app=marker")}
            running = names.get(f"marker-{i}", {}).get("status", {}).get("phase") == "Running"
            return running and f"marker-{i - 1}" not in names

        try:
            await until(f"marker-{i} Running and marker-{i - 1} gone", timeout, check)
        except AssertionError as e:
            self.problems.append(f"restart {i}: the new agent did not catch up: {e}")

    async def run(self, rng: random.Random, ready_timeout: float) -> None:
        await retry(lambda: self.api.create(resource_info("deployments"), deployment(self.pods, self.image),
                                            "default"))
        before = await self.all_ready(ready_timeout)
        uids = set(before)
        # Started events are written in the background: take the baseline once each pod has its own.
        self.baseline = await until("every load pod's Started event", 60, lambda: self._started_events(uids))
        pids = node_pids(self.t.node_dir, uids)
        assert len(pids) == self.pods, f"{len(pids)} running containers for {self.pods} pods"
        for i in range(1, RESTARTS + 1):
            await asyncio.to_thread(self.t.kill)
            if self.t.api_while_down:
                await self.markers(i)
            await asyncio.sleep(rng.uniform(0, 1))
            await asyncio.to_thread(self.t.restart)
            if not self.t.api_while_down:
                await self.markers(i)
            await self.markers_done(i, 60)
            await asyncio.sleep(2)  # a couple of relists of the new agent before judging
            self.compare(i, before, await self.all_ready(120), pids, await self.events(uids))
            print(f"agent restart {i}/{RESTARTS}: {self.pods} pods" + (f", {len(self.problems)} problems"
                                                                       if self.problems else " unchanged"))
        await asyncio.sleep(5)  # the last agent too has had time to do harm
        self.compare(RESTARTS, before, await self.all_ready(60), pids, await self.events(uids))

    async def _started_events(self, uids: set[str]) -> set[tuple[str, str, int]] | None:
        got = await self.events(uids)
        return got if {uid for uid, reason, _ in got if reason == "Started"} == uids else None

    def compare(self, i: int, before: Snapshot, after: Snapshot, pids: dict[str, tuple[int | None, int | None]],
                events: set[tuple[str, str, int]]) -> None:
        for uid, was in before.items():
            now = after.get(uid)
            if now != was:
                self.problems.append(f"restart {i}: pod {was[0]} was {was[1:]} now {now[1:] if now else 'gone'}")
        now_pids = node_pids(self.t.node_dir, set(before))
        for cid, was_pids in pids.items():
            if now_pids.get(cid) != was_pids:
                self.problems.append(f"restart {i}: container {cid} (conmon, pid) was {was_pids}, "
                                     f"now {now_pids.get(cid)}")
        extra = sorted(set(now_pids) - set(pids))
        if extra:
            self.problems.append(f"restart {i}: new containers of load pods on the node: {extra[:5]}")
        self.problems.extend(f"restart {i}: new event {reason} (count {count}) on load pod {uid}"
                             for uid, reason, count in sorted(events - self.baseline))


@contextlib.contextmanager
def split_target(tmp_path: Path, out: Path, seed: int) -> Iterator[Target]:
    with split_node(tmp_path / "split", log_to=out, seed=seed) as node:
        yield Target(node.server, node.agent_dir, node.kill_agent, node.restart_agent, api_while_down=True)


@contextlib.contextmanager
def up_target(tmp_path: Path, out: Path) -> Iterator[Target]:
    with peapod_up(tmp_path / "data", "--keep-pods") as cluster:
        def restart() -> None:
            cluster.start(timeout=90)

        try:
            yield Target(cluster, cluster.data_dir, cluster.kill, restart, api_while_down=False)
        finally:
            cluster.extra_args.remove("--keep-pods")  # the last stop removes the pods
            cluster.kill()
            cluster.start(timeout=90)


def restart_under_load(target: Target, image: str, pods: int, ready_timeout: float, seed: int) -> None:
    print(f"agent restarts: seed {seed}, {pods} pods, {RESTARTS} restarts")

    async def main() -> list[str]:
        api = admin_client(target.cluster, timeout=30)
        try:
            r = Restarts(target, api, image, pods)
            await r.run(random.Random(seed), ready_timeout)
            return list(dict.fromkeys(r.problems))  # a lasting problem once
        finally:
            await api.close()

    assert asyncio.run(main()) == []


@pytest.mark.timeout(240)
def test_agent_restarts_with_20_pods(tmp_path: Path, out_dir: Path, images: list[str], seed: int) -> None:
    with split_target(tmp_path, out_dir, seed) as target:
        restart_under_load(target, images[0], 20, 180, seed)


@pytest.mark.long
@pytest.mark.timeout(1800)
def test_agent_restarts_with_100_pods(tmp_path: Path, out_dir: Path, images: list[str], seed: int) -> None:
    with split_target(tmp_path, out_dir, seed) as target:
        restart_under_load(target, images[0], 100, 600, seed)


@pytest.mark.long
@pytest.mark.timeout(1800)
def test_peapod_up_restarts_with_20_pods(tmp_path: Path, out_dir: Path, images: list[str], seed: int) -> None:
    with up_target(tmp_path, out_dir) as target:
        restart_under_load(target, images[0], 20, 300, seed)
