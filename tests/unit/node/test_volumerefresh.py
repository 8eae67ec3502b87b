"""The volume refresher with fakes and the fake clock: what is re-rendered when, token renewal at 80%
of the lifetime, one read per object per round, terminating pods and subPath binds left alone."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from peapod.node.volumerefresh import (
    RoundCache,
    TokenCache,
    TokenInfo,
    VolumeRefresher,
    token_info,
    token_needs_refresh,
)
from peapod.node.volumes import (
    DownwardValues,
    FakeMounter,
    FakeVolumeSources,
    container_mounts,
    discover_volumes,
    prepare_volumes,
)
from peapod.testing.clock import FakeClock

PERIOD = 60.0


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def jwt(claims: dict[str, Any]) -> str:
    def seg(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")

    return f"{seg({'alg': 'ES256'})}.{seg(claims)}.c2ln"


def pod(uid: str = "uid-1", *, labels: dict[str, str] | None = None, mounts: list[dict] | None = None,
        volumes: list[dict] | None = None) -> dict[str, Any]:
    vols = volumes if volumes is not None else [
        {"name": "cfg", "configMap": {"name": "cfg"}},
        {"name": "creds", "secret": {"secretName": "creds"}},
        {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
        {"name": "api", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}},
            {"configMap": {"name": "root-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}},
        {"name": "scratch", "emptyDir": {}},
    ]
    return {"metadata": {"name": f"web-{uid}", "namespace": "ns", "uid": uid, "labels": labels or {"app": "web"}},
            "spec": {"containers": [{"name": "c", "volumeMounts": mounts or []}], "volumes": vols}}


class Node:
    """The agent's side, faked: pods with their state, one FakeVolumeSources for the API."""

    def __init__(self, tmp: Path, clock: FakeClock) -> None:
        self.tmp = tmp
        self.clock = clock
        self.issued = 0
        self.api = FakeVolumeSources(
            configmaps={("ns", "cfg"): {"data": {"a": "A1"}}, ("ns", "root-ca"): {"data": {"ca.crt": "CA1"}}},
            secrets={("ns", "creds"): {"data": {"pass": b64("p1")}}},
            downward=DownwardValues(node_name="n1"),
            token=self._token)
        self.pods: dict[str, dict[str, Any]] = {}
        self.syncing: set[str] = set()
        self.mounter = FakeMounter()
        self.errors: list[tuple[str, str]] = []

    def _token(self, audience: str | None, expiration: int) -> str:
        self.issued += 1
        iat = int(self.clock.now().timestamp())
        return jwt({"iat": iat, "exp": iat + expiration, "jti": str(self.issued)})

    def pod_dir(self, uid: str) -> Path:
        return self.tmp / "pods" / uid

    async def start(self, p: dict[str, Any]) -> None:
        """What the pod worker does before starting containers."""
        uid = p["metadata"]["uid"]
        self.pods[uid] = p
        self.syncing.add(uid)
        await prepare_volumes(p, self.pod_dir(uid), sources=self.api, mounter=self.mounter, clock=self.clock)

    def refresher(self, **kw: Any) -> VolumeRefresher:
        async def on_error(p: dict[str, Any], err: Exception) -> None:
            self.errors.append((p["metadata"]["uid"], str(err)))

        return VolumeRefresher(clock=self.clock, period=PERIOD, pods=lambda: list(self.pods.values()),
                               syncing=lambda uid: uid in self.syncing, pod_dir=self.pod_dir,
                               sources=lambda p: self.api, mounter=self.mounter, on_error=on_error, **kw)

    def vol(self, uid: str, kind: str, name: str) -> Path:
        return self.pod_dir(uid) / "volumes" / f"kubernetes.io~{kind}" / name

    def data_link(self, uid: str, kind: str, name: str) -> str:
        return os.readlink(self.vol(uid, kind, name) / "..data")

    def calls(self, method: str) -> list[tuple[Any, ...]]:
        return [c for c in self.api.calls if c[0] == method]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def node(tmp_path: Path, clock: FakeClock) -> Node:
    return Node(tmp_path, clock)


# ---- decisions on tokens --------------------------------------------------------------------------

