"""One robustness run against a real cluster: traffic + watchers + faults, then settle and check.

    report = await run(cluster, RunConfig(seed=7, duration=30, faults=["kill-apiserver"]), images=[ref])
    assert report.anomalies == [], report.summary()

On a split node (:class:`~peapod.testing.splitnode.SplitNode`) ``cluster`` is its server and
``agent=node`` adds the ``kill-agent`` fault; the node checks look at the agent's data dir.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from peapod.api.errors import ApiError
from peapod.api.resources import resource
from peapod.client.rest import ApiClient
from peapod.testing.cluster import PeapodCluster
from peapod.testing.etcd import EtcdCluster
from peapod.testing.robustness.checker import check_deployments, check_history, check_node
from peapod.testing.robustness.faults import Injector, Tmpfs
from peapod.testing.robustness.history import FinalObject, FinalState, History, WatchLog, content_of
from peapod.testing.robustness.node import conmons, containers
from peapod.testing.robustness.traffic import Client
from peapod.testing.robustness.watchers import Watcher, resource_info
from peapod.testing.splitnode import SplitNode

SEED_ENV = "PEAPOD_ROBUSTNESS_SEED"
T = TypeVar("T")


def choose_seed(given: int | None = None) -> int:
    """``given``, else ``$PEAPOD_ROBUSTNESS_SEED``, else a fresh random seed (printed by the report)."""
    if given is not None:
        return given
    env = os.environ.get(SEED_ENV, "").strip()
    return int(env) if env else random.SystemRandom().randrange(1, 2**31)


@dataclass
class RunConfig:
    seed: int
    duration: float = 30.0  # seconds of traffic (at least one round of every fault)
    clients: int = 3
    watchers: int = 2  # per watched resource (pods, configmaps)
    faults: list[str] = field(default_factory=list)
    fault_gap: tuple[float, float] = (1.0, 4.0)
    converge_timeout: float = 120.0


@dataclass
class Report:
    seed: int
    ops: collections.Counter[str]
    faults: list[str]
    anomalies: list[str]
    history_path: Path | None = None

    def summary(self) -> str:
        ops = ", ".join(f"{k} {v}" for k, v in sorted(self.ops.items()))
        lines = [f"robustness seed={self.seed} (replay: {SEED_ENV}={self.seed}) ops: {ops}",
                 f"faults ({len(self.faults)}): " + "; ".join(self.faults),
                 f"anomalies: {len(self.anomalies)}", *(f"  - {a}" for a in self.anomalies)]
        if self.history_path:
            lines.append(f"history: {self.history_path}")
        return "\n".join(lines)


def admin_client(cluster: PeapodCluster, timeout: float = 10.0) -> ApiClient:
    ctx = ssl.create_default_context(cafile=str(cluster.data_dir / "tls" / "ca.crt"))
    return ApiClient(cluster.url, token=cluster.admin_token(), ssl_context=ctx, timeout=timeout,
                     user_agent="peapod-robustness")


async def retry(fn: Callable[[], Awaitable[T]], timeout: float = 60.0) -> T:
    """``fn()`` until it stops failing with a connection error or 5xx (the server is restarting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await fn()
        except (TimeoutError, ApiError, aiohttp.ClientError, OSError) as e:
            if isinstance(e, ApiError) and e.code < 500 and e.code != 429:
                raise
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def eventually(check: Callable[[], Awaitable[list[str]]], timeout: float) -> list[str]:
    """Poll ``check`` until it finds nothing; what it found last when ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        found = await retry(check)
        if not found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(1.0)


async def until(predicate: Callable[[], bool], deadline: float, step: float = 0.2) -> bool:
    """Poll ``predicate`` until it holds or the monotonic ``deadline`` passes."""
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)


class Run:
    def __init__(self, cluster: PeapodCluster, config: RunConfig, *, images: list[str],
                 etcd: EtcdCluster | None = None, tmpfs: Tmpfs | None = None, db_path: Path | None = None,
                 out_dir: Path | None = None, agent: SplitNode | None = None,
                 say: Callable[[str], None] = print) -> None:
        self.cluster = cluster
        self.config = config
        self.images = images
        self.namespace = f"rb-{config.seed % 100000}"
        self.history = History(seed=config.seed, namespace=self.namespace)
        self.rng = random.Random(config.seed)
        self.injector = Injector(cluster, self.history, random.Random(f"{config.seed}-faults"), etcd=etcd,
                                 tmpfs=tmpfs, db_path=db_path, agent=agent, say=say)
        self.node_dir = self.injector.node_dir  # whose node/ runs the pods
        self.out_dir = out_dir
        self.say = say

    async def run(self) -> Report:
        cfg = self.config
        self.say(f"robustness seed={cfg.seed} (replay: {SEED_ENV}={cfg.seed}) faults={cfg.faults}")
        api = admin_client(self.cluster)
        clients = [admin_client(self.cluster) for _ in range(cfg.clients)]
        watch_clients: list[ApiClient] = []
        try:
            await self._namespace(api)
            logs = [WatchLog(n, res, self.namespace) for n, res in
                    enumerate(r for r in ("pods", "configmaps") for _ in range(cfg.watchers))]
            self.history.watches = logs
            for _ in logs:
                watch_clients.append(admin_client(self.cluster, timeout=30))
            watchers = [Watcher(c, log, random.Random(f"{cfg.seed}-w{log.watcher}"))
                        for c, log in zip(watch_clients, logs, strict=True)]
            wstop, stop = asyncio.Event(), asyncio.Event()
            wtasks = [asyncio.create_task(w.run(wstop)) for w in watchers]
            ctasks = [asyncio.create_task(Client(i, c, self.namespace, self.history,
                                                 random.Random(f"{cfg.seed}-c{i}"), self.images).run(stop))
                      for i, c in enumerate(clients)]

            ftask = asyncio.create_task(self.injector.run(cfg.faults, stop, cfg.fault_gap))
            await asyncio.sleep(cfg.duration)
            # Every fault kind happens once before traffic stops (the injector then stops at ``stop``).
            first = asyncio.create_task(self.injector.first_round.wait())
            await asyncio.wait([first, ftask], return_when=asyncio.FIRST_COMPLETED)
            first.cancel()
            await asyncio.sleep(3.0)  # traffic goes on a little after the last fault: it must work again
            stop.set()
            await ftask
            for t in ctasks:
                await t
            self.say(f"traffic done: {len(self.history.ops)} requests; settling")
            anomalies = await self._settle(api)
            await self._final(api)
            await self._catch_up(watchers)
            wstop.set()
            for t in wtasks:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            anomalies = check_history(self.history) + anomalies + self._fault_checks()
            if anomalies and self.out_dir is not None:
                await self._dump_state(api, self.out_dir / f"state-{cfg.seed}.json")
        finally:
            for c in [api, *clients, *watch_clients]:
                await c.close()
        path = None
        if self.out_dir is not None:
            path = self.out_dir / f"history-{cfg.seed}.json"
            self.history.dump(path)
        ops = collections.Counter(f"{o.verb}:{o.outcome}" for o in self.history.ops)
        report = Report(cfg.seed, ops, [f"{f.kind} ({f.detail})" for f in self.history.faults], anomalies, path)
        self.say(report.summary())
        return report

    async def _namespace(self, api: ApiClient) -> None:
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}}
        with contextlib.suppress(ApiError):
            await retry(lambda: api.request("POST", "/api/v1/namespaces", body=ns))
        # Pods need the namespace's default ServiceAccount (made by a controller).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                await api.request("GET", f"/api/v1/namespaces/{self.namespace}/serviceaccounts/default")
                return
            except ApiError:
                await asyncio.sleep(0.2)

    async def _settle(self, api: ApiClient) -> list[str]:
        """Once faults stop: Deployments converge, terminating pods go, the node agrees with the API."""
        ns = self.namespace
        timeout = self.config.converge_timeout

        async def deployments() -> list[str]:
            lst = await api.list(resource_info("deployments"), ns)
            return check_deployments(lst.get("items", []))

        async def terminating() -> list[str]:
            lst = await api.list(resource_info("pods"), ns)
            return [f"pod {p['metadata']['name']} stuck terminating since {p['metadata']['deletionTimestamp']}"
                    for p in lst.get("items", []) if p["metadata"].get("deletionTimestamp")]

        async def node() -> list[str]:
            lst = await api.list(resource_info("pods"))
            return check_node(lst.get("items", []), containers(self.node_dir), list(conmons(self.node_dir).values()))

        t0 = time.monotonic()
        found = await eventually(deployments, timeout)
        found += await eventually(terminating, max(10.0, timeout - (time.monotonic() - t0)))
        found += await eventually(node, 30.0)
        self.say(f"settled in {time.monotonic() - t0:.1f}s")
        return found

    async def _dump_state(self, api: ApiClient, path: Path) -> None:
        """What the API and the node hold after a run with anomalies (to find out why)."""
        node = await asyncio.to_thread(containers, self.node_dir)
        state: dict[str, Any] = {"node": [dataclasses.asdict(c) for c in node]}
        for res in ("pods", "replicasets", "deployments", "events"):
            with contextlib.suppress(ApiError, aiohttp.ClientError, OSError, TimeoutError):
                info = resource("apps", "v1", res) if res == "replicasets" else resource_info(res)
                state[res] = (await api.list(info, self.namespace)).get("items", [])
        await asyncio.to_thread(path.write_text, json.dumps(state, indent=1))
        self.say(f"state after the run: {path}")

    async def _final(self, api: ApiClient) -> None:
        final = FinalState(revision=0)
        for res in ("configmaps", "pods", "deployments"):
            lst = await retry(lambda res=res: api.list(resource_info(res), self.namespace))  # type: ignore[misc]
            rv = int(lst["metadata"]["resourceVersion"])
            final.revisions[res] = rv
            final.revision = max(final.revision, rv)
            final.objects[res] = {
                o["metadata"]["name"]: FinalObject(o["metadata"]["name"], int(o["metadata"]["resourceVersion"]),
                                                   o["metadata"]["uid"], content_of(res, o))
                for o in lst.get("items", [])}
        self.history.final = final

    async def _catch_up(self, watchers: list[Watcher], timeout: float = 30.0) -> None:
        """Wait until every watcher has seen the newest resourceVersion of the final state of its resource."""
        final = self.history.final
        assert final is not None
        deadline = time.monotonic() + timeout
        for w in watchers:
            objs = final.objects.get(w.log.resource, {})
            target = max((o.rv for o in objs.values()), default=0)
            await until(lambda w=w, target=target: w.last >= target, deadline)

    def _fault_checks(self) -> list[str]:
        """A full disk must fail writes with a clear 5xx while it lasts, and writes must work after it."""
        out: list[str] = []
        for full, freed in self.injector.full_windows:
            during = [o for o in self.history.ops if o.is_write and full < o.start and o.end < freed]
            failed = [o for o in during if o.code is not None and o.code >= 500]
            if during and not failed:
                out.append(f"disk full: all {len(during)} writes while the disk was full succeeded "
                           "(the fault did not bite)")
            unclear = [o for o in failed if not any(w in o.error.lower() for w in ("full", "space", "storage"))]
            if unclear:
                out.append(f"disk full: {len(unclear)} writes failed without saying why: {unclear[0].error}")
            after = [o for o in self.history.ops if o.is_write and o.start > freed + 1]
            if after and not any(o.outcome == "ok" for o in after):
                out.append("disk full: no write succeeded after the space was freed")
        return out


async def run(cluster: PeapodCluster, config: RunConfig, **kw: Any) -> Report:
    return await Run(cluster, config, **kw).run()
