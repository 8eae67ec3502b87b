"""Deployments, ReplicaSets and the scheduler on real pods: `peapod up`, the real kubectl and the
official Python client (issue 5's acceptance list, single node)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from peapod.testing.cluster import KubectlResult, PeapodCluster
from peapod.testing.images import busybox_image, push_image
from peapod.testing.registry import LoopbackRegistry
from peapod.testing.waiting import wait_until

pytestmark = pytest.mark.skipif(
    subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0", reason="needs root"
)

WEB = "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"


@pytest.fixture(scope="module")
def cluster(node_cluster: PeapodCluster) -> PeapodCluster:
    """This module's tests run pods: the `namespace` fixture uses this cluster too."""
    return node_cluster


@pytest.fixture(scope="module")
def registry() -> Iterator[LoopbackRegistry]:
    reg = LoopbackRegistry().start()
    try:
        image = busybox_image()
        asyncio.run(push_image(reg.ref("busybox", "1"), image))
        asyncio.run(push_image(reg.ref("busybox", "2"), busybox_image(extra_files={"etc/v2": "2\n"})))
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def node(cluster: PeapodCluster) -> str:
    wait_until(lambda: cluster.kubectl("get", "nodes", "-o", "name").stdout.strip(), 60, "a node registers")
    return cluster.kubectl("get", "nodes", "-o", "name", check=True).stdout.strip().removeprefix("node/")


@pytest.fixture(scope="module")
def apps(cluster: PeapodCluster) -> Any:
    from kubernetes import client

    return client.AppsV1Api(cluster.python_client())


@pytest.fixture(scope="module")
def core(cluster: PeapodCluster) -> Any:
    from kubernetes import client

    return client.CoreV1Api(cluster.python_client())


# -- helpers -----------------------------------------------------------------------------------------------



def apply(cluster: PeapodCluster, ns: str, obj: dict[str, Any]) -> KubectlResult:
    return cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(obj), check=True)


def get(cluster: PeapodCluster, ns: str, *what: str) -> Any:
    return cluster.kubectl("get", "-n", ns, *what, "-o", "json", check=True).json()


def deployment(name: str, image: str, replicas: int = 3, *, strategy: dict[str, Any] | None = None,
               probe: bool = True, **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c", "image": image, "command": ["sh", "-c", WEB]}
    if probe:
        container["readinessProbe"] = {"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "strategy": strategy or {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]}},
            **spec,
        },
    }