def test_token_refresh_at_80_percent_or_24h(clock: FakeClock) -> None:
    now = clock.now()
    one_hour = TokenInfo("t", now, now + timedelta(hours=1))
    assert not token_needs_refresh(one_hour, now)
    assert not token_needs_refresh(one_hour, now + timedelta(minutes=47, seconds=59))
    assert token_needs_refresh(one_hour, now + timedelta(minutes=48))  # 80% of 60 min
    year = TokenInfo("t", now, now + timedelta(days=365))
    assert not token_needs_refresh(year, now + timedelta(hours=23, minutes=59))
    assert token_needs_refresh(year, now + timedelta(hours=24))


def test_token_times_come_from_the_jwt(clock: FakeClock) -> None:
    now = clock.now()
    iat = int(now.timestamp()) - 100
    info = token_info(jwt({"iat": iat, "exp": iat + 600}), 3600, now)
    assert info.issued_at == now - timedelta(seconds=100)
    assert info.expires_at - info.issued_at == timedelta(seconds=600)  # what the server granted, not asked
    # an extended token (kube's 3607 s tokens valid a year) goes stale at its warnafter
    ext = token_info(jwt({"iat": iat, "exp": iat + 365 * 86400, "kubernetes.io": {"warnafter": iat + 3607}}),
                     3607, now)
    assert ext.expires_at - ext.issued_at == timedelta(seconds=3607)
    opaque = token_info("not-a-jwt", 900, now)
    assert (opaque.issued_at, opaque.expires_at) == (now, now + timedelta(seconds=900))


async def test_token_cache_reuses_then_renews_and_keeps_a_valid_token_on_failure(clock: FakeClock) -> None:
    cache = TokenCache(clock)
    fetched: list[int] = []

    async def fetch(audience: str | None, expiration: int) -> str:
        fetched.append(expiration)
        if len(fetched) >= 3:
            raise RuntimeError("API down")
        return f"tok{len(fetched)}"

    key = ("uid-1", None, 1000)
    assert await cache.get(key, fetch) == "tok1"
    clock.advance(799)
    assert await cache.get(key, fetch) == "tok1" and fetched == [1000]
    clock.advance(1)
    assert await cache.get(key, fetch) == "tok2"
    clock.advance(800)
    assert await cache.get(key, fetch) == "tok2"  # renewal failed, the token is still valid
    clock.advance(200)
    with pytest.raises(RuntimeError):
        await cache.get(key, fetch)  # failed again and tok2 expired
    cache.retain([])
    assert cache.peek(key) is None


# ---- rounds ---------------------------------------------------------------------------------------

async def test_unchanged_sources_rewrite_nothing(node: Node) -> None:
    await node.start(pod())
    before = {v: node.data_link("uid-1", k, v) for k, v in
              [("configmap", "cfg"), ("secret", "creds"), ("downward-api", "info"), ("projected", "api")]}
    node.clock.advance(PERIOD)
    assert await node.refresher().refresh_all() == {}
    after = {v: node.data_link("uid-1", k, v) for k, v in
             [("configmap", "cfg"), ("secret", "creds"), ("downward-api", "info"), ("projected", "api")]}
    assert after == before
    assert node.issued == 1  # the token written at start was reused, not requested again


async def test_each_source_change_rerenders_only_its_volume(node: Node) -> None:
    await node.start(pod())
    r = node.refresher()
    node.api.configmaps[("ns", "cfg")] = {"data": {"a": "A2", "b": "B"}}
    assert await r.refresh_all() == {"uid-1": ["cfg"]}
    cfg = node.vol("uid-1", "configmap", "cfg")
    assert (cfg / "a").read_text() == "A2" and (cfg / "b").read_text() == "B"

    node.api.secrets[("ns", "creds")] = {"data": {"pass": b64("p2")}}
    assert await r.refresh_all() == {"uid-1": ["creds"]}
    assert (node.vol("uid-1", "secret", "creds") / "pass").read_text() == "p2"

    node.pods["uid-1"] = pod(labels={"app": "web", "tier": "front"})  # the informer's newer pod object
    assert await r.refresh_all() == {"uid-1": ["info"]}
    assert (node.vol("uid-1", "downward-api", "info") / "labels").read_text() == 'app="web"\ntier="front"'

    node.api.configmaps[("ns", "root-ca")] = {"data": {"ca.crt": "CA2"}}
    assert await r.refresh_all() == {"uid-1": ["api"]}
    assert (node.vol("uid-1", "projected", "api") / "ca.crt").read_text() == "CA2"
    assert node.issued == 1  # a projected volume's re-render keeps its still-fresh token


