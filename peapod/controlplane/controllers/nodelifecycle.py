"""Node lifecycle: silent nodes become Unknown and tainted; their pods are evicted after tolerationSeconds.

Like Kubernetes' node lifecycle and taint-eviction controllers:
- a node's health is probed through its Lease (kube-node-lease/<node>, spec.renewTime) and its Ready
  condition's lastHeartbeatTime; the controller notes *on its own clock* when either last changed,
  and a node silent for longer than the grace period gets Ready (and the pressure conditions)
  set to Unknown, "Kubelet stopped posting node status.";
- Ready=False -> NoExecute+NoSchedule taint node.kubernetes.io/not-ready, Ready=Unknown ->
  node.kubernetes.io/unreachable; Ready=True removes them;
- when every node of every zone is not ready at once the control plane itself is the likely
  culprit: no NoExecute taints are added and existing ones are removed, so nothing is evicted
  (which also covers a single-node cluster's own node); a partially disrupted zone gets no new
  NoExecute taints (kube rate-limits it to zero for clusters this size);
- pods on a node with NoExecute taints they don't tolerate are deleted; tolerated with
  tolerationSeconds, they are deleted that long after the taint appeared.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp

from peapod.api.errors import ApiError
from peapod.api.resources import resource
from peapod.client.events import EventRecorder
from peapod.client.rest import ApiClient
from peapod.client.sharedinformer import InformerFactory
from peapod.clock import Clock, rfc3339
from peapod.controlplane.controllers.controller_utils import Obj, creation_time, labels_of, meta, time_of

log = logging.getLogger(__name__)

NODES = resource("", "v1", "nodes")
PODS = resource("", "v1", "pods")
LEASES = resource("coordination.k8s.io", "v1", "leases")
LEASE_NAMESPACE = "kube-node-lease"
COMPONENT = "node-controller"

TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
MANAGED_TAINTS = (TAINT_NOT_READY, TAINT_UNREACHABLE)
PRESSURE_CONDITIONS = ("MemoryPressure", "DiskPressure", "PIDPressure")
UNHEALTHY_ZONE_THRESHOLD = 0.55

STOPPED = ("NodeStatusUnknown", "Kubelet stopped posting node status.")
NEVER = ("NodeStatusNeverUpdated", "Kubelet never posted node status.")


# -- health ----------------------------------------------------------------------------------------
def node_condition(node: Obj, type_: str) -> Obj | None:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def ready_status(node: Obj) -> str:
    """"True", "False" or "Unknown" (no Ready condition counts as Unknown)."""
    c = node_condition(node, "Ready")
    return str(c.get("status")) if c is not None else "Unknown"


@dataclass
class NodeHealth:
    """What was last seen of a node, and when (monotonic, on the controller's clock)."""

    probe: float
    renew_time: str = ""
    heartbeat: str = ""
    ready_transition: str = ""


def observe_health(health: NodeHealth | None, node: Obj, lease: Obj | None, now: float) -> NodeHealth:
    """Move the probe time to ``now`` whenever the node showed a sign of life since last time."""
    ready = node_condition(node, "Ready") or {}
    heartbeat = str(ready.get("lastHeartbeatTime") or "")
    transition = str(ready.get("lastTransitionTime") or "")
    renew = str(((lease or {}).get("spec") or {}).get("renewTime") or "")
    if health is None:
        return NodeHealth(now, renew, heartbeat, transition)
    if heartbeat != health.heartbeat or transition != health.ready_transition:
        health = NodeHealth(now, health.renew_time, heartbeat, transition)
    if renew and renew != health.renew_time:
        old, new = time_of(health.renew_time), time_of(renew)
        if old is None or (new is not None and new > old):
            health = NodeHealth(now, renew, health.heartbeat, health.ready_transition)
    return health


def unknown_conditions(node: Obj, now: datetime) -> list[Obj] | None:
    """The node's conditions with Ready and pressure conditions set to Unknown; None if already so."""
    conds = [dict(c) for c in (node.get("status") or {}).get("conditions") or []]
    changed = False
    created = meta(node).get("creationTimestamp") or rfc3339(now)
    for type_ in ("Ready", *PRESSURE_CONDITIONS):
        cur = next((c for c in conds if c.get("type") == type_), None)
        if cur is None:
            conds.append({"type": type_, "status": "Unknown", "reason": NEVER[0], "message": NEVER[1],
                          "lastHeartbeatTime": created, "lastTransitionTime": rfc3339(now)})
            changed = True
        elif cur.get("status") != "Unknown":
            cur.update(status="Unknown", reason=STOPPED[0], message=STOPPED[1],
                       lastTransitionTime=rfc3339(now))
            changed = True
    return conds if changed else None


def zone_of(node: Obj) -> str:
    lb = labels_of(node)
    region = lb.get("topology.kubernetes.io/region", lb.get("failure-domain.beta.kubernetes.io/region", ""))
    zone = lb.get("topology.kubernetes.io/zone", lb.get("failure-domain.beta.kubernetes.io/zone", ""))
    return f"{region}:\x00:{zone}" if region or zone else ""


def zone_state(ready: list[str]) -> str:
    """Normal, PartialDisruption or FullDisruption from the Ready statuses of a zone's nodes."""
    ok = sum(1 for r in ready if r == "True")
    bad = len(ready) - ok
    if ok == 0 and bad > 0:
        return "FullDisruption"
    if bad > 2 and bad / len(ready) >= UNHEALTHY_ZONE_THRESHOLD:
        return "PartialDisruption"
    return "Normal"


def desired_taints(node: Obj, *, allow_new_no_execute: bool, suppress_no_execute: bool,
                   now: datetime) -> list[Obj]:
    """The node's taints with the not-ready/unreachable ones matching its Ready condition."""
    status = ready_status(node)
    want_key = TAINT_NOT_READY if status == "False" else TAINT_UNREACHABLE if status == "Unknown" else None
    current = list((node.get("spec") or {}).get("taints") or [])
    out = [t for t in current if t.get("key") not in MANAGED_TAINTS]
    if want_key is None:
        return out
    old = {(t.get("key"), t.get("effect")): t for t in current if t.get("key") in MANAGED_TAINTS}
    out.append(old.get((want_key, "NoSchedule")) or {"key": want_key, "effect": "NoSchedule"})
    existing = old.get((want_key, "NoExecute"))
    if suppress_no_execute:
        return out
    if existing is not None:
        out.append(existing)
    elif allow_new_no_execute:
        out.append({"key": want_key, "effect": "NoExecute", "timeAdded": rfc3339(now)})
    return out


# -- eviction ----------------------------------------------------------------------------------------
def tolerates(toleration: Obj, taint: Obj) -> bool:
    """v1.Toleration.ToleratesTaint."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    op = toleration.get("operator") or "Equal"
    if key and key != taint.get("key"):
        return False
    if op == "Exists":
        return True
    if op == "Equal":
        return bool(key) and (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def eviction_time(pod: Obj, taints: list[Obj], now: datetime) -> datetime | None:
    """When a pod on a node with these taints must go: None never, <= now at once."""
    no_exec = [t for t in taints if t.get("effect") == "NoExecute"]
    if not no_exec:
        return None
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    seconds: list[float] = []
    for taint in no_exec:
        used = [t for t in tolerations if tolerates(t, taint)]
        if not used:
            return now
        finite = [float(t["tolerationSeconds"]) for t in used if t.get("tolerationSeconds") is not None]
        if len(finite) == len(used):
            seconds.append(max(min(finite), 0.0))
    if not seconds:
        return None
    added = [time_of(t.get("timeAdded")) for t in no_exec]
    start = min((a for a in added if a is not None), default=now)
    created = creation_time(pod)
    if created is not None and created > start:
        start = created
    return start + timedelta(seconds=min(seconds))


# -- the controller ----------------------------------------------------------------------------------
class NodeLifecycleController:
    def __init__(
        self, client: ApiClient, *, clock: Clock, grace_period: float = 40.0,
        startup_grace_period: float = 60.0, monitor_period: float = 5.0,
        recorder: EventRecorder | None = None, factory: InformerFactory | None = None,
    ) -> None:
        self.client = client
        self.clock = clock
        self.grace = grace_period
        self.startup_grace = startup_grace_period
        self.period = monitor_period
        self.recorder = recorder or EventRecorder(client, component=COMPONENT, clock=clock)
        informers = factory or InformerFactory(client, clock=clock)
        self.nodes = informers.informer(NODES)
        self.leases = informers.informer(LEASES, namespace=LEASE_NAMESPACE)
        self.pods = informers.informer(PODS)
        self.health: dict[str, NodeHealth] = {}
        self.all_disrupted = False

    async def monitor_once(self) -> None:
        """One pass: node health -> conditions, zone states -> taints."""
        now_mono, now = self.clock.monotonic(), self.clock.now()
        nodes = self.nodes.list()
        names = {meta(n)["name"] for n in nodes}
        for gone in set(self.health) - names:
            del self.health[gone]
        for node in nodes:
            name = meta(node)["name"]
            lease = self.leases.get(f"{LEASE_NAMESPACE}/{name}")
            h = self.health[name] = observe_health(self.health.get(name), node, lease, now_mono)
            grace = self.grace if node_condition(node, "Ready") is not None else self.startup_grace
            if now_mono - h.probe > grace:
                conds = unknown_conditions(node, now)
                if conds is not None:
                    log.info("node %s: no status for %.0fs, marking Unknown", name, now_mono - h.probe)
                    body = {**node, "status": {**(node.get("status") or {}), "conditions": conds}}
                    try:
                        node = await self.client.update(NODES, body, subresource="status")
                    except ApiError as e:
                        log.info("node %s status: %s", name, e.message)
                        continue
                    self.health[name] = observe_health(h, node, lease, h.probe)
                    await self.recorder.record(node, "Normal", "NodeNotReady",
                                               f"Node {name} status is now: NodeNotReady")
        await self._taint_pass(self.nodes.list(), now)

    async def _taint_pass(self, nodes: list[Obj], now: datetime) -> None:
        zones: dict[str, list[str]] = {}
        for n in nodes:
            zones.setdefault(zone_of(n), []).append(ready_status(n))
        states = {z: zone_state(r) for z, r in zones.items()}
        all_disrupted = bool(states) and all(s == "FullDisruption" for s in states.values())
        if all_disrupted != self.all_disrupted:
            log.warning("node lifecycle: %s",
                        "all nodes are not ready; no evictions (control plane disruption mode)"
                        if all_disrupted else "nodes are ready again; leaving disruption mode")
            self.all_disrupted = all_disrupted
        for node in nodes:
            state = states[zone_of(node)]
            taints = desired_taints(node, allow_new_no_execute=state != "PartialDisruption",
                                    suppress_no_execute=all_disrupted, now=now)
            if taints == list((node.get("spec") or {}).get("taints") or []):
                continue
            md = meta(node)
            patch = {"metadata": {"resourceVersion": md.get("resourceVersion")},
                     "spec": {"taints": taints or None}}
            try:
                await self.client.patch(NODES, md["name"], patch, patch_type="merge")
            except ApiError as e:
                log.info("node %s taints: %s", md["name"], e.message)

    async def evict_once(self) -> None:
        """Delete pods whose NoExecute toleration ran out."""
        now = self.clock.now()
        taints = {meta(n)["name"]: (n.get("spec") or {}).get("taints") or [] for n in self.nodes.list()}
        for pod in self.pods.list():
            node = (pod.get("spec") or {}).get("nodeName")
            md = meta(pod)
            if not node or node not in taints or md.get("deletionTimestamp"):
                continue
            when = eviction_time(pod, taints[node], now)
            if when is None or when > now:
                continue
            await self.recorder.record(pod, "Normal", "TaintManagerEviction",
                                       f"Marking for deletion Pod {md.get('namespace')}/{md['name']}")
            try:
                await self.client.delete(PODS, md["name"], md.get("namespace"),
                                         preconditions={"uid": md["uid"]})
            except ApiError as e:
                if e.code not in (404, 409):
                    log.info("evicting %s/%s: %s", md.get("namespace"), md["name"], e.message)

    async def run(self) -> None:
        informers = (self.nodes, self.leases, self.pods)
        tasks = [asyncio.create_task(inf.run()) for inf in informers]
        try:
            for inf in informers:
                await inf.synced.wait()
            while True:
                try:
                    await self.monitor_once()
                    await self.evict_once()
                except (ApiError, OSError, TimeoutError, aiohttp.ClientError) as e:
                    log.info("node lifecycle pass: %s", e)
                await self.clock.sleep(self.period)
        finally:
            for t in tasks:
                t.cancel()

