"""The scheduling cycle over a snapshot: node sampling, selection, assume, FitError messages."""

from __future__ import annotations

import random

import pytest

from peapod.controlplane.scheduler.core import (
    FitError,
    NoNodesAvailable,
    SchedulerCore,
    num_feasible_nodes_to_find,
)
from tests.unit.scheduler.builders import node, pi, pod, snapshot


@pytest.mark.parametrize(("nodes", "percentage", "want"), [
    (10, 0, 10), (99, 0, 99), (100, 0, 100), (250, 0, 120), (1000, 0, 420),
    (5000, 0, 500), (6000, 0, 300), (1000, 10, 100), (1000, 100, 1000), (500, 5, 100),
])
def test_num_feasible_nodes_to_find(nodes: int, percentage: int, want: int) -> None:
    assert num_feasible_nodes_to_find(nodes, percentage) == want


def test_fit_error_message_matches_kube() -> None:
    snap = snapshot([node("n1", cpu="1"), node("n2", labels={"x": "y"}), node("n3")])
    core = SchedulerCore(snap, rng=random.Random(0))
    with pytest.raises(FitError) as e:
        core.schedule(pi(pod(cpu="2", nodeSelector={"disk": "ssd"})))
    assert e.value.message == (
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. "
        "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    )
    snap = snapshot([node("n1", cpu="1"), node("n2", labels={"x": "y"}), node("n3", labels={"x": "z"})])
    core = SchedulerCore(snap, rng=random.Random(0))
    no_x = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}]}}}
    with pytest.raises(FitError) as e:
        core.schedule(pi(pod(cpu="2", affinity=no_x)))
    # n1 could never hold 2 cpus (allocatable 1): preemption would not help there either
    assert e.value.message == (
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector. "
        "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    )
    assert e.value.plugins == {"NodeResourcesFit", "NodeAffinity"}


def test_fit_error_resolvable_by_preemption_and_policy_never() -> None:
    tainted = node("n2", taints=[{"key": "a", "value": "b", "effect": "NoSchedule"}])
    snap = snapshot([node("n1", cpu="2"), tainted],
                    [pod("big", cpu="2", node="n1")])
    core = SchedulerCore(snap)
    with pytest.raises(FitError) as e:
        core.schedule(pi(pod(cpu="1")))
    assert e.value.message == (
        "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {a: b}. "
        "preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, "
        "1 Preemption is not helpful for scheduling."
    )
    with pytest.raises(FitError) as e:
        core.schedule(pi(pod(cpu="1", preemptionPolicy="Never")))
    assert e.value.message.endswith(". preemption: not eligible due to preemptionPolicy=Never.")


def test_no_nodes() -> None:
    with pytest.raises(NoNodesAvailable, match="no nodes available to schedule pods"):
        SchedulerCore(snapshot([])).schedule(pi(pod()))


def test_picks_least_allocated_and_assume_counts() -> None:
    snap = snapshot([node("n1"), node("n2"), node("n3")],
                    [pod("a", cpu="2", node="n1"), pod("b", cpu="1", node="n2")])
    core = SchedulerCore(snap, rng=random.Random(1))
    p = pi(pod("new", cpu="1"))
    placement = core.schedule(p)
    assert placement.node == "n3"
    core.assume(p, placement.node)
    assert snap.nodes["n3"].requested.cpu == 1000
    # n3 now has 1 cpu like n2; the next 3-cpu pod fits only on n2 or n3
    q = pi(pod("next", cpu="3"))
    assert core.schedule(q).node in {"n2", "n3"}
    core.forget(p.key)
    assert snap.nodes["n3"].requested.cpu == 0


def test_ties_are_broken_by_the_injected_rng() -> None:
    nodes = [node(f"n{i}") for i in range(5)]
    picks = set()
    for seed in range(20):
        core = SchedulerCore(snapshot(nodes), rng=random.Random(seed))
        picks.add(core.schedule(pi(pod())).node)
    assert len(picks) > 1
    a = SchedulerCore(snapshot(nodes), rng=random.Random(7)).schedule(pi(pod())).node
    b = SchedulerCore(snapshot(nodes), rng=random.Random(7)).schedule(pi(pod())).node
    assert a == b


def test_samples_nodes_and_rotates_the_start() -> None:
    snap = snapshot([node(f"n{i:04d}") for i in range(1000)])
    core = SchedulerCore(snap, rng=random.Random(0))
    first = core.schedule(pi(pod("a")))
    assert first.feasible == 420 and first.evaluated == 420
    second = core.schedule(pi(pod("b")))
    assert second.evaluated == 420
    assert core._next_start == 840


def test_failure_evaluates_every_node() -> None:
    snap = snapshot([node(f"n{i:04d}", cpu="1") for i in range(300)])
    with pytest.raises(FitError) as e:
        SchedulerCore(snap).schedule(pi(pod(cpu="2")))
    assert len(e.value.statuses) == 300
    assert e.value.message.startswith("0/300 nodes are available: 300 Insufficient cpu.")


def test_anti_affinity_spreads_replicas_one_per_node() -> None:
    nodes = [node(f"n{i}") for i in range(3)]
    snap = snapshot(nodes)
    core = SchedulerCore(snap, rng=random.Random(0))
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    used = []
    for i in range(3):
        p = pi(pod(f"w{i}", labels={"app": "web"}, affinity=anti))
        placement = core.schedule(p)
        core.assume(p, placement.node)
        used.append(placement.node)
    assert sorted(used) == ["n0", "n1", "n2"]
    with pytest.raises(FitError) as e:
        core.schedule(pi(pod("w3", labels={"app": "web"}, affinity=anti)))
    assert "3 node(s) didn't match pod anti-affinity rules" in e.value.message


def test_preferred_node_affinity_wins_over_resources() -> None:
    snap = snapshot([node("n1", labels={"zone": "a"}), node("n2", labels={"zone": "b"})],
                    [pod("x", cpu="2", node="n1")])
    p = pi(pod(affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100,
         "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}]}}))
    assert SchedulerCore(snap).schedule(p).node == "n1"


def test_prefer_no_schedule_taint_is_avoided() -> None:
    soft = node("n1", taints=[{"key": "k", "value": "v", "effect": "PreferNoSchedule"}])
    snap = snapshot([soft, node("n2")],
                    [pod("x", cpu="2", node="n2")])
    assert SchedulerCore(snap).schedule(pi(pod())).node == "n2"
