"""Every example under examples/ applied with the real kubectl on a real cluster (the pytest plugin's
``peapod_cluster``), with the outcome its README promises checked.

The manifests name ``busybox:1.36`` / ``busybox:1.37``, so they work as they are on a machine that can
pull from Docker Hub; here those names are replaced by two busybox images in a loopback registry.
"""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from peapod.testing.ephemeral import EphemeralCluster, mounts_under, wait_until
from peapod.testing.images import busybox_image, push_image
from peapod.testing.registry import LoopbackRegistry

ROOT = subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() == "0"
pytestmark = pytest.mark.skipif(not ROOT, reason="needs root")

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
Obj = dict[str, Any]


@pytest.fixture(scope="module")
def images(registry: LoopbackRegistry) -> dict[str, str]:
    """What the examples' image names become: busybox:1 of the registry fixture and a busybox:2."""
    asyncio.run(push_image(registry.ref("busybox", "2"), busybox_image(extra_files={"etc/release": "2\n"})))
    return {"busybox:1.36": registry.ref("busybox", "1"), "busybox:1.37": registry.ref("busybox", "2")}


@pytest.fixture
def ns(peapod_namespace: str) -> str:
    return peapod_namespace


@pytest.fixture
def kube(peapod_cluster: EphemeralCluster, images: dict[str, str]) -> EphemeralCluster:
    peapod_cluster.substitutions.update(images)
    return peapod_cluster


def example(*parts: str) -> Path:
    return EXAMPLES.joinpath(*parts)


def pod(kube: EphemeralCluster, ns: str, name: str) -> Obj:
    return kube.get("pod", name, namespace=ns)


def container(p: Obj, name: str | None = None, init: bool = False) -> Obj:
    statuses = p.get("status", {}).get("initContainerStatuses" if init else "containerStatuses") or [{}]
    return next((s for s in statuses if name is None or s.get("name") == name), {})


def ready(p: Obj) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_every_example_has_a_readme_and_a_test() -> None:
    dirs = sorted(d.name for d in EXAMPLES.iterdir() if d.is_dir() and d.name != "webapp")
    assert dirs == ["anti-affinity", "init-containers", "probes", "resource-limits", "rollout"]
    for d in dirs:
        readme = (EXAMPLES / d / "README.md").read_text()
        for manifest in (EXAMPLES / d).glob("*.yaml"):
            assert manifest.name in readme, f"examples/{d}/README.md does not mention {manifest.name}"


# ---- rollout and rollback ----------------------------------------------------------------------------------


def test_rollout_and_rollback(kube: EphemeralCluster, ns: str, images: dict[str, str]) -> None:
    def rollout_status() -> str:
        return kube.kubectl("-n", ns, "rollout", "status", "deployment/web", "--timeout=120s",
                            timeout=150, check=True).stdout

    def image() -> str:
        return kube.get("deployment", "web", namespace=ns)["spec"]["template"]["spec"]["containers"][0]["image"]

    def serving_images() -> set[str]:
        pods = kube.get("pods", "-l", "app=web", namespace=ns)["items"]
        return {p["spec"]["containers"][0]["image"] for p in pods
                if ready(p) and not p["metadata"].get("deletionTimestamp")}

    kube.apply(example("rollout", "deployment-v1.yaml"), namespace=ns)
    assert "successfully rolled out" in rollout_status()
    kube.apply(example("rollout", "deployment-v2.yaml"), namespace=ns)
    assert "successfully rolled out" in rollout_status()
    assert image() == images["busybox:1.37"]
    kube.wait_for(lambda: serving_images() == {images["busybox:1.37"]}, 60, "only v2 pods serve")

    history = kube.kubectl("-n", ns, "rollout", "history", "deployment/web", check=True).stdout
    assert "v1: busybox 1.36" in history and "v2: busybox 1.37" in history, history
    rev2 = kube.kubectl("-n", ns, "rollout", "history", "deployment/web", "--revision=2", check=True).stdout
    assert images["busybox:1.37"] in rev2

    kube.kubectl("-n", ns, "rollout", "undo", "deployment/web", check=True)
    assert "successfully rolled out" in rollout_status()
    assert image() == images["busybox:1.36"]
    kube.wait_for(lambda: serving_images() == {images["busybox:1.36"]}, 60, "only v1 pods serve again")
    # the undo re-used revision 1's ReplicaSet, which is now revision 3
    history = kube.kubectl("-n", ns, "rollout", "history", "deployment/web", check=True).stdout
    revisions = [ln.split()[0] for ln in history.splitlines()[2:] if ln.strip()]
    assert revisions == ["2", "3"], history
    one = next(p for p in kube.get("pods", "-l", "app=web", namespace=ns)["items"]
               if ready(p) and not p["metadata"].get("deletionTimestamp"))  # not one of v2 still terminating
    body = kube.kubectl("-n", ns, "exec", one["metadata"]["name"], "--", "wget", "-qO-",
                        "http://127.0.0.1:8080/", check=True).stdout
    assert body.strip().endswith(" v1")


