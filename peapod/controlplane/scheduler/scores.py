"""Score plugins: pure functions giving each feasible node a raw score, then a normalizer to 0..100.

Arithmetic follows kube-scheduler's (integer division where Go divides int64), and
:data:`WEIGHTS` are kube's default plugin weights.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from peapod.controlplane.scheduler.filters import count_matching, has_all_keys, node_included
from peapod.controlplane.scheduler.model import HOSTNAME, NodeInfo, PodInfo, SpreadConstraint
from peapod.controlplane.scheduler.snapshot import Snapshot

MAX_SCORE = 100
WEIGHTS = {
    "TaintToleration": 3,
    "NodeAffinity": 2,
    "NodeResourcesFit": 1,
    "PodTopologySpread": 2,
    "InterPodAffinity": 2,
    "NodeResourcesBalancedAllocation": 1,
    "ImageLocality": 1,
}
HARD_POD_AFFINITY_WEIGHT = 1
MB = 1024 * 1024
IMAGE_MIN_THRESHOLD = 23 * MB
IMAGE_MAX_CONTAINER_THRESHOLD = 1000 * MB


def default_normalize(scores: list[int], *, reverse: bool = False) -> list[int]:
    """kube's DefaultNormalizeScore: scale to 0..100 by the maximum (reverse: 100 minus that)."""
    top = max(scores, default=0)
    if top == 0:
        return [MAX_SCORE if reverse else 0 for _ in scores]
    out = []
    for s in scores:
        v = MAX_SCORE * s // top
        out.append(MAX_SCORE - v if reverse else v)
    return out


# -- NodeAffinity (preferred) -------------------------------------------------------------------
def node_affinity_score(pod: PodInfo, node: NodeInfo) -> int:
    total = 0
    for weight, term in pod.preferred_node_affinity:
        if weight and term.matches(node.labels, node.name):
            total += weight
    return total


# -- TaintToleration (PreferNoSchedule) ---------------------------------------------------------
def taint_toleration_score(pod: PodInfo, node: NodeInfo) -> int:
    """How many PreferNoSchedule taints the pod does not tolerate (fewer is better)."""
    if not node.prefer_taints:
        return 0
    tols = [t for t in pod.tolerations if t.effect in ("", "PreferNoSchedule")]
    n = 0
    for taint in node.prefer_taints:
        if not any(t.tolerates(taint) for t in tols):
            n += 1
    return n


# -- NodeResourcesFit (LeastAllocated) and BalancedAllocation ---------------------------------
def _least_requested(requested: int, capacity: int) -> int:
    if capacity == 0 or requested > capacity:
        return 0
    return (capacity - requested) * MAX_SCORE // capacity


def least_allocated(pod: PodInfo, node: NodeInfo) -> int:
    """Free cpu and memory after placing the pod (non-zero requests), weights 1:1."""
    alloc = node.alloc
    total = weight = 0
    if alloc.cpu:
        total += _least_requested(node.nz_cpu + pod.nz_cpu, alloc.cpu)
        weight += 1
    if alloc.memory:
        total += _least_requested(node.nz_memory + pod.nz_memory, alloc.memory)
        weight += 1
    return total // weight if weight else 0


def balanced_allocation(pod: PodInfo, node: NodeInfo) -> int:
    """100 * (1 - std of the cpu and memory fractions) with the pod placed."""
    alloc = node.alloc
    fractions = []
    if alloc.cpu:
        fractions.append(min(1.0, (node.requested.cpu + pod.requests.cpu) / alloc.cpu))
    if alloc.memory:
        fractions.append(min(1.0, (node.requested.memory + pod.requests.memory) / alloc.memory))
    std = abs(fractions[0] - fractions[1]) / 2 if len(fractions) == 2 else 0.0
    return int((1 - std) * MAX_SCORE)


def balanced_allocation_applies(pod: PodInfo) -> bool:
    """kube skips BalancedAllocation for best-effort pods (no cpu/memory requests)."""
    return bool(pod.requests.cpu or pod.requests.memory)


# -- ImageLocality ------------------------------------------------------------------------------
def image_locality(pod: PodInfo, node: NodeInfo, total_nodes: int, image_nodes: dict[str, int]) -> int:
    if not pod.images or total_nodes == 0:
        return 0
    total = 0
    for img in pod.images:
        size = node.images.get(img)
        if size is not None:
            total += int(size * (image_nodes.get(img, 1) / total_nodes))
    max_threshold = IMAGE_MAX_CONTAINER_THRESHOLD * len(pod.images)
    total = min(max(total, IMAGE_MIN_THRESHOLD), max_threshold)
    return MAX_SCORE * (total - IMAGE_MIN_THRESHOLD) // (max_threshold - IMAGE_MIN_THRESHOLD)


# -- InterPodAffinity (preferred terms, and existing pods' terms) -------------------------------
TopologyScore = dict[str, dict[str, int]]


def _bump(topo: TopologyScore, node: NodeInfo, key: str, delta: int) -> None:
    v = node.labels.get(key)
    if v is None or not delta:
        return
    m = topo.setdefault(key, {})
    m[v] = m.get(v, 0) + delta


