"""Deployment + ReplicaSet controllers against the real API server (SQLite) with a fake kubelet."""

from __future__ import annotations

import asyncio
from typing import Any

from peapod.client.rest import ApiClient
from peapod.clock import RealClock
from peapod.controlplane.controllers import deployment_util as du
from peapod.controlplane.controllers.deployment import DeploymentController
from peapod.controlplane.controllers.replicaset import ReplicaSetController
from tests.integration.controllers.cluster import DEPLOY, RS, FakeKubelet, events, eventually, pods, running

Obj = dict[str, Any]


def deployment(name: str, replicas: int = 3, *, image: str = "v1", **spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
            **spec,
        },
    }


def controllers(api: ApiClient, kubelet: FakeKubelet | None = None) -> list[Any]:
    clock = RealClock()
    runs = [ReplicaSetController(api, clock=clock).run(), DeploymentController(api, clock=clock).run()]
    return runs + ([kubelet.run()] if kubelet else [])


async def rolled_out(api: ApiClient, name: str) -> Obj | None:
    """kubectl rollout status's test, plus: no pod of an old template left."""
    d = await api.get(DEPLOY, name, "default")
    st, want = d.get("status") or {}, d["spec"]["replicas"]
    ok = (
        d["metadata"]["generation"] <= st.get("observedGeneration", 0)
        and st.get("updatedReplicas", 0) == want
        and st.get("replicas", 0) == want
        and st.get("availableReplicas", 0) == want
    )
    return d if ok and len(await pods(api, f"app={name}")) == want else None


async def owned_rss(api: ApiClient, d: Obj) -> list[Obj]:
    items = (await api.list(RS, "default")).get("items", [])
    return [
        r
        for r in items
        if any(o["uid"] == d["metadata"]["uid"] for o in r["metadata"].get("ownerReferences", []))
    ]


def image_of(obj: Obj) -> str:
    return (
        obj["spec"]["template"]["spec"]["containers"][0]["image"]
        if "template" in obj["spec"]
        else obj["spec"]["containers"][0]["image"]
    )


def set_image(image: str) -> Obj:
    return {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}}


async def test_rolling_update_with_max_unavailable_zero(api: ApiClient) -> None:
    async with running(*controllers(api, FakeKubelet(api))):
        spec = {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}
        await api.create(DEPLOY, deployment("web", 3, **spec), "default")
        d = await eventually(lambda: rolled_out(api, "web"), what="first rollout")
        assert d["metadata"]["annotations"][du.REVISION] == "1"
        cond = {c["type"]: c for c in d["status"]["conditions"]}
        assert cond["Available"]["reason"] == "MinimumReplicasAvailable"
        assert cond["Progressing"]["reason"] == "NewReplicaSetAvailable"
        low = 99

        async def watch_ready() -> None:
            nonlocal low
            while True:
                ps = await pods(api, "app=web")
                ready = [
                    p
                    for p in ps
                    if not p["metadata"].get("deletionTimestamp")
                    and any(
                        c["type"] == "Ready" and c["status"] == "True"
                        for c in p["status"].get("conditions", [])
                    )
                ]
                low = min(low, len(ready))
                await asyncio.sleep(0.01)

        async with running(watch_ready()):
            await api.patch(
                DEPLOY,
                "web",
                {"metadata": {"annotations": {du.CHANGE_CAUSE: "to v2"}}, **set_image("v2")},
                "default",
                patch_type="strategic",
            )
            d = await eventually(lambda: rolled_out(api, "web"), what="rollout to v2")
        assert low >= 3, f"ready pods dropped to {low}"
        assert {image_of(p) for p in await pods(api, "app=web")} == {"v2"}
        rss = await owned_rss(api, d)
        by_rev = {r["metadata"]["annotations"][du.REVISION]: r for r in rss}
        assert set(by_rev) == {"1", "2"} and d["metadata"]["annotations"][du.REVISION] == "2"
        new = by_rev["2"]
        assert new["metadata"]["annotations"][du.CHANGE_CAUSE] == "to v2"
        assert new["metadata"]["annotations"][du.DESIRED_REPLICAS] == "3"
        assert new["metadata"]["annotations"][du.MAX_REPLICAS] == "4"
        h = new["metadata"]["labels"][du.HASH_LABEL]
        assert (
            new["metadata"]["name"] == f"web-{h}"
            and new["spec"]["selector"]["matchLabels"][du.HASH_LABEL] == h
        )
        assert by_rev["1"]["spec"]["replicas"] == 0
        msgs = [e["message"] for e in await events(api, "web") if e["reason"] == "ScalingReplicaSet"]
        assert f"Scaled up replica set {new['metadata']['name']} from 0 to 1" in msgs
        assert any(
            m.startswith(f"Scaled down replica set {by_rev['1']['metadata']['name']} from 3 to 2")
            for m in msgs
        )