def pod(name: str, image: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": image, "command": ["sleep", "3600"]}], **spec}}


def pods_of(cluster: PeapodCluster, ns: str, selector: str) -> list[dict[str, Any]]:
    return list(get(cluster, ns, "pods", "-l", selector)["items"])


def is_ready(p: dict[str, Any]) -> bool:
    conds = (p.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def live_ready(items: list[dict[str, Any]]) -> int:
    return sum(1 for p in items if is_ready(p) and not p["metadata"].get("deletionTimestamp"))


def rollout_status(cluster: PeapodCluster, ns: str, name: str, timeout: int = 120) -> KubectlResult:
    return cluster.kubectl("rollout", "status", "-n", ns, f"deployment/{name}", f"--timeout={timeout}s",
                           timeout=timeout + 10)


def exactly(cluster: PeapodCluster, ns: str, selector: str, n: int, timeout: float = 90) -> list[dict[str, Any]]:
    """Wait until exactly n pods match (terminated ones gone) and all of them are ready."""
    def check() -> list[dict[str, Any]] | None:
        items = pods_of(cluster, ns, selector)
        return items if len(items) == n and live_ready(items) == n else None
    return wait_until(check, timeout, f"{n} ready pods match {selector}")  # type: ignore[no-any-return]


def pod_condition(p: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in (p.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return {}


def events_for(cluster: PeapodCluster, ns: str, name: str, reason: str) -> list[str]:
    items = get(cluster, ns, "events", "--field-selector", f"involvedObject.name={name}")["items"]
    return [e.get("message", "") for e in items if e.get("reason") == reason]


# -- Deployments ---------------------------------------------------------------------------------------------

def test_deployment_available_replaced_and_scaled(
    cluster: PeapodCluster, namespace: str, registry: LoopbackRegistry, apps: Any
) -> None:
    apply(cluster, namespace, deployment("web", registry.ref("busybox", "1")))
    r = rollout_status(cluster, namespace, "web")
    assert r.returncode == 0 and 'deployment "web" successfully rolled out' in r.stdout, r.stderr
    d = apps.read_namespaced_deployment("web", namespace)
    assert (d.status.replicas, d.status.ready_replicas, d.status.available_replicas) == (3, 3, 3)
    assert d.status.observed_generation == d.metadata.generation
    assert {c.type: c.status for c in d.status.conditions} == {"Available": "True", "Progressing": "True"}
    items = exactly(cluster, namespace, "app=web", 3)
    rs_names = {p["metadata"]["ownerReferences"][0]["name"] for p in items}
    assert len(rs_names) == 1

    # A deleted pod is replaced.
    victim = items[0]["metadata"]["name"]
    cluster.kubectl("delete", "pod", "-n", namespace, victim, "--wait=false", check=True)
    after = exactly(cluster, namespace, "app=web", 3)
    assert victim not in {p["metadata"]["name"] for p in after}

    # Scale up through kubectl, down through the Python client's scale subresource.
    cluster.kubectl("scale", "-n", namespace, "deployment/web", "--replicas=5", check=True)
    exactly(cluster, namespace, "app=web", 5)
    assert rollout_status(cluster, namespace, "web").returncode == 0
    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 2}})
    exactly(cluster, namespace, "app=web", 2)
    scale = apps.read_namespaced_deployment_scale("web", namespace)
    assert scale.spec.replicas == 2
    wait_until(lambda: apps.read_namespaced_deployment_scale("web", namespace).status.replicas == 2, 30,
               "the scale's status says 2")
    rs = apps.read_namespaced_replica_set(rs_names.pop(), namespace)
    assert rs.spec.replicas == 2


def test_rolling_update_keeps_ready_count_history_and_undo(
    cluster: PeapodCluster, namespace: str, registry: LoopbackRegistry, apps: Any, core: Any
) -> None:
    v1, v2 = registry.ref("busybox", "1"), registry.ref("busybox", "2")
    apply(cluster, namespace, deployment("roll", v1))
    cluster.kubectl("annotate", "-n", namespace, "deployment/roll", "kubernetes.io/change-cause=first", check=True)
    assert rollout_status(cluster, namespace, "roll").returncode == 0

    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            items = core.list_namespaced_pod(namespace, label_selector="app=roll").items
            samples.append(sum(1 for p in items if p.metadata.deletion_timestamp is None and any(
                c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        cluster.kubectl("set", "image", "-n", namespace, "deployment/roll", f"c={v2}", check=True)
        cluster.kubectl("annotate", "-n", namespace, "deployment/roll", "--overwrite",
                        "kubernetes.io/change-cause=second", check=True)
        r = rollout_status(cluster, namespace, "roll")
        assert r.returncode == 0, r.stderr
    finally:
        stop.set()
        sampler.join(10)
    # The sampler ran from before `set image` until the rollout was done (a fast rollout gives few
    # samples); the ready count never went below the desired 3.
    assert len(samples) >= 3 and min(samples) >= 3, samples
    items = exactly(cluster, namespace, "app=roll", 3)
    assert {p["spec"]["containers"][0]["image"] for p in items} == {v2}
    rss = get(cluster, namespace, "rs", "-l", "app=roll")["items"]
    assert sorted((rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"], rs["spec"]["replicas"])
                  for rs in rss) == [("1", 0), ("2", 3)]

    hist = cluster.kubectl("rollout", "history", "-n", namespace, "deployment/roll", check=True).stdout
    lines = [ln.split(None, 1) for ln in hist.splitlines()[2:] if ln.strip()]
    assert lines == [["1", "first"], ["2", "second"]], hist
    detail = cluster.kubectl("rollout", "history", "-n", namespace, "deployment/roll", "--revision=1",
                             check=True).stdout
    assert v1 in detail

    r = cluster.kubectl("rollout", "undo", "-n", namespace, "deployment/roll", check=True)
    assert "rolled back" in r.stdout
    assert rollout_status(cluster, namespace, "roll").returncode == 0
    d = apps.read_namespaced_deployment("roll", namespace)
    assert d.spec.template.spec.containers[0].image == v1
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "3"
    items = exactly(cluster, namespace, "app=roll", 3)
    assert {p["spec"]["containers"][0]["image"] for p in items} == {v1}
    hist = cluster.kubectl("rollout", "history", "-n", namespace, "deployment/roll", check=True).stdout
    assert [ln.split(None, 1)[0] for ln in hist.splitlines()[2:] if ln.strip()] == ["2", "3"], hist


def test_recreate_stops_every_old_pod_before_a_new_one_starts(
    cluster: PeapodCluster, namespace: str, registry: LoopbackRegistry, core: Any
) -> None:
    from kubernetes import watch

    apply(cluster, namespace, deployment("re", registry.ref("busybox", "1"), 2, strategy={"type": "Recreate"}))
    assert rollout_status(cluster, namespace, "re").returncode == 0
    old = {p["metadata"]["name"] for p in exactly(cluster, namespace, "app=re", 2)}
    rv = core.list_namespaced_pod(namespace, label_selector="app=re").metadata.resource_version
    log: list[tuple[str, str, set[str]]] = []  # (event, pod, old pods still running)
    done = threading.Event()

    def watch_pods() -> None:
        # Like kube's Recreate, an old pod stops counting once it is gone or terminal (Failed/Succeeded).
        nonlocal rv
        running = set(old)
        w = watch.Watch()
        while not done.is_set():
            for ev in w.stream(core.list_namespaced_pod, namespace, label_selector="app=re",
                               resource_version=rv, timeout_seconds=2):
                o = ev["object"]
                rv = o.metadata.resource_version
                if ev["type"] == "DELETED" or o.status.phase in ("Failed", "Succeeded"):
                    running.discard(o.metadata.name)
                elif ev["type"] == "ADDED" and o.metadata.name not in old:
                    log.append(("ADDED", o.metadata.name, set(running)))

    t = threading.Thread(target=watch_pods, daemon=True)
    t.start()
    try:
        cluster.kubectl("set", "image", "-n", namespace, "deployment/re", f"c={registry.ref('busybox', '2')}",
                        check=True)
        assert rollout_status(cluster, namespace, "re").returncode == 0
        new = {p["metadata"]["name"] for p in exactly(cluster, namespace, "app=re", 2)}
        wait_until(lambda: len(log) >= 2, 10, "the watch saw the new pods")
    finally:
        done.set()
        t.join(10)
    assert not new & old
    assert {name for _, name, _ in log} == new
    assert all(not still for _, _, still in log), log


def test_stuck_rollout_reports_progress_deadline_exceeded(
    cluster: PeapodCluster, namespace: str, registry: LoopbackRegistry
) -> None:
    apply(cluster, namespace, deployment("stuck", registry.ref("busybox", "1"), 1, progressDeadlineSeconds=8))
    assert rollout_status(cluster, namespace, "stuck").returncode == 0
    missing = registry.ref("busybox", "no-such-tag")
    cluster.kubectl("set", "image", "-n", namespace, "deployment/stuck", f"c={missing}", check=True)

    def progressing() -> dict[str, Any] | None:
        d = get(cluster, namespace, "deployment", "stuck")
        c = {c["type"]: c for c in d["status"].get("conditions", [])}.get("Progressing")
        return c if c and c.get("reason") == "ProgressDeadlineExceeded" else None

    cond = wait_until(progressing, 60, "Progressing says ProgressDeadlineExceeded")
    assert cond["status"] == "False"
    assert cond["message"].startswith('ReplicaSet "stuck-') and "has timed out progressing" in cond["message"]
    r = rollout_status(cluster, namespace, "stuck", timeout=30)
    assert r.returncode != 0
    assert 'deployment "stuck" exceeded its progress deadline' in r.stderr, r.stderr
    # The old pod keeps serving: maxUnavailable 0.
    items = pods_of(cluster, namespace, "app=stuck")
    images = {p["spec"]["containers"][0]["image"]: p for p in items}
    assert is_ready(images[registry.ref("busybox", "1")])
    waiting = images[missing]["status"]["containerStatuses"][0]["state"].get("waiting", {})
    assert waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff"), waiting


def test_delete_deployment_cascades_or_orphans(
    cluster: PeapodCluster, namespace: str, registry: LoopbackRegistry
) -> None:
    image = registry.ref("busybox", "1")
    for name in ("gone", "kept"):
        apply(cluster, namespace, deployment(name, image, 2, probe=False))
    for name in ("gone", "kept"):
        assert rollout_status(cluster, namespace, name).returncode == 0

    cluster.kubectl("delete", "-n", namespace, "deployment/kept", "--cascade=orphan", check=True)
    cluster.kubectl("delete", "-n", namespace, "deployment/gone", check=True)
    wait_until(lambda: not get(cluster, namespace, "rs", "-l", "app=gone")["items"]
               and not pods_of(cluster, namespace, "app=gone"), 60, "gone's ReplicaSet and pods are deleted")
    # The orphaned ReplicaSet lost its owner but keeps (and still controls) its pods.
    wait_until(lambda: not get(cluster, namespace, "rs", "-l", "app=kept")["items"][0]["metadata"]
               .get("ownerReferences"), 30, "kept's ReplicaSet is orphaned")
    rs = get(cluster, namespace, "rs", "-l", "app=kept")["items"]
    assert len(rs) == 1 and rs[0]["status"]["readyReplicas"] == 2
    items = exactly(cluster, namespace, "app=kept", 2)
    assert {p["metadata"]["ownerReferences"][0]["name"] for p in items} == {rs[0]["metadata"]["name"]}
    time.sleep(2)
    assert len(exactly(cluster, namespace, "app=kept", 2)) == 2


def test_replicaset_adopts_a_matching_orphan_and_releases_a_relabelled_pod(
    cluster: PeapodCluster, namespace: str, registry: LoopbackRegistry
) -> None:
    image = registry.ref("busybox", "1")
    apply(cluster, namespace, pod("stray", image, {"app": "adopt"}))
    wait_until(lambda: is_ready(get(cluster, namespace, "pod", "stray")), 60, "stray runs")
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "adopter"},
          "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "adopt"}},
                   "template": pod("x", image, {"app": "adopt"})}}
    del rs["spec"]["template"]["apiVersion"], rs["spec"]["template"]["kind"]
    del rs["spec"]["template"]["metadata"]["name"]
    apply(cluster, namespace, rs)
    items = exactly(cluster, namespace, "app=adopt", 2)
    uid = get(cluster, namespace, "rs", "adopter")["metadata"]["uid"]
    for p in items:
        refs = p["metadata"]["ownerReferences"]
        assert [(r["kind"], r["name"], r["uid"], r["controller"]) for r in refs] == \
            [("ReplicaSet", "adopter", uid, True)]
    assert "stray" in {p["metadata"]["name"] for p in items}

    cluster.kubectl("label", "-n", namespace, "pod/stray", "app=free", "--overwrite", check=True)
    wait_until(lambda: not get(cluster, namespace, "pod", "stray")["metadata"].get("ownerReferences"), 30,
               "the relabelled pod is released")
    items = exactly(cluster, namespace, "app=adopt", 2)
    assert "stray" not in {p["metadata"]["name"] for p in items}
    assert is_ready(get(cluster, namespace, "pod", "stray"))


# -- Scheduling ---------------------------------------------------------------------------------------------

def assert_unschedulable(cluster: PeapodCluster, ns: str, name: str, reason_text: str) -> None:
    def failed() -> list[str]:
        return events_for(cluster, ns, name, "FailedScheduling")
    messages = wait_until(failed, 30, f"{name} gets a FailedScheduling event")
    p = get(cluster, ns, "pod", name)
    assert p["status"]["phase"] == "Pending" and not p["spec"].get("nodeName")
    cond = pod_condition(p, "PodScheduled")
    assert (cond.get("status"), cond.get("reason")) == ("False", "Unschedulable"), cond
    want = f"0/1 nodes are available: 1 {reason_text}."
    assert cond["message"].startswith(want), cond["message"]
    assert messages[0].startswith(want), messages


def wait_running(cluster: PeapodCluster, ns: str, name: str, timeout: float = 30) -> dict[str, Any]:
    return wait_until(lambda: (lambda p: p if is_ready(p) else None)(get(cluster, ns, "pod", name)), timeout,
                      f"{name} is scheduled and ready")  # type: ignore[no-any-return]


def scheduled_soon(cluster: PeapodCluster, ns: str, name: str, within: float = 5.0) -> None:
    """The pending pod is bound within seconds of its obstacle going away (a cluster event requeues it;
    waiting out the 5-minute unschedulable flush would fail this)."""
    start = time.monotonic()
    wait_until(lambda: get(cluster, ns, "pod", name)["spec"].get("nodeName"), 30, f"{name} is bound")
    took = time.monotonic() - start
    assert took < within, f"{name} was bound {took:.1f}s after its obstacle went away"
    wait_running(cluster, ns, name)


def gone(cluster: PeapodCluster, ns: str, name: str) -> None:
    cluster.kubectl("delete", "-n", ns, "pod", name, "--wait=false", check=True)
    wait_until(lambda: "NotFound" in cluster.kubectl("get", "-n", ns, "pod", name).stderr, 60, f"{name} is gone")


def test_node_selector_pending_until_the_node_is_labelled(
    cluster: PeapodCluster, namespace: str, registry: LoopbackRegistry, node: str
) -> None:
    apply(cluster, namespace, pod("picky", registry.ref("busybox", "1"), nodeSelector={"disk": "ssd"}))
    try:
        assert_unschedulable(cluster, namespace, "picky", "node(s) didn't match Pod's node affinity/selector")
        cluster.kubectl("label", "node", node, "disk=ssd", check=True)
        scheduled_soon(cluster, namespace, "picky")
        assert get(cluster, namespace, "pod", "picky")["spec"]["nodeName"] == node
    finally:
        cluster.kubectl("label", "node", node, "disk-")


def test_insufficient_cpu_pending_until_the_blocking_pod_is_deleted(
    cluster: PeapodCluster, namespace: str, registry: LoopbackRegistry, node: str
) -> None:
    cpu = get(cluster, "default", "node", node)["status"]["allocatable"]["cpu"]
    milli = int(cpu[:-1]) if cpu.endswith("m") else int(float(cpu) * 1000)
    want = {"requests": {"cpu": f"{milli * 6 // 10}m"}}
    image = registry.ref("busybox", "1")
    big = pod("big", image)
    big["spec"]["containers"][0]["resources"] = want
    apply(cluster, namespace, big)
    wait_running(cluster, namespace, "big")
    second = pod("second", image)
    second["spec"]["containers"][0]["resources"] = want
    apply(cluster, namespace, second)
    assert_unschedulable(cluster, namespace, "second", "Insufficient cpu")
    gone(cluster, namespace, "big")
    scheduled_soon(cluster, namespace, "second")


def test_required_anti_affinity_pending_until_the_blocking_pod_is_deleted(
    cluster: PeapodCluster, namespace: str, registry: LoopbackRegistry
) -> None:
    image = registry.ref("busybox", "1")
    apply(cluster, namespace, pod("solo", image, {"app": "solo"}))
    wait_running(cluster, namespace, "solo")
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": {"app": "solo"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    apply(cluster, namespace, pod("apart", image, {"app": "apart"}, affinity=anti))
    assert_unschedulable(cluster, namespace, "apart", "node(s) didn't match pod anti-affinity rules")
    gone(cluster, namespace, "solo")
    scheduled_soon(cluster, namespace, "apart")


def test_taints_and_tolerations(
    cluster: PeapodCluster, namespace: str, registry: LoopbackRegistry, node: str
) -> None:
    image = registry.ref("busybox", "1")
    cluster.kubectl("taint", "nodes", node, "dedicated=e2e:NoSchedule", check=True)
    try:
        apply(cluster, namespace, pod("plain", image))
        assert_unschedulable(cluster, namespace, "plain", "node(s) had untolerated taint {dedicated: e2e}")
        tolerate = [{"key": "dedicated", "operator": "Equal", "value": "e2e", "effect": "NoSchedule"}]
        apply(cluster, namespace, pod("tolerant", image, tolerations=tolerate))
        wait_running(cluster, namespace, "tolerant")
        assert not get(cluster, namespace, "pod", "plain")["spec"].get("nodeName")
    finally:
        cluster.kubectl("taint", "nodes", node, "dedicated=e2e:NoSchedule-", check=True)
    scheduled_soon(cluster, namespace, "plain")