def inter_pod_affinity_prescore(pod: PodInfo, snap: Snapshot) -> TopologyScore | None:
    """Topology value -> summed weights; None when the plugin has nothing to score (kube's Skip)."""
    if not (pod.preferred_affinity or pod.preferred_anti_affinity or snap.scoring_affinity_pods):
        return None
    topo: TopologyScore = {}
    nodes = snap.nodes
    for sign, weighted in ((1, pod.preferred_affinity), (-1, pod.preferred_anti_affinity)):
        for weight, term in weighted:
            for other in snap.matching_pods(term):
                node = nodes.get(other.node_name)
                if node is not None and node.node is not None:
                    _bump(topo, node, term.topology_key, sign * weight)
    ns_labels = snap.namespace_labels.get(pod.namespace)
    for other in snap.scoring_affinity_pods.values():
        node = nodes.get(other.node_name)
        if node is None or node.node is None or not node.labels:
            continue
        for term in other.required_affinity:
            if term.matches(pod, ns_labels):
                _bump(topo, node, term.topology_key, HARD_POD_AFFINITY_WEIGHT)
        for weight, term in other.preferred_affinity:
            if term.matches(pod, ns_labels):
                _bump(topo, node, term.topology_key, weight)
        for weight, term in other.preferred_anti_affinity:
            if term.matches(pod, ns_labels):
                _bump(topo, node, term.topology_key, -weight)
    for key in list(topo):
        topo[key] = {v: s for v, s in topo[key].items() if s}
        if not topo[key]:
            del topo[key]
    return topo or None


def inter_pod_affinity_score(topo: TopologyScore, node: NodeInfo) -> int:
    total = 0
    labels = node.labels
    for key, values in topo.items():
        v = labels.get(key)
        if v is not None:
            total += values.get(v, 0)
    return total


def inter_pod_affinity_normalize(scores: list[int]) -> list[int]:
    if not scores:
        return []
    lo, hi = min(scores), max(scores)
    diff = hi - lo
    if diff <= 0:
        return [0 for _ in scores]
    return [int(MAX_SCORE * ((s - lo) / diff)) for s in scores]


# -- PodTopologySpread (ScheduleAnyway) ---------------------------------------------------------
@dataclass(slots=True)
class SpreadScoreState:
    constraints: tuple[SpreadConstraint, ...]
    counts: list[dict[str, int]]
    weights: list[float]
    ignored: set[str]


def pod_topology_spread_prescore(
    pod: PodInfo, snap: Snapshot, feasible: Iterable[NodeInfo],
) -> SpreadScoreState | None:
    constraints = tuple(c for c in pod.spread if c.when_unsatisfiable == "ScheduleAnyway")
    if not constraints:
        return None
    feasible = list(feasible)
    ignored: set[str] = set()
    counts: list[dict[str, int]] = [{} for _ in constraints]
    sizes = [0] * len(constraints)
    for n in feasible:
        if not has_all_keys(n.labels, constraints):
            ignored.add(n.name)
            continue
        for i, c in enumerate(constraints):
            if c.topology_key == HOSTNAME:
                continue
            v = n.labels[c.topology_key]
            if v not in counts[i]:
                counts[i][v] = 0
                sizes[i] += 1
    weights = []
    for i, c in enumerate(constraints):
        size = len(feasible) - len(ignored) if c.topology_key == HOSTNAME else sizes[i]
        weights.append(math.log(size + 2))
    included: dict[tuple[int, str], bool] = {}
    for i, c in enumerate(constraints):
        if c.topology_key == HOSTNAME or not counts[i]:
            continue
        for key in snap.candidates(c.selector):
            p = snap.pods[key]
            node = snap.nodes.get(p.node_name)
            if node is None or node.node is None or p.namespace != pod.namespace or p.terminating:
                continue
            v = node.labels.get(c.topology_key)
            if v is None or v not in counts[i] or not has_all_keys(node.labels, constraints):
                continue
            ok = included.get((i, node.name))
            if ok is None:
                ok = included[(i, node.name)] = node_included(c, pod, node)
            if ok and c.selector.matches(p.labels):
                counts[i][v] += 1
    return SpreadScoreState(constraints, counts, weights, ignored)


def pod_topology_spread_score(state: SpreadScoreState, pod: PodInfo, node: NodeInfo) -> int:
    if node.name in state.ignored:
        return 0
    score = 0.0
    for i, c in enumerate(state.constraints):
        v = node.labels.get(c.topology_key)
        if v is None:
            continue
        if c.topology_key == HOSTNAME:
            cnt = count_matching(node, c, pod.namespace)
        else:
            cnt = state.counts[i].get(v, 0)
        score += cnt * state.weights[i] + (c.max_skew - 1)
    return math.floor(score + 0.5)


def pod_topology_spread_normalize(state: SpreadScoreState, names: list[str], scores: list[int]) -> list[int]:
    lo, hi = None, 0
    for name, s in zip(names, scores, strict=True):
        if name in state.ignored:
            continue
        lo = s if lo is None or s < lo else lo
        hi = max(hi, s)
    out = []
    for name, s in zip(names, scores, strict=True):
        if name in state.ignored:
            out.append(0)
        elif hi == 0:
            out.append(MAX_SCORE)
        else:
            out.append(MAX_SCORE * (hi + (lo or 0) - s) // hi)
    return out