async def test_recreate_stops_old_pods_first(api: ApiClient) -> None:
    async with running(*controllers(api, FakeKubelet(api))):
        await api.create(DEPLOY, deployment("rec", 2, strategy={"type": "Recreate"}), "default")
        await eventually(lambda: rolled_out(api, "rec"), what="first rollout")
        overlap = False

        async def watch_overlap() -> None:
            nonlocal overlap
            while True:
                images = {image_of(p) for p in await pods(api, "app=rec")}
                overlap = overlap or images == {"v1", "v2"}
                await asyncio.sleep(0.01)

        async with running(watch_overlap()):
            await api.patch(DEPLOY, "rec", set_image("v2"), "default", patch_type="strategic")
            await eventually(lambda: rolled_out(api, "rec"), what="recreate to v2")
        assert not overlap, "old and new pods existed at the same time"
        assert {image_of(p) for p in await pods(api, "app=rec")} == {"v2"}


async def test_history_limit_and_rollback_by_template(api: ApiClient) -> None:
    async with running(*controllers(api, FakeKubelet(api))):
        await api.create(DEPLOY, deployment("hist", 1, revisionHistoryLimit=1), "default")
        await eventually(lambda: rolled_out(api, "hist"), what="v1")
        for img in ("v2", "v3"):
            await api.patch(DEPLOY, "hist", set_image(img), "default", patch_type="strategic")
            d = await eventually(lambda: rolled_out(api, "hist"), what=img)

        async def pruned() -> list[Obj] | None:
            rss = await owned_rss(api, d)
            return rss if len(rss) == 2 else None

        rss = await eventually(pruned, what="history limited to 1 old RS")
        assert sorted(image_of(r) for r in rss) == ["v2", "v3"]
        # kubectl rollout undo: replace the template with the old RS's, minus pod-template-hash.
        old = next(r for r in rss if image_of(r) == "v2")
        template = old["spec"]["template"]
        template["metadata"]["labels"].pop(du.HASH_LABEL)
        await api.patch(
            DEPLOY,
            "hist",
            [{"op": "replace", "path": "/spec/template", "value": template}],
            "default",
            patch_type="json",
        )
        d = await eventually(lambda: rolled_out(api, "hist"), what="rollback")
        assert {image_of(p) for p in await pods(api, "app=hist")} == {"v2"}
        back = await api.get(RS, old["metadata"]["name"], "default")  # the same RS came back, no new one
        ann = back["metadata"]["annotations"]
        assert ann[du.REVISION] == "4" and ann[du.REVISION_HISTORY] == "2"
        assert d["metadata"]["annotations"][du.REVISION] == "4"