async def test_one_read_per_object_per_round(node: Node) -> None:
    for uid in ("uid-1", "uid-2", "uid-3"):
        await node.start(pod(uid))
    node.api.calls.clear()
    r = node.refresher()
    node.api.configmaps[("ns", "cfg")] = {"data": {"a": "A2"}}
    assert await r.refresh_all() == {u: ["cfg"] for u in ("uid-1", "uid-2", "uid-3")}
    assert sorted(c[1:] for c in node.calls("get_configmap")) == [("ns", "cfg"), ("ns", "root-ca")]
    assert node.calls("get_secret") == [("get_secret", "ns", "creds")]
    assert r.last is not None and r.last.reads == 3
    await r.refresh_all()  # the next round reads again
    assert len(node.calls("get_configmap")) == 4


async def test_a_failed_read_is_not_retried_per_pod_in_one_round() -> None:
    cache = RoundCache()
    reads: list[str] = []

    async def read(ns: str, name: str) -> dict[str, Any] | None:
        reads.append(name)
        raise RuntimeError("boom")

    for _ in range(3):
        with pytest.raises(RuntimeError):
            await cache.get("configmap", "ns", "x", read)
    assert reads == ["x"]


async def test_token_is_renewed_at_80_percent_of_its_lifetime(node: Node) -> None:
    await node.start(pod())
    r = node.refresher()
    token_file = node.vol("uid-1", "projected", "api") / "token"
    first = token_file.read_text()
    node.clock.advance(0.8 * 3600 - 1)
    assert await r.refresh_all() == {}
    assert node.issued == 1 and token_file.read_text() == first
    node.clock.advance(1)
    assert await r.refresh_all() == {"uid-1": ["api"]}
    assert node.issued == 2 and token_file.read_text() != first
    assert node.calls("request_token")[-1] == ("request_token", None, 3600)
    second = token_file.read_text()
    node.clock.advance(PERIOD)
    assert await r.refresh_all() == {} and token_file.read_text() == second


async def test_token_seen_after_an_agent_restart_is_judged_by_its_claims(node: Node) -> None:
    await node.start(pod())
    node.clock.advance(0.8 * 3600)  # the old agent wrote it; the new one starts now, 80% later
    assert await node.refresher().refresh_all() == {"uid-1": ["api"]}
    assert node.issued == 2


async def test_terminating_and_unprepared_pods_are_left_alone(node: Node) -> None:
    await node.start(pod("uid-1"))
    node.pods["uid-2"] = pod("uid-2")  # bound here, volumes not set up yet (containers not started)
    node.syncing.add("uid-2")
    node.syncing.discard("uid-1")  # termination decided
    node.api.configmaps[("ns", "cfg")] = {"data": {"a": "A2"}}
    node.api.calls.clear()
    assert await node.refresher().refresh_all() == {}
    assert (node.vol("uid-1", "configmap", "cfg") / "a").read_text() == "A1"
    assert not node.pod_dir("uid-2").exists()  # nothing created for the unprepared pod
    assert node.issued == 1


async def test_termination_during_the_reads_stops_before_any_write(node: Node) -> None:
    await node.start(pod())
    node.api.configmaps[("ns", "cfg")] = {"data": {"a": "A2"}}
    inner_get = node.api.get_configmap

    async def get_and_terminate(ns: str, name: str) -> dict[str, Any] | None:
        node.syncing.discard("uid-1")  # the pod was deleted while its ConfigMap was read
        return await inner_get(ns, name)

    node.api.get_configmap = get_and_terminate  # type: ignore[method-assign]
    before = node.data_link("uid-1", "configmap", "cfg")
    assert await node.refresher().refresh_all() == {}
    assert node.data_link("uid-1", "configmap", "cfg") == before
    assert (node.vol("uid-1", "configmap", "cfg") / "a").read_text() == "A1"