# ---- probes --------------------------------------------------------------------------------------------------


def test_readiness_flips_and_liveness_restarts(kube: EphemeralCluster, ns: str) -> None:
    kube.apply(example("probes", "pod.yaml"), namespace=ns)
    kube.wait("pod/probes", "condition=Ready", namespace=ns, timeout=60)

    kube.kubectl("-n", ns, "exec", "probes", "--", "rm", "/www/ready", check=True)
    kube.wait("pod/probes", "condition=Ready=false", namespace=ns, timeout=30)
    assert container(pod(kube, ns, "probes"))["restartCount"] == 0, "readiness never restarts a container"
    kube.kubectl("-n", ns, "exec", "probes", "--", "sh", "-c", "echo ok > /www/ready", check=True)
    kube.wait("pod/probes", "condition=Ready", namespace=ns, timeout=30)

    kube.kubectl("-n", ns, "exec", "probes", "--", "rm", "/tmp/alive", check=True)
    def restarted() -> Obj | None:
        p = pod(kube, ns, "probes")
        return p if container(p).get("restartCount") == 1 else None

    p = kube.wait_for(restarted, 60, "the liveness probe restarts the container")
    assert "terminated" in container(p)["lastState"]
    kube.wait("pod/probes", "condition=Ready", namespace=ns, timeout=60)  # the new container is ready again


# ---- init containers --------------------------------------------------------------------------------------


def test_init_containers_run_in_order_before_the_app(kube: EphemeralCluster, ns: str) -> None:
    kube.apply(example("init-containers", "pod.yaml"), namespace=ns)
    kube.wait("pod/init-demo", "condition=Ready", namespace=ns, timeout=60)
    logs = kube.wait_for(lambda: kube.kubectl("-n", ns, "logs", "init-demo", "-c", "app").stdout, 30, "app logs")
    assert logs == ("1 fetch-config: wrote /work/config\n2 check-config: config is valid\n3 app: started\n")
    p = pod(kube, ns, "init-demo")
    first = container(p, "fetch-config", init=True)["state"]["terminated"]
    second = container(p, "check-config", init=True)["state"]["terminated"]
    assert (first["reason"], first["exitCode"], second["reason"], second["exitCode"]) == (
        "Completed", 0, "Completed", 0)
    assert ts(first["finishedAt"]) <= ts(second["startedAt"])
    assert ts(second["finishedAt"]) <= ts(container(p, "app")["state"]["running"]["startedAt"])


def test_a_failing_init_container_fails_the_pod(kube: EphemeralCluster, ns: str) -> None:
    kube.apply(example("init-containers", "init-fails.yaml"), namespace=ns)
    kube.wait("pod/init-fails", "jsonpath={.status.phase}=Failed", namespace=ns, timeout=60)
    p = pod(kube, ns, "init-fails")
    assert container(p, "wait-for-database", init=True)["state"]["terminated"]["exitCode"] == 1
    assert "running" not in container(p, "app").get("state", {}) and "terminated" not in container(p, "app").get(
        "state", {}), "the app container never started"
    status = kube.kubectl("-n", ns, "get", "pod", "init-fails", "--no-headers", check=True).stdout
    assert "Init:Error" in status


