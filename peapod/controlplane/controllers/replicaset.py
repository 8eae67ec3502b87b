"""ReplicaSet controller: keeps spec.replicas active pods matching the selector (Kubernetes' replica_set.go).

``sync(key)`` is level-triggered: it reads the ReplicaSet and the namespace's pods from the informer
caches, adopts matching orphans and releases pods that stopped matching, then creates (in slow-start
batches) or deletes (lowest ranked first) the difference, and writes status. Creates and deletes in
flight are tracked as expectations, so a cache that has not caught up yet never causes a second
round of creates; a sync with unmet expectations only updates status.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from peapod.api.errors import ApiError
from peapod.api.resources import resource
from peapod.client.events import EventRecorder
from peapod.client.informer import object_key
from peapod.client.rest import ApiClient
from peapod.client.sharedinformer import InformerFactory
from peapod.client.workqueue import WorkQueue
from peapod.clock import Clock
from peapod.controlplane.controllers.controller_utils import (
    BURST_REPLICAS,
    Claim,
    Expectations,
    Obj,
    adopt_patch,
    claim_decision,
    controller_ref,
    get_condition,
    is_pod_active,
    is_pod_available,
    is_pod_ready,
    labels_of,
    matches,
    meta,
    new_condition,
    new_controller_ref,
    pod_from_template,
    pods_to_delete,
    release_patch,
    remove_condition,
    set_condition,
    slow_start_batch,
)
from peapod.controlplane.controllers.ownership import owner_can_adopt, patch_dependent

log = logging.getLogger(__name__)

PODS = resource("", "v1", "pods")
REPLICASETS = resource("apps", "v1", "replicasets")
COMPONENT = "replicaset-controller"


def calculate_status(rs: Obj, pods: list[Obj], manage_error: str | None, now: datetime) -> Obj:
    """The status a ReplicaSet should have, given its claimed active pods (calculateStatus)."""
    spec = rs.get("spec") or {}
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    fully_labeled = sum(
        1 for p in pods if all(labels_of(p).get(k) == v for k, v in template_labels.items())
    )
    status: Obj = {
        "replicas": len(pods),
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": sum(1 for p in pods if is_pod_ready(p)),
        "availableReplicas": sum(1 for p in pods if is_pod_available(p, min_ready, now)),
        "observedGeneration": meta(rs).get("generation", 0),
    }
    old = rs.get("status") or {}
    if old.get("conditions"):
        status["conditions"] = [dict(c) for c in old["conditions"]]
    failure = get_condition(status, "ReplicaFailure")
    if manage_error is not None and failure is None:
        diff = len(pods) - int(spec.get("replicas", 1))
        reason = "FailedCreate" if diff < 0 else "FailedDelete" if diff > 0 else ""
        set_condition(status, new_condition("ReplicaFailure", "True", reason, manage_error, now))
    elif manage_error is None and failure is not None:
        remove_condition(status, "ReplicaFailure")
    # Zero counts are omitted on the wire (omitempty), as kube does.
    return {k: v for k, v in status.items() if v or k == "replicas"}


def status_differs(old: Obj, new: Obj) -> bool:
    keys = ("replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas", "observedGeneration",
            "conditions")
    return any((old.get(k) or 0) != (new.get(k) or 0) for k in keys)


class ReplicaSetController:
    def __init__(
        self, client: ApiClient, *, clock: Clock, recorder: EventRecorder | None = None,
        burst_replicas: int = BURST_REPLICAS, factory: InformerFactory | None = None,
    ) -> None:
        self.client = client
        self.clock = clock
        self.recorder = recorder or EventRecorder(client, component=COMPONENT, clock=clock)
        self.burst = burst_replicas
        self.queue = WorkQueue(clock=clock)
        self.expectations = Expectations(clock)
        informers = factory or InformerFactory(client, clock=clock)
        self.rs_informer = informers.informer(REPLICASETS)
        self.pod_informer = informers.informer(PODS)
        self.rs_informer.add_handlers(
            on_add=self._enqueue, on_update=lambda _o, n: self._enqueue(n), on_delete=self._rs_deleted,
        )
        self.pod_informer.add_handlers(on_add=self._pod_added, on_update=self._pod_updated,
                                       on_delete=self._pod_deleted)

    # -- handlers: cheap, they only enqueue ---------------------------------------------------------
    def _enqueue(self, rs: Obj) -> None:
        self.queue.add(object_key(rs))

    def _rs_deleted(self, rs: Obj) -> None:
        key = object_key(rs)
        self.expectations.delete(key)
        self.queue.add(key)

    def _owner_key(self, pod: Obj, ref: Obj) -> str | None:
        if ref.get("kind") != "ReplicaSet" or not ref.get("apiVersion", "").startswith("apps/"):
            return None
        key = f"{meta(pod).get('namespace')}/{ref.get('name')}"
        rs = self.rs_informer.get(key)
        if rs is None or meta(rs).get("uid") != ref.get("uid"):
            return None
        return key

    def _matching_rs_keys(self, pod: Obj) -> list[str]:
        ns = meta(pod).get("namespace")
        return [object_key(rs) for rs in self.rs_informer.list(ns)
                if matches((rs.get("spec") or {}).get("selector"), labels_of(pod))]

    def _pod_added(self, pod: Obj) -> None:
        if meta(pod).get("deletionTimestamp"):
            self._pod_deleted(pod)
            return
        ref = controller_ref(pod)
        if ref is not None:
            key = self._owner_key(pod, ref)
            if key is not None:
                self.expectations.creation_observed(key)
                self.queue.add(key)
            return
        for key in self._matching_rs_keys(pod):
            self.queue.add(key)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if meta(new).get("resourceVersion") == meta(old).get("resourceVersion"):
            return
        if meta(new).get("deletionTimestamp") and not meta(old).get("deletionTimestamp"):
            # A graceful delete: count it as observed now, the pod will go away.
            self._pod_deleted(new)
            return
        old_ref, new_ref = controller_ref(old), controller_ref(new)
        if old_ref is not None and (new_ref is None or old_ref.get("uid") != new_ref.get("uid")):
            key = self._owner_key(old, old_ref)
            if key is not None:
                self.queue.add(key)
        if new_ref is not None:
            key = self._owner_key(new, new_ref)
            if key is None:
                return
            self.queue.add(key)
            rs = self.rs_informer.get(key)
            min_ready = int(((rs or {}).get("spec") or {}).get("minReadySeconds") or 0)
            if min_ready > 0 and not is_pod_ready(old) and is_pod_ready(new):
                self.queue.add_after(key, min_ready + 1.0)
            return
        if labels_of(old) != labels_of(new) or old_ref is not None:
            for key in self._matching_rs_keys(new):
                self.queue.add(key)

    def _pod_deleted(self, pod: Obj) -> None:
        ref = controller_ref(pod)
        if ref is None:
            return
        key = self._owner_key(pod, ref)
        if key is None:
            return
        self.expectations.deletion_observed(key, object_key(pod))
        self.queue.add(key)

    # -- the sync ------------------------------------------------------------------------------------
    async def sync(self, key: Any) -> None:
        rs = self.rs_informer.get(key)
        if rs is None:
            self.expectations.delete(key)
            return
        needs_sync = self.expectations.satisfied(key)
        selector = (rs.get("spec") or {}).get("selector")
        ns = meta(rs).get("namespace")
        active = [p for p in self.pod_informer.list(ns) if is_pod_active(p)]
        pods = await self._claim_pods(rs, selector, active)
        manage_error: str | None = None
        if needs_sync and not meta(rs).get("deletionTimestamp"):
            try:
                await self._manage_replicas(key, rs, pods)
            except ApiError as e:
                manage_error = e.message or str(e)
        now = self.clock.now()
        new_status = calculate_status(rs, pods, manage_error, now)
        rs = await self._update_status(rs, new_status)
        if manage_error is not None:
            raise ApiError(500, "InternalError", manage_error)
        min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
        replicas = int((rs.get("spec") or {}).get("replicas", 1))
        if (min_ready > 0 and new_status.get("readyReplicas", 0) == replicas
                and new_status.get("availableReplicas", 0) != replicas):
            self.queue.add_after(key, float(min_ready))

    async def _claim_pods(self, rs: Obj, selector: Obj | None, pods: list[Obj]) -> list[Obj]:
        owned: list[Obj] = []
        can_adopt: bool | None = None
        ref = new_controller_ref(rs, REPLICASETS.api_version, "ReplicaSet")
        for pod in pods:
            decision = claim_decision(rs, pod, selector)
            if decision is Claim.OWN:
                owned.append(pod)
            elif decision is Claim.ADOPT:
                if can_adopt is None:
                    can_adopt = await owner_can_adopt(self.client, REPLICASETS, rs)
                if not can_adopt:
                    continue
                adopted = await patch_dependent(self.client, PODS, pod, adopt_patch(pod, ref))
                if adopted is not None:
                    owned.append(adopted)
            elif decision is Claim.RELEASE:
                await patch_dependent(self.client, PODS, pod, release_patch(pod, meta(rs)["uid"]))
        return owned

    async def _manage_replicas(self, key: str, rs: Obj, pods: list[Obj]) -> None:
        want = int((rs.get("spec") or {}).get("replicas", 1))
        diff = len(pods) - want
        if diff < 0:
            n = min(-diff, self.burst)
            self.expectations.expect(key, creates=n)
            ref = new_controller_ref(rs, REPLICASETS.api_version, "ReplicaSet")
            template = (rs.get("spec") or {}).get("template") or {}

            async def create() -> None:
                pod = pod_from_template(template, rs, ref)
                try:
                    created = await self.client.create(PODS, pod, meta(rs).get("namespace"))
                except ApiError as e:
                    await self.recorder.record(rs, "Warning", "FailedCreate", f"Error creating: {e.message}")
                    raise
                await self.recorder.record(rs, "Normal", "SuccessfulCreate",
                                           f"Created pod: {meta(created).get('name')}")

            successes, err = await slow_start_batch(n, create)
            for _ in range(n - successes):  # never attempted or failed: the informer won't see them
                self.expectations.creation_observed(key)
            if err is not None:
                raise err
        elif diff > 0:
            n = min(diff, self.burst)
            related = self._related_pods(rs, pods)
            victims = pods_to_delete(pods, related, n)
            self.expectations.expect(key, deletes=[object_key(p) for p in victims])
            results = await asyncio.gather(*(self._delete_pod(key, rs, p) for p in victims),
                                           return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                raise errors[0]

    def _related_pods(self, rs: Obj, pods: list[Obj]) -> list[Obj]:
        """Active pods of this ReplicaSet and of its siblings (same controlling owner)."""
        owner = controller_ref(rs)
        if owner is None:
            return pods
        sib_uids = {meta(s).get("uid") for s in self.rs_informer.list(meta(rs).get("namespace"))
                    if (controller_ref(s) or {}).get("uid") == owner.get("uid")}
        return [p for p in self.pod_informer.list(meta(rs).get("namespace"))
                if is_pod_active(p) and (controller_ref(p) or {}).get("uid") in sib_uids]

    async def _delete_pod(self, key: str, rs: Obj, pod: Obj) -> None:
        md = meta(pod)
        try:
            await self.client.delete(PODS, md["name"], md.get("namespace"), preconditions={"uid": md["uid"]})
        except ApiError as e:
            self.expectations.deletion_observed(key, object_key(pod))
            if e.code in (404, 409):
                return
            await self.recorder.record(rs, "Warning", "FailedDelete", f"Error deleting: {e.message}")
            raise
        await self.recorder.record(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {md['name']}")

    async def _update_status(self, rs: Obj, status: Obj) -> Obj:
        old = rs.get("status") or {}
        if not status_differs(old, status):
            return rs
        body = {**rs, "status": status}
        try:
            return await self.client.update(REPLICASETS, body, subresource="status")
        except ApiError as e:
            if e.code == 404:
                return rs
            raise

    async def run(self, workers: int = 2) -> None:
        tasks = [asyncio.create_task(self.rs_informer.run()), asyncio.create_task(self.pod_informer.run())]
        try:
            await self.rs_informer.synced.wait()
            await self.pod_informer.synced.wait()
            await self.queue.run_workers(self.sync, workers)
        finally:
            for t in tasks:
                t.cancel()