async def test_torn_down_memory_volume_is_not_recreated(node: Node) -> None:
    await node.start(pod())
    node.mounter.unmount(node.vol("uid-1", "secret", "creds"))  # a teardown's unmount happened
    node.api.secrets[("ns", "creds")] = {"data": {"pass": b64("p2")}}
    calls = len(node.mounter.calls)
    res = await node.refresher().refresh_pod(node.pods["uid-1"])
    assert "creds" in res.skipped and "creds" not in res.changed
    assert not any(c[0] == "mount_tmpfs" for c in node.mounter.calls[calls:])
    assert (node.vol("uid-1", "secret", "creds") / "pass").read_text() == "p1"


async def test_missing_source_keeps_old_files_and_reports(node: Node) -> None:
    await node.start(pod())
    del node.api.configmaps[("ns", "cfg")]
    node.api.secrets[("ns", "creds")] = {"data": {"pass": b64("p2")}}
    assert await node.refresher().refresh_all() == {"uid-1": ["creds"]}
    assert (node.vol("uid-1", "configmap", "cfg") / "a").read_text() == "A1"
    assert node.errors == [("uid-1", 'MountVolume.SetUp failed for volume "cfg" : configmap "cfg" not found')]


async def test_subpath_binds_are_not_touched(node: Node) -> None:
    p = pod(mounts=[{"name": "cfg", "mountPath": "/etc/a", "subPath": "a"}])
    await node.start(p)
    prepared = discover_volumes(p, node.pod_dir("uid-1"))
    mounts = container_mounts(p, p["spec"]["containers"][0], prepared, env={}, mounter=node.mounter)
    target = Path(mounts[0].source)
    assert node.mounter.is_mountpoint(target)
    calls = len(node.mounter.calls)
    node.api.configmaps[("ns", "cfg")] = {"data": {"a": "A2"}}
    assert await node.refresher().refresh_all() == {"uid-1": ["cfg"]}
    assert all(c[0] not in ("bind_fd", "unmount", "mount_tmpfs") for c in node.mounter.calls[calls:])
    assert node.mounter.is_mountpoint(target)  # still the bind made at container start
    assert (node.vol("uid-1", "configmap", "cfg") / "a").read_text() == "A2"


# ---- the loop -------------------------------------------------------------------------------------

async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_loop_runs_every_period_on_the_clock(node: Node) -> None:
    await node.start(pod())
    r = node.refresher()
    task = asyncio.create_task(r.run())
    try:
        await settle()
        node.api.configmaps[("ns", "cfg")] = {"data": {"a": "A2"}}
        node.clock.advance(PERIOD - 1)
        await settle()
        assert (node.vol("uid-1", "configmap", "cfg") / "a").read_text() == "A1"
        node.clock.advance(1)
        await settle()
        assert (node.vol("uid-1", "configmap", "cfg") / "a").read_text() == "A2"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_hanging_read_is_abandoned_after_the_pod_timeout(node: Node) -> None:
    node.api.configmaps[("ns", "slow")] = {"data": {"a": "S1"}}
    await node.start(pod("uid-1", volumes=[{"name": "cfg", "configMap": {"name": "slow"}}]))
    await node.start(pod("uid-2", volumes=[{"name": "cfg", "configMap": {"name": "cfg"}}]))
    hang: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    inner_get = node.api.get_configmap

    async def get(ns: str, name: str) -> dict[str, Any] | None:
        if name == "slow":
            await hang
        return await inner_get(ns, name)

    node.api.get_configmap = get  # type: ignore[method-assign]
    node.api.configmaps[("ns", "cfg")] = {"data": {"a": "A2"}}
    r = node.refresher(pod_timeout=10.0)
    round_ = asyncio.create_task(r.refresh_all())
    await settle()
    assert not round_.done()
    node.clock.advance(10.0)
    await settle()
    assert round_.done() and round_.result() == {"uid-2": ["cfg"]}
    assert not hang.done() or hang.cancelled()