# ---- resource limits ----------------------------------------------------------------------------------------


def test_memory_hog_is_oom_killed(kube: EphemeralCluster, ns: str) -> None:
    kube.apply(example("resource-limits", "memory-hog.yaml"), namespace=ns)
    kube.wait("pod/memory-hog", "jsonpath={.status.phase}=Failed", namespace=ns, timeout=60)
    t = container(pod(kube, ns, "memory-hog"))["state"]["terminated"]
    assert (t["reason"], t["exitCode"]) == ("OOMKilled", 137)
    assert "OOMKilled" in kube.kubectl("-n", ns, "get", "pod", "memory-hog", "--no-headers", check=True).stdout


def test_cpu_limit_is_a_cfs_quota(kube: EphemeralCluster, ns: str) -> None:
    kube.apply(example("resource-limits", "cpu-limited.yaml"), namespace=ns)
    kube.wait("pod/cpu-limited", "condition=Ready", namespace=ns, timeout=60)
    assert pod(kube, ns, "cpu-limited")["status"]["qosClass"] == "Guaranteed"
    script = ("if [ -f /sys/fs/cgroup/cpu.max ]; then cat /sys/fs/cgroup/cpu.max; "
              "else echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us); fi")
    quota = kube.kubectl("-n", ns, "exec", "cpu-limited", "--", "sh", "-c", script, check=True).stdout.split()
    assert quota == ["25000", "100000"]


# ---- anti-affinity on a multi-node cluster --------------------------------------------------------------


def test_anti_affinity_spreads_replicas_over_nodes(tmp_path: Path, registry: LoopbackRegistry,
                                                   images: dict[str, str]) -> None:
    if importlib.util.find_spec("peapod.testing.multinode") is None:
        pytest.skip("needs the multi-node harness peapod/testing/multinode.py (`peapod cluster up --nodes N`, "
                    "issue 7), which is not there yet")
    from peapod.testing.ephemeral import manifest_text
    from peapod.testing.multinode import MultiNodeCluster

    c = MultiNodeCluster(tmp_path / "c", nodes=2, network="none", registries=[registry.host],
                         extra_args=("--servers", "1", "--etcd-members", "1"))
    try:
        c.start()
        c.kubectl("create", "namespace", "spread", check=True)
        c.kubectl("-n", "spread", "apply", "-f", "-", check=True,
                  input=manifest_text(example("anti-affinity", "deployment.yaml"), images))

        def placed() -> tuple[list[Obj], list[Obj]] | None:
            pods = c.get_json("-n", "spread", "pods", "-l", "app=spread")["items"]
            running = [p for p in pods if p.get("status", {}).get("phase") == "Running"]
            pending = [p for p in pods if p.get("status", {}).get("phase") == "Pending"
                       and any(k["type"] == "PodScheduled" and k["status"] == "False"
                               for k in p["status"].get("conditions", []))]
            return (running, pending) if len(running) == 2 and len(pending) == 1 else None

        running, pending = wait_until(placed, 120, "two replicas run and one is unschedulable")
        assert {p["spec"]["nodeName"] for p in running} == set(c.node_names())
        cond = next(k for k in pending[0]["status"]["conditions"] if k["type"] == "PodScheduled")
        assert cond["reason"] == "Unschedulable" and "anti-affinity" in cond["message"], cond
        assert not pending[0]["spec"].get("nodeName")
        c.kubectl("-n", "spread", "scale", "deployment/spread", "--replicas=2", check=True)
        wait_until(lambda: len(c.get_json("-n", "spread", "pods", "-l", "app=spread")["items"]) == 2, 60,
                   "the Pending replica goes away when scaled to two")
    finally:
        c.down()
        assert mounts_under(tmp_path) == []