async def test_pause_scale_resume(api: ApiClient) -> None:
    async with running(*controllers(api, FakeKubelet(api))):
        await api.create(DEPLOY, deployment("pz", 2), "default")
        d = await eventually(lambda: rolled_out(api, "pz"), what="v1")
        await api.patch(DEPLOY, "pz", {"spec": {"paused": True}}, "default")
        await api.patch(DEPLOY, "pz", set_image("v2"), "default", patch_type="strategic")
        await api.patch(DEPLOY, "pz", {"spec": {"replicas": 4}}, "default")

        async def paused_and_scaled() -> Obj | None:
            cur = await api.get(DEPLOY, "pz", "default")
            st = cur.get("status") or {}
            prog = next((c for c in st.get("conditions", []) if c["type"] == "Progressing"), {})
            ok = (
                st.get("observedGeneration") == cur["metadata"]["generation"]
                and prog.get("reason") == "DeploymentPaused"
                and st.get("availableReplicas") == 4
            )
            return cur if ok else None

        await eventually(paused_and_scaled, what="paused, scaled to 4")
        rss = await owned_rss(api, d)
        assert len(rss) == 1 and rss[0]["spec"]["replicas"] == 4  # no rollout while paused
        assert {image_of(p) for p in await pods(api, "app=pz")} == {"v1"}
        await api.patch(DEPLOY, "pz", {"spec": {"paused": False}}, "default")
        d = await eventually(lambda: rolled_out(api, "pz"), what="resumed rollout")
        assert {image_of(p) for p in await pods(api, "app=pz")} == {"v2"}
        assert len(await owned_rss(api, d)) == 2


async def test_proportional_scaling_mid_rollout(api: ApiClient) -> None:
    kubelet = FakeKubelet(api, ready=lambda p: image_of(p) != "stuck")
    async with running(*controllers(api, kubelet)):
        spec = {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}}}
        await api.create(DEPLOY, deployment("prop", 10, **spec), "default")
        d = await eventually(lambda: rolled_out(api, "prop"), what="v1")
        await api.patch(DEPLOY, "prop", set_image("stuck"), "default", patch_type="strategic")

        async def stalled() -> list[Obj] | None:
            rss = await owned_rss(api, d)
            sizes = sorted(r["spec"]["replicas"] for r in rss)
            return rss if sizes == [5, 8] else None  # 13 = 10 + surge; 8 = 10 - unavailable

        await eventually(stalled, what="stalled rollout")
        await api.patch(DEPLOY, "prop", {"spec": {"replicas": 20}}, "default")

        async def scaled() -> dict[str, int] | None:
            rss = await owned_rss(api, d)
            sizes = {image_of(r): r["spec"]["replicas"] for r in rss}
            return sizes if sum(sizes.values()) == 23 else None

        sizes = await eventually(scaled, what="proportional scale")
        assert sizes == {"v1": 14, "stuck": 9}, sizes  # round(8*23/13) = 14, round(5*23/13) = 9


async def test_progress_deadline_exceeded(api: ApiClient) -> None:
    kubelet = FakeKubelet(api, ready=lambda p: False)
    async with running(*controllers(api, kubelet)):
        await api.create(DEPLOY, deployment("slow", 1, progressDeadlineSeconds=2), "default")

        async def timed_out() -> Obj | None:
            cur = await api.get(DEPLOY, "slow", "default")
            prog = next(
                (c for c in (cur.get("status") or {}).get("conditions", []) if c["type"] == "Progressing"), {}
            )
            return prog if prog.get("reason") == "ProgressDeadlineExceeded" else None

        prog = await eventually(timed_out, timeout=30, what="ProgressDeadlineExceeded")
        rs = (await owned_rss(api, await api.get(DEPLOY, "slow", "default")))[0]
        assert prog["status"] == "False"
        assert prog["message"] == f'ReplicaSet "{rs["metadata"]["name"]}" has timed out progressing.'
        cur = await api.get(DEPLOY, "slow", "default")
        avail = next(c for c in cur["status"]["conditions"] if c["type"] == "Available")
        assert avail["status"] == "False" and avail["reason"] == "MinimumReplicasUnavailable"
