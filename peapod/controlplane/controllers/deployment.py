"""Deployment controller: rolls pod templates out through ReplicaSets (Kubernetes' deployment controller).

``sync(key)`` claims the Deployment's ReplicaSets, then either scales proportionally (paused, or
spec.replicas changed mid-rollout) or takes one step of the strategy: RollingUpdate grows the new
ReplicaSet within maxSurge and shrinks old ones within maxUnavailable; Recreate scales every old
ReplicaSet to 0, waits for their pods to be gone, then scales the new one up. Each step is a pure
decision from :mod:`deployment_util`; this module reads caches, carries decisions out and writes
status (replica counts, Available and Progressing conditions, progress deadline).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

from peapod.api.errors import ApiError
from peapod.api.resources import resource
from peapod.client.events import EventRecorder
from peapod.client.informer import object_key
from peapod.client.rest import ApiClient
from peapod.client.sharedinformer import InformerFactory
from peapod.client.workqueue import WorkQueue
from peapod.clock import Clock
from peapod.controlplane.controllers import deployment_util as du
from peapod.controlplane.controllers.controller_utils import (
    Claim,
    Obj,
    adopt_patch,
    claim_decision,
    controller_ref,
    get_condition,
    labels_of,
    matches,
    meta,
    new_condition,
    new_controller_ref,
    release_patch,
    remove_condition,
    set_condition,
)
from peapod.controlplane.controllers.ownership import owner_can_adopt, patch_dependent

log = logging.getLogger(__name__)

PODS = resource("", "v1", "pods")
REPLICASETS = resource("apps", "v1", "replicasets")
DEPLOYMENTS = resource("apps", "v1", "deployments")
COMPONENT = "deployment-controller"


def _wire_status(status: Obj) -> Obj:
    """Zero counts are omitted on the wire (omitempty)."""
    return {k: v for k, v in status.items() if v not in (0, None, [])}


def _same_status(a: Obj, b: Obj) -> bool:
    return _wire_status(a) == _wire_status(b)


class DeploymentController:
    def __init__(
        self, client: ApiClient, *, clock: Clock, recorder: EventRecorder | None = None,
        factory: InformerFactory | None = None,
    ) -> None:
        self.client = client
        self.clock = clock
        self.recorder = recorder or EventRecorder(client, component=COMPONENT, clock=clock)
        self.queue = WorkQueue(clock=clock)
        informers = factory or InformerFactory(client, clock=clock)
        self.d_informer = informers.informer(DEPLOYMENTS)
        self.rs_informer = informers.informer(REPLICASETS)
        self.pod_informer = informers.informer(PODS)
        self.d_informer.add_handlers(on_add=self._enqueue, on_update=lambda _o, n: self._enqueue(n),
                                     on_delete=self._enqueue)
        self.rs_informer.add_handlers(on_add=self._rs_added, on_update=self._rs_updated,
                                      on_delete=self._rs_deleted)
        self.pod_informer.add_handlers(on_delete=self._pod_deleted)

    # -- handlers ----------------------------------------------------------------------------------
    def _enqueue(self, d: Obj) -> None:
        self.queue.add(object_key(d))

    def _owner_key(self, obj: Obj, ref: Obj | None) -> str | None:
        if ref is None or ref.get("kind") != "Deployment":
            return None
        key = f"{meta(obj).get('namespace')}/{ref.get('name')}"
        d = self.d_informer.get(key)
        if d is None or meta(d).get("uid") != ref.get("uid"):
            return None
        return key

    def _enqueue_matching(self, rs: Obj) -> None:
        for d in self.d_informer.list(meta(rs).get("namespace")):
            if matches((d.get("spec") or {}).get("selector"), labels_of(rs)):
                self._enqueue(d)

    def _rs_added(self, rs: Obj) -> None:
        ref = controller_ref(rs)
        if ref is not None:
            key = self._owner_key(rs, ref)
            if key is not None:
                self.queue.add(key)
            return
        self._enqueue_matching(rs)

    def _rs_updated(self, old: Obj, new: Obj) -> None:
        old_ref, new_ref = controller_ref(old), controller_ref(new)
        if old_ref is not None and (new_ref is None or old_ref.get("uid") != new_ref.get("uid")):
            key = self._owner_key(old, old_ref)
            if key is not None:
                self.queue.add(key)
        if new_ref is not None:
            key = self._owner_key(new, new_ref)
            if key is not None:
                self.queue.add(key)
        elif labels_of(old) != labels_of(new) or old_ref is not None:
            self._enqueue_matching(new)

    def _rs_deleted(self, rs: Obj) -> None:
        key = self._owner_key(rs, controller_ref(rs))
        if key is not None:
            self.queue.add(key)

    def _pod_deleted(self, pod: Obj) -> None:
        """A Recreate rollout waits for the old pods to be gone: look again when one goes."""
        rs_ref = controller_ref(pod)
        if rs_ref is None or rs_ref.get("kind") != "ReplicaSet":
            return
        rs = self.rs_informer.get(f"{meta(pod).get('namespace')}/{rs_ref.get('name')}")
        if rs is None:
            return
        key = self._owner_key(rs, controller_ref(rs))
        if key is None:
            return
        d = self.d_informer.get(key)
        if d is not None and not du.is_rolling(d):
            self.queue.add(key)

    # -- sync ----------------------------------------------------------------------------------------
    async def sync(self, key: Any) -> None:
        cached = self.d_informer.get(key)
        if cached is None:
            return
        d = copy.deepcopy(cached)
        selector = (d.get("spec") or {}).get("selector")
        if selector is not None and not selector.get("matchLabels") and not selector.get("matchExpressions"):
            await self.recorder.record(
                d, "Warning", "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.")
            status = dict(d.get("status") or {})
            if int(status.get("observedGeneration") or 0) < int(meta(d).get("generation") or 0):
                status["observedGeneration"] = meta(d).get("generation")
                await self._write_status(d, status)
            return
        rss = await self._claim_replicasets(d)
        pods_by_rs = self._pods_by_rs(d, rss)
        if meta(d).get("deletionTimestamp"):
            d, new_rs, old_rss = await self._all_replicasets(d, rss, create=False)
            await self._sync_status(d, [*old_rss, new_rs], new_rs)
            return
        d = await self._check_paused(d)
        if (d.get("spec") or {}).get("paused"):
            await self._scale_and_sync(d, rss)
            return
        new_rs = du.find_new_rs(d, rss)
        _, old_rss = du.find_old_rss(new_rs, rss)
        if du.is_scaling_event(d, new_rs, old_rss):
            await self._scale_and_sync(d, rss)
            return
        if du.is_rolling(d):
            await self._rollout_rolling(d, rss)
        else:
            await self._rollout_recreate(d, rss, pods_by_rs)

    # -- claiming --------------------------------------------------------------------------------
    async def _claim_replicasets(self, d: Obj) -> list[Obj]:
        selector = (d.get("spec") or {}).get("selector")
        ref = new_controller_ref(d, DEPLOYMENTS.api_version, "Deployment")
        owned: list[Obj] = []
        can_adopt: bool | None = None
        for rs in self.rs_informer.list(meta(d).get("namespace")):
            decision = claim_decision(d, rs, selector)
            if decision is Claim.OWN:
                owned.append(rs)
            elif decision is Claim.ADOPT:
                if can_adopt is None:
                    can_adopt = await owner_can_adopt(self.client, DEPLOYMENTS, d)
                if can_adopt:
                    adopted = await patch_dependent(self.client, REPLICASETS, rs, adopt_patch(rs, ref))
                    if adopted is not None:
                        owned.append(adopted)
            elif decision is Claim.RELEASE:
                await patch_dependent(self.client, REPLICASETS, rs, release_patch(rs, meta(d)["uid"]))
        return owned

    def _pods_by_rs(self, d: Obj, rss: list[Obj]) -> dict[str, list[Obj]]:
        uids = {meta(rs).get("uid"): [] for rs in rss}  # type: dict[str, list[Obj]]
        selector = (d.get("spec") or {}).get("selector")
        for pod in self.pod_informer.list(meta(d).get("namespace")):
            ref = controller_ref(pod)
            if ref is not None and ref.get("uid") in uids and matches(selector, labels_of(pod)):
                uids[ref["uid"]].append(pod)
        return uids

    # -- finding / creating the new ReplicaSet ---------------------------------------------------
    async def _all_replicasets(
        self, d: Obj, rss: list[Obj], *, create: bool
    ) -> tuple[Obj, Obj | None, list[Obj]]:
        existing = du.find_new_rs(d, rss)
        _, old_rss = du.find_old_rss(existing, rss)
        d, new_rs = await self._new_replicaset(d, existing, old_rss, create)
        return d, new_rs, old_rss

    async def _new_replicaset(self, d: Obj, existing: Obj | None, old_rss: list[Obj],
                              create: bool) -> tuple[Obj, Obj | None]:
        new_revision = du.max_revision(old_rss) + 1
        now = self.clock.now()
        if existing is not None:
            rs = copy.deepcopy(existing)
            changed = du.set_new_rs_annotations(d, rs, new_revision, True)
            min_ready = du.min_ready_seconds(d)
            if changed or du.min_ready_seconds(rs) != min_ready:
                rs["spec"]["minReadySeconds"] = min_ready
                return d, await self.client.update(REPLICASETS, rs)
            d = await self._set_revision(d, du.annotations_of(rs).get(du.REVISION, ""))
            status = copy.deepcopy(d.get("status") or {})
            if du.progress_deadline(d) is not None and get_condition(status, "Progressing") is None:
                set_condition(status, new_condition("Progressing", "True", du.FOUND_NEW_RS,
                                                    f'Found new replica set "{meta(rs)["name"]}"', now,
                                                    update_time=True))
                d = await self._write_status(d, status)
            return d, rs
        if not create:
            return d, None
        rs = self._replicaset_for(d)
        rs["spec"]["replicas"] = du.new_rs_new_replicas(d, [*old_rss, rs], rs)
        du.set_new_rs_annotations(d, rs, new_revision, False)
        already = False
        try:
            created = await self.client.create(REPLICASETS, rs, meta(d).get("namespace"))
        except ApiError as e:
            if e.code == 409 and e.reason == "AlreadyExists":
                found = await self._existing_same(d, rs)
                if found is None:  # a hash collision: another template owns the name
                    status = copy.deepcopy(d.get("status") or {})
                    status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
                    await self._write_status(d, status)
                    raise
                created, already = found, True
            else:
                msg = f'Failed to create new replica set "{meta(rs)["name"]}": {e.message}'
                if du.progress_deadline(d) is not None:
                    status = copy.deepcopy(d.get("status") or {})
                    set_condition(status, new_condition("Progressing", "False", du.FAILED_RS_CREATE, msg, now,
                                                        update_time=True))
                    await self._write_status(d, status)
                await self.recorder.record(d, "Warning", du.FAILED_RS_CREATE, msg)
                raise
        n = du.replicas(created)
        if not already and n > 0:
            await self.recorder.record(d, "Normal", "ScalingReplicaSet",
                                       f"Scaled up replica set {meta(created)['name']} from 0 to {n}")
        d = await self._set_revision(d, str(new_revision))
        if not already and du.progress_deadline(d) is not None:
            status = copy.deepcopy(d.get("status") or {})
            set_condition(status, new_condition("Progressing", "True", du.NEW_RS_CREATED,
                                                f'Created new replica set "{meta(created)["name"]}"', now,
                                                update_time=True))
            d = await self._write_status(d, status)
        return d, created

    def _replicaset_for(self, d: Obj) -> Obj:
        spec = d.get("spec") or {}
        template = copy.deepcopy(spec.get("template") or {})
        h = du.compute_hash(template, (d.get("status") or {}).get("collisionCount"))
        tmeta = template.setdefault("metadata", {})
        tmeta["labels"] = {**(tmeta.get("labels") or {}), du.HASH_LABEL: h}
        selector = copy.deepcopy(spec.get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), du.HASH_LABEL: h}
        md = meta(d)
        return {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {
                "name": f"{md['name']}-{h}", "namespace": md.get("namespace"),
                "labels": dict(tmeta["labels"]),
                "ownerReferences": [new_controller_ref(d, DEPLOYMENTS.api_version, "Deployment")],
            },
            "spec": {"replicas": 0, "minReadySeconds": du.min_ready_seconds(d), "selector": selector,
                     "template": template},
        }

    async def _existing_same(self, d: Obj, rs: Obj) -> Obj | None:
        md = meta(rs)
        try:
            live = await self.client.get(REPLICASETS, md["name"], md.get("namespace"))
        except ApiError as e:
            if e.code == 404:
                return None
            raise
        ref = controller_ref(live)
        if (ref is not None and ref.get("uid") == meta(d).get("uid")
                and du.equal_ignore_hash((live.get("spec") or {}).get("template"),
                                         d["spec"].get("template"))):
            return live
        return None

    # -- writes ------------------------------------------------------------------------------------
    async def _set_revision(self, d: Obj, revision: str) -> Obj:
        if not revision or du.annotations_of(d).get(du.REVISION) == revision:
            return d
        md = meta(d)
        patch = {"metadata": {"annotations": {du.REVISION: revision},
                              "resourceVersion": md["resourceVersion"]}}
        return await self.client.patch(DEPLOYMENTS, md["name"], patch, md.get("namespace"),
                                       patch_type="merge")

    async def _write_status(self, d: Obj, status: Obj) -> Obj:
        body = {**d, "status": _wire_status(status)}
        try:
            return await self.client.update(DEPLOYMENTS, body, subresource="status")
        except ApiError as e:
            if e.code == 404:
                return d
            raise

    async def _scale(self, d: Obj, rs: Obj, n: int, *, only_on_size: bool) -> Obj:
        """Set a ReplicaSet's size and replicas annotations (scaleReplicaSet), with the kube event."""
        old = du.replicas(rs)
        want, max_total = du.replicas(d), du.replicas(d) + du.max_surge(d)
        size_change = old != n
        if not size_change and (only_on_size or not du.replicas_annotations_need_update(rs, want, max_total)):
            return rs
        body = copy.deepcopy(rs)
        body["spec"]["replicas"] = n
        du.set_replicas_annotations(body, want, max_total)
        updated = await self.client.update(REPLICASETS, body)
        if size_change:
            op = "up" if old < n else "down"
            await self.recorder.record(d, "Normal", "ScalingReplicaSet",
                                       f"Scaled {op} replica set {meta(rs)['name']} from {old} to {n}")
        return updated

    async def _apply(self, d: Obj, steps: list[du.Scale], rss: list[Obj | None], *,
                     only_on_size: bool) -> list[Obj | None]:
        by_name = {meta(rs)["name"]: i for i, rs in enumerate(rss) if rs is not None}
        out = list(rss)
        for name, n in steps:
            i = by_name[name]
            rs = out[i]
            assert rs is not None
            out[i] = await self._scale(d, rs, n, only_on_size=only_on_size)
        return out

    async def _cleanup(self, d: Obj, old_rss: list[Obj]) -> None:
        for rs in du.cleanup_candidates(d, old_rss):
            md = meta(rs)
            try:
                await self.client.delete(REPLICASETS, md["name"], md.get("namespace"),
                                         preconditions={"uid": md["uid"]})
            except ApiError as e:
                if e.code not in (404, 409):
                    raise

    # -- strategies ----------------------------------------------------------------------------------
    async def _scale_and_sync(self, d: Obj, rss: list[Obj]) -> None:
        d, new_rs, old_rss = await self._all_replicasets(d, rss, create=False)
        steps = du.proportional_scale(d, new_rs, old_rss)
        scaled = await self._apply(d, steps, [*old_rss, new_rs], only_on_size=False)
        old_rss = [rs for rs in scaled[:-1] if rs is not None]
        new_rs = scaled[-1]
        if (d.get("spec") or {}).get("paused"):
            await self._cleanup(d, old_rss)
        await self._sync_status(d, [*old_rss, new_rs], new_rs)

    async def _rollout_rolling(self, d: Obj, rss: list[Obj]) -> None:
        d, new_rs, old_rss = await self._all_replicasets(d, rss, create=True)
        assert new_rs is not None
        steps = du.rolling_step(d, new_rs, old_rss)
        scaled = await self._apply(d, steps, [*old_rss, new_rs], only_on_size=True)
        old_rss = [rs for rs in scaled[:-1] if rs is not None]
        new_rs = scaled[-1]
        if not steps and du.deployment_complete(d, d.get("status") or {}):
            await self._cleanup(d, old_rss)
        await self._sync_rollout_status(d, [*old_rss, new_rs], new_rs)

    async def _rollout_recreate(self, d: Obj, rss: list[Obj], pods_by_rs: dict[str, list[Obj]]) -> None:
        d, new_rs, old_rss = await self._all_replicasets(d, rss, create=False)
        steps = [(meta(rs)["name"], 0) for rs in du.active(list(old_rss))]
        if steps:
            scaled = await self._apply(d, steps, list(old_rss), only_on_size=True)
            await self._sync_rollout_status(d, [*scaled, new_rs], new_rs)
            return
        if du.old_pods_running(new_rs, old_rss, pods_by_rs):
            await self._sync_rollout_status(d, [*old_rss, new_rs], new_rs)
            return
        if new_rs is None:
            d, new_rs, old_rss = await self._all_replicasets(d, rss, create=True)
        assert new_rs is not None
        new_rs = await self._scale(d, new_rs, du.replicas(d), only_on_size=True)
        if du.deployment_complete(d, d.get("status") or {}):
            await self._cleanup(d, old_rss)
        await self._sync_rollout_status(d, [*old_rss, new_rs], new_rs)

    # -- status ------------------------------------------------------------------------------------
    async def _check_paused(self, d: Obj) -> Obj:
        cond = du.paused_condition(d, self.clock.now())
        if cond is None:
            return d
        status = copy.deepcopy(d.get("status") or {})
        remove_condition(status, "Progressing")
        set_condition(status, cond)
        return await self._write_status(d, status)

    async def _sync_status(self, d: Obj, all_rss: list[Obj | None], new_rs: Obj | None) -> None:
        status = du.calculate_status(all_rss, new_rs, d, self.clock.now())
        if not _same_status(d.get("status") or {}, status):
            await self._write_status(d, status)

    async def _sync_rollout_status(self, d: Obj, all_rss: list[Obj | None], new_rs: Obj | None) -> None:
        now = self.clock.now()
        status = du.calculate_status(all_rss, new_rs, d, now)
        status = du.progress_status(d, status, new_rs, now)
        failure = du.replica_failure(all_rss, new_rs)
        if failure is not None:
            set_condition(status, failure)
        else:
            remove_condition(status, "ReplicaFailure")
        if _same_status(d.get("status") or {}, status):
            after = du.stuck_requeue_after(d, status, now)
            if after is not None:
                self.queue.add_after(object_key(d), max(after, 1.0))
            return
        await self._write_status(d, status)

    async def run(self, workers: int = 2) -> None:
        informers = (self.d_informer, self.rs_informer, self.pod_informer)
        tasks = [asyncio.create_task(inf.run()) for inf in informers]
        try:
            for inf in informers:
                await inf.synced.wait()
            await self.queue.run_workers(self.sync, workers)
        finally:
            for t in tasks:
                t.cancel()
