"""ReplicaSet controller against the real API server (SQLite) with a fake kubelet."""

from __future__ import annotations

from typing import Any

from peapod.client.rest import ApiClient
from peapod.clock import RealClock
from peapod.controlplane.controllers.replicaset import ReplicaSetController
from tests.integration.controllers.cluster import PODS, RS, FakeKubelet, events, eventually, pods, running


def replicaset(name: str, replicas: int, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "tier": "x"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
            **spec,
        },
    }


def live(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


async def settled(api: ApiClient, name: str, n: int, labeled: int | None = None) -> dict[str, Any] | None:
    rs = await api.get(RS, name, "default")
    st = rs.get("status") or {}
    ps = live(await pods(api, f"app={name}"))
    ok = (
        len(ps) == n
        and st.get("replicas", 0) == n
        and st.get("readyReplicas", 0) == n
        and st.get("availableReplicas", 0) == n
        and st.get("fullyLabeledReplicas", 0) == (n if labeled is None else labeled)
        and st.get("observedGeneration") == rs["metadata"]["generation"]
    )
    return rs if ok else None


async def test_keeps_replicas_and_scales(api: ApiClient) -> None:
    rsc = ReplicaSetController(api, clock=RealClock())
    async with running(rsc.run(), FakeKubelet(api).run()):
        await api.create(RS, replicaset("web", 3), "default")
        rs = await eventually(lambda: settled(api, "web", 3), what="3 ready replicas")
        for p in await pods(api, "app=web"):
            ref = p["metadata"]["ownerReferences"][0]
            assert ref == {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "web",
                "uid": rs["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
            assert p["metadata"]["generateName"] == "web-"
        victim = (await pods(api, "app=web"))[0]["metadata"]["name"]
        await api.delete(PODS, victim, "default", grace_period_seconds=0)
        await eventually(lambda: settled(api, "web", 3), what="replacement")
        names = {p["metadata"]["name"] for p in await pods(api, "app=web")}
        assert victim not in names
        await api.patch(RS, "web", {"spec": {"replicas": 5}}, "default")
        await eventually(lambda: settled(api, "web", 5), what="scale up to 5")
        await api.patch(RS, "web", {"spec": {"replicas": 1}}, "default")
        await eventually(lambda: settled(api, "web", 1), what="scale down to 1")
        reasons = {(e["reason"], e["message"].split(":")[0]) for e in await events(api, "web")}
        assert {("SuccessfulCreate", "Created pod"), ("SuccessfulDelete", "Deleted pod")} <= reasons


async def test_no_double_creation_and_scale_to_zero(api: ApiClient) -> None:
    rsc = ReplicaSetController(api, clock=RealClock())
    async with running(rsc.run()):  # no kubelet: pods stay Pending
        await api.create(RS, replicaset("big", 20), "default")
        await eventually(lambda: settled_count(api, "big", 20), what="20 pods")
        await api.patch(RS, "big", {"spec": {"replicas": 0}}, "default")
        await eventually(lambda: settled_count(api, "big", 0), what="0 pods")
        creates = [e for e in await events(api, "big") if e["reason"] == "SuccessfulCreate"]
        assert sum(e.get("count", 1) for e in creates) == 20  # expectations: never more than asked


async def settled_count(api: ApiClient, name: str, n: int) -> bool:
    ps = live(await pods(api, f"app={name}"))
    st = (await api.get(RS, name, "default")).get("status") or {}
    return len(ps) == n and st.get("replicas", 0) == n


async def test_adopts_orphans_and_releases_relabeled(api: ApiClient) -> None:
    orphan = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "orphan", "labels": {"app": "adopt"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    await api.create(PODS, orphan, "default")
    rsc = ReplicaSetController(api, clock=RealClock())
    async with running(rsc.run(), FakeKubelet(api).run()):
        rs = await api.create(RS, replicaset("adopt", 2), "default")
        # The orphan lacks the template's "tier" label: counted, but not fully labeled.
        await eventually(lambda: settled(api, "adopt", 2, labeled=1), what="2 replicas")
        got = await api.get(PODS, "orphan", "default")
        refs = got["metadata"]["ownerReferences"]
        assert refs == [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "adopt",
                "uid": rs["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        # Relabel it: released (no owner reference) and replaced.
        await api.patch(PODS, "orphan", {"metadata": {"labels": {"app": "gone"}}}, "default")
        await eventually(lambda: settled(api, "adopt", 2), what="replacement after release")

        async def released() -> bool:
            p = await api.get(PODS, "orphan", "default")
            return not p["metadata"].get("ownerReferences")

        await eventually(released, what="release")
