"""The scheduling algorithm over a snapshot: filter -> score -> select, with kube's node sampling.

No I/O: :class:`SchedulerCore` reads and updates a :class:`Snapshot` only, so it is what the
benchmark drives and what unit tests exercise directly.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from peapod.controlplane.scheduler import filters as F
from peapod.controlplane.scheduler import scores as S
from peapod.controlplane.scheduler.filters import Status
from peapod.controlplane.scheduler.model import NodeInfo, PodInfo
from peapod.controlplane.scheduler.snapshot import Snapshot

MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE = 5
NO_NODES_AVAILABLE = "no nodes available to schedule pods"
PREEMPTION_NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_PREEMPTION_VICTIMS = "No preemption victims found for incoming pod"

FilterFn = Callable[[PodInfo, NodeInfo], Status | None]


class NoNodesAvailable(Exception):
    def __init__(self) -> None:
        super().__init__(NO_NODES_AVAILABLE)


class FitError(Exception):
    """No node fits: ``statuses`` holds the first failing plugin's status for every node."""

    def __init__(self, pod: PodInfo, num_nodes: int, statuses: dict[str, Status]) -> None:
        self.pod = pod
        self.num_nodes = num_nodes
        self.statuses = statuses
        super().__init__(self.message)

    @property
    def plugins(self) -> set[str]:
        return {s.plugin for s in self.statuses.values()}

    @property
    def message(self) -> str:
        return fit_error_message(self.pod, self.num_nodes, self.statuses)

    def __str__(self) -> str:
        return self.message


def _histogram(reasons: Counter[str]) -> str:
    return ", ".join(sorted(f"{n} {r}" for r, n in reasons.items()))


def fit_error_message(pod: PodInfo, num_nodes: int, statuses: dict[str, Status]) -> str:
    """kube-scheduler's FitError text, including the DefaultPreemption post-filter sentence.

    Preemption is not implemented; its sentence is what kube prints when no victims exist
    (every pod at the same priority), which is the usual case here.
    """
    reasons: Counter[str] = Counter()
    for st in statuses.values():
        for r in st.reasons:
            reasons[r] += 1
    msg = f"0/{num_nodes} nodes are available:"
    if reasons:
        msg += f" {_histogram(reasons)}."
    if (pod.obj.get("spec") or {}).get("preemptionPolicy") == "Never":
        return msg + " preemption: not eligible due to preemptionPolicy=Never."
    post: Counter[str] = Counter()
    for st in statuses.values():
        post[PREEMPTION_NOT_HELPFUL if st.unresolvable else NO_PREEMPTION_VICTIMS] += 1
    absent = num_nodes - len(statuses)
    if absent > 0:
        post[PREEMPTION_NOT_HELPFUL] += absent
    return msg + f" preemption: 0/{num_nodes} nodes are available: {_histogram(post)}."


def num_feasible_nodes_to_find(num_nodes: int, percentage: int = 0) -> int:
    """kube's numFeasibleNodesToFind: adaptive 50% - nodes/125 (at least 5%, at least 100 nodes)."""
    if num_nodes < MIN_FEASIBLE_NODES_TO_FIND:
        return num_nodes
    if percentage <= 0:
        percentage = max(50 - num_nodes // 125, MIN_FEASIBLE_NODES_PERCENTAGE)
    n = num_nodes * percentage // 100
    return max(n, MIN_FEASIBLE_NODES_TO_FIND)


@dataclass
class Placement:
    node: str
    feasible: int
    evaluated: int
    scores: dict[str, int] | None = None


class SchedulerCore:
    def __init__(
        self, snapshot: Snapshot, *, rng: random.Random | None = None, percentage_of_nodes_to_score: int = 0,
        keep_scores: bool = False,
    ) -> None:
        self.snapshot = snapshot
        self.rng = rng or random.Random()
        self.percentage = percentage_of_nodes_to_score
        self.keep_scores = keep_scores
        self._next_start = 0

    # -- filter -------------------------------------------------------------------------------
    def filters_for(self, pod: PodInfo) -> list[FilterFn]:
        """The filter plugins that can fail for this pod, in kube's order (PreFilter 'Skip's drop out)."""
        snap = self.snapshot
        fs: list[FilterFn] = [F.node_unschedulable]
        if (pod.obj.get("spec") or {}).get("nodeName"):
            fs.append(F.node_name)
        fs.append(F.taint_toleration)
        if pod.node_selector or pod.required_node_affinity is not None:
            fs.append(F.node_affinity)
        if pod.host_ports:
            fs.append(F.node_ports)
        fs.append(F.node_resources_fit)
        spread = F.pod_topology_spread_prefilter(pod, snap)
        if spread is not None:
            fs.append(partial(_with_state, F.pod_topology_spread, spread))
        aff = F.inter_pod_affinity_prefilter(pod, snap)
        if aff is not None:
            fs.append(partial(_with_state, F.inter_pod_affinity, aff))
        return fs

    def find_feasible(self, pod: PodInfo) -> tuple[list[NodeInfo], dict[str, Status]]:
        nodes = self.snapshot.node_list()
        n = len(nodes)
        if n == 0:
            raise NoNodesAvailable()
        want = num_feasible_nodes_to_find(n, self.percentage)
        fs = self.filters_for(pod)
        feasible: list[NodeInfo] = []
        statuses: dict[str, Status] = {}
        start = self._next_start % n
        order = nodes[start:] + nodes[:start] if start else nodes
        processed = 0
        for node in order:
            processed += 1
            for f in fs:
                st = f(pod, node)
                if st is not None:
                    statuses[node.name] = st
                    break
            else:
                feasible.append(node)
                if len(feasible) >= want:
                    break
        self._next_start = (start + processed) % n
        return feasible, statuses

    # -- score --------------------------------------------------------------------------------
    def score(self, pod: PodInfo, feasible: list[NodeInfo]) -> list[int]:
        snap = self.snapshot
        w = S.WEIGHTS
        totals = [S.least_allocated(pod, n) * w["NodeResourcesFit"] for n in feasible]
        if S.balanced_allocation_applies(pod):
            wb = w["NodeResourcesBalancedAllocation"]
            for i, n in enumerate(feasible):
                totals[i] += S.balanced_allocation(pod, n) * wb
        if pod.images and any(img in snap.image_nodes for img in pod.images):
            total_nodes = snap.num_nodes()
            wi = w["ImageLocality"]
            for i, n in enumerate(feasible):
                totals[i] += S.image_locality(pod, n, total_nodes, snap.image_nodes) * wi
        wt = w["TaintToleration"]
        if snap.prefer_taint_nodes:
            raw = [S.taint_toleration_score(pod, n) for n in feasible]
            _add(totals, S.default_normalize(raw, reverse=True), wt)
        else:
            totals = [t + S.MAX_SCORE * wt for t in totals]
        if pod.preferred_node_affinity:
            raw = [S.node_affinity_score(pod, n) for n in feasible]
            _add(totals, S.default_normalize(raw), w["NodeAffinity"])
        topo = S.inter_pod_affinity_prescore(pod, snap)
        if topo is not None:
            raw = [S.inter_pod_affinity_score(topo, n) for n in feasible]
            _add(totals, S.inter_pod_affinity_normalize(raw), w["InterPodAffinity"])
        spread = S.pod_topology_spread_prescore(pod, snap, feasible)
        if spread is not None:
            raw = [S.pod_topology_spread_score(spread, pod, n) for n in feasible]
            names = [n.name for n in feasible]
            _add(totals, S.pod_topology_spread_normalize(spread, names, raw), w["PodTopologySpread"])
        return totals

    def select(self, feasible: list[NodeInfo], totals: list[int]) -> NodeInfo:
        """The highest total; ties broken uniformly at random (reservoir sampling, as kube does)."""
        best = -1
        chosen = 0
        ties = 0
        rng = self.rng
        for i, s in enumerate(totals):
            if s > best:
                best, chosen, ties = s, i, 1
            elif s == best:
                ties += 1
                if rng.randrange(ties) == 0:
                    chosen = i
        return feasible[chosen]

    # -- the cycle ----------------------------------------------------------------------------
    def schedule(self, pod: PodInfo) -> Placement:
        """Pick a node for ``pod``; raises FitError or NoNodesAvailable."""
        feasible, statuses = self.find_feasible(pod)
        evaluated = len(feasible) + len(statuses)
        if not feasible:
            raise FitError(pod, self.snapshot.num_nodes(), statuses)
        if len(feasible) == 1:
            return Placement(feasible[0].name, 1, evaluated)
        totals = self.score(pod, feasible)
        node = self.select(feasible, totals)
        scores = {n.name: t for n, t in zip(feasible, totals, strict=True)} if self.keep_scores else None
        return Placement(node.name, len(feasible), evaluated, scores)

    def assume(self, pod: PodInfo, node: str) -> None:
        """Account ``pod`` on ``node`` before the binding is observed (the assume cache)."""
        pod.node_name = node
        self.snapshot.add_pod(pod)

    def forget(self, key: str) -> None:
        self.snapshot.remove_pod(key)


def _with_state(
    fn: Callable[..., Status | None], state: object, pod: PodInfo, node: NodeInfo,
) -> Status | None:
    return fn(state, pod, node)


def _add(totals: list[int], normalized: list[int], weight: int) -> None:
    for i, s in enumerate(normalized):
        totals[i] += s * weight
