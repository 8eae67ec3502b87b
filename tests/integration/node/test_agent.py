"""The node agent against a real in-process API server (SQLite), with the fake runtime, network,
images and sandboxes: binding -> Running, restarts with back-off, graceful deletion, re-adoption."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from peapod.api.errors import ApiError
from peapod.api.resources import resource
from peapod.client.rest import ApiClient
from peapod.node.agent import Agent, AgentConfig
from peapod.node.runtime.types import ContainerStatus
from peapod.node.volumes import FakeMounter
from peapod.testing.fakes_images import FakeImageService
from peapod.testing.fakes_node import FakeSandboxes
from peapod.testing.fakes_runtime import FakePodNetwork, FakeRuntime

PODS = resource("", "v1", "pods")
NODES = resource("", "v1", "nodes")
LEASES = resource("coordination.k8s.io", "v1", "leases")
NODE = "node-a"


class Parts:
    def __init__(self, tmp: Path) -> None:
        self.data = tmp / "agent"
        self.runtime = FakeRuntime()
        self.network = FakePodNetwork()
        self.images = FakeImageService(rootfs_dir=tmp / "rootfs")
        self.images.add_remote("busybox:1.36", cmd=("sh",))
        self.images.add_remote("busybox:1.37", cmd=("sh",))
        self.sandboxes = FakeSandboxes(self.data)
        self.mounter = FakeMounter()

    def config(self, client: ApiClient) -> AgentConfig:
        return AgentConfig(
            node_name=NODE,
            data_dir=self.data,
            client=client,
            runtime=self.runtime,
            network=self.network,
            images=self.images,
            sandboxes=self.sandboxes,
            mounter=self.mounter,
            node_ips=["127.0.0.1"],
            bind="127.0.0.1",
            port=0,
            insecure_http=True,
            relist_interval=0.05,
            resync_interval=0.5,
        )


@pytest.fixture
async def client(server: Any) -> AsyncIterator[ApiClient]:
    c = ApiClient(server.url)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def parts(tmp_path: Path) -> Parts:
    return Parts(tmp_path)


@pytest.fixture
async def agent(parts: Parts, client: ApiClient) -> AsyncIterator[Agent]:
    a = Agent(parts.config(client))
    await a.start()
    try:
        yield a
    finally:
        await a.stop(stop_pods=True)


def pod_obj(
    name: str,
    *,
    image: str = "busybox:1.36",
    restart: str = "Always",
    grace: int = 5,
    containers: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "containers": containers or [{"name": "c", "image": image, "command": ["sleep", "3600"]}],
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": grace,
            **spec,
        },
    }


async def bind(client: ApiClient, name: str) -> None:
    await client.request(
        "POST",
        f"/api/v1/namespaces/default/pods/{name}/binding",
        body={
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": NODE},
        },
    )


async def wait_for(
    client: ApiClient, name: str, cond: Callable[[dict[str, Any]], bool], timeout: float = 15.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            last = await client.get(PODS, name, "default")
        except ApiError as e:
            if e.code != 404:
                raise
            last = {}
        if cond(last):
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met for {name}; last: {last.get('status')}")


def cstatus(pod: dict[str, Any], name: str = "c") -> dict[str, Any]:
    return next(s for s in pod.get("status", {}).get("containerStatuses", []) if s["name"] == name)


def conditions(pod: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}


def running(pod: dict[str, Any]) -> bool:
    return pod.get("status", {}).get("phase") == "Running" and conditions(pod).get("Ready") == "True"


async def test_node_registered_with_lease(agent: Agent, client: ApiClient) -> None:
    node = await client.get(NODES, NODE)
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == NODE
    assert node["metadata"]["labels"]["kubernetes.io/os"] == "linux"
    st = node["status"]
    assert st["daemonEndpoints"]["kubeletEndpoint"]["Port"] == agent.port
    assert {"type": "InternalIP", "address": "127.0.0.1"} in st["addresses"]
    assert st["nodeInfo"]["kubeletVersion"] == "v1.33.0-peapod"
    assert st["capacity"]["pods"] == "110"
    assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "True"
    lease = await client.get(LEASES, NODE, "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == NODE
    assert lease["spec"]["leaseDurationSeconds"] == 40


async def test_bound_pod_runs(agent: Agent, parts: Parts, client: ApiClient) -> None:
    await client.create(PODS, pod_obj("web"), "default")
    await bind(client, "web")
    pod = await wait_for(client, "web", running)
    st = pod["status"]
    assert st["podIP"].startswith("10.77.")
    assert st["hostIP"] == "127.0.0.1"
    assert st["qosClass"] == "BestEffort"
    assert st["startTime"]
    conds = conditions(pod)
    assert conds["PodScheduled"] == "True"
    assert conds["Initialized"] == conds["ContainersReady"] == conds["PodReadyToStartContainers"] == "True"
    cs = cstatus(pod)
    assert cs["ready"] and cs["started"] and cs["restartCount"] == 0
    assert "running" in cs["state"]
    assert cs["containerID"].startswith("peapod://")
    assert cs["imageID"].startswith("docker.io/library/busybox@sha256:")
    cid = cs["containerID"].split("://", 1)[1]
    assert parts.runtime.containers[cid].status == ContainerStatus.RUNNING
    # the pod's log file lives under the data dir, per container and restart
    assert parts.runtime.containers[cid].log_path.endswith(f"/pods/{pod['metadata']['uid']}/logs/c/0.log")


async def test_exit_restarts_with_backoff(agent: Agent, parts: Parts, client: ApiClient) -> None:
    await client.create(PODS, pod_obj("crash"), "default")
    await bind(client, "crash")
    pod = await wait_for(client, "crash", running)
    cid = cstatus(pod)["containerID"].split("://", 1)[1]
    parts.runtime.exit(cid, 1)
    pod = await wait_for(client, "crash", lambda p: cstatus(p)["restartCount"] == 1 and running(p))
    last = cstatus(pod)["lastState"]["terminated"]
    assert last["exitCode"] == 1 and last["reason"] == "Error"
    cid2 = cstatus(pod)["containerID"].split("://", 1)[1]
    parts.runtime.exit(cid2, 2)
    pod = await wait_for(client, "crash", lambda p: "waiting" in cstatus(p)["state"])
    cs = cstatus(pod)
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert "back-off 10s" in cs["state"]["waiting"]["message"]
    assert cs["lastState"]["terminated"]["exitCode"] == 2
    assert cs["restartCount"] == 1
    assert conditions(pod)["Ready"] == "False"
    assert pod["status"]["phase"] == "Running"


async def test_completed_pod_succeeds(agent: Agent, parts: Parts, client: ApiClient) -> None:
    await client.create(PODS, pod_obj("job", restart="Never"), "default")
    await bind(client, "job")
    pod = await wait_for(client, "job", running)
    cid = cstatus(pod)["containerID"].split("://", 1)[1]
    parts.runtime.exit(cid, 0)
    pod = await wait_for(client, "job", lambda p: p["status"].get("phase") == "Succeeded")
    assert cstatus(pod)["state"]["terminated"]["reason"] == "Completed"
    assert conditions(pod)["Ready"] == "False"
    uid = pod["metadata"]["uid"]
    # the sandbox and network are released, the container record stays for logs
    await wait_for(client, "job", lambda p: conditions(p).get("PodReadyToStartContainers") == "False")
    assert uid not in parts.network.pods and parts.sandboxes.get(uid) is None
    assert cid in parts.runtime.containers


async def test_image_pull_error_reported(agent: Agent, client: ApiClient) -> None:
    await client.create(PODS, pod_obj("badimg", image="nosuch:1.0"), "default")
    await bind(client, "badimg")
    pod = await wait_for(
        client,
        "badimg",
        lambda p: (
            "waiting" in (cstatus(p) if p.get("status", {}).get("containerStatuses") else {}).get("state", {})
            and cstatus(p)["state"]["waiting"]["reason"] in ("ErrImagePull", "ImagePullBackOff")
        ),
    )
    w = cstatus(pod)["state"]["waiting"]
    assert "nosuch" in w.get("message", "")
    assert pod["status"]["phase"] == "Pending"


async def test_graceful_delete_then_final_delete(agent: Agent, parts: Parts, client: ApiClient) -> None:
    await client.create(PODS, pod_obj("gone"), "default")
    await bind(client, "gone")
    pod = await wait_for(client, "gone", running)
    uid = pod["metadata"]["uid"]
    await client.delete(PODS, "gone", "default")
    await wait_for(client, "gone", lambda p: p == {})
    assert not [c for c in parts.runtime.containers if c.startswith(uid)]
    assert uid not in parts.network.pods
    assert parts.sandboxes.get(uid) is None
    assert not (parts.data / "pods" / uid).exists()
    stops = [c for c in parts.runtime.called("stop") if c.args[0].startswith(uid)]
    assert stops and stops[0].args[1] == 5.0  # the pod's grace period


async def test_restart_readopts_without_restarting(parts: Parts, client: ApiClient) -> None:
    a = Agent(parts.config(client))
    await a.start()
    try:
        await client.create(PODS, pod_obj("keep"), "default")
        await bind(client, "keep")
        pod = await wait_for(client, "keep", running)
    finally:
        await a.stop(stop_pods=False)
    creates = len(parts.runtime.called("create"))
    cid = cstatus(pod)["containerID"].split("://", 1)[1]
    assert parts.runtime.containers[cid].status == ContainerStatus.RUNNING
    b = Agent(parts.config(client))
    await b.start()
    try:
        await asyncio.sleep(1.0)
        pod = await client.get(PODS, "keep", "default")
        assert running(pod)
        assert cstatus(pod)["restartCount"] == 0
        assert cstatus(pod)["containerID"] == f"peapod://{cid}"
        assert len(parts.runtime.called("create")) == creates
        assert not [c for c in parts.runtime.called("stop") if c.args[0] == cid]
    finally:
        await b.stop(stop_pods=True)
    assert not parts.runtime.containers
    assert not parts.network.pods


async def test_pod_deleted_while_agent_down_is_removed(parts: Parts, client: ApiClient) -> None:
    a = Agent(parts.config(client))
    await a.start()
    try:
        await client.create(PODS, pod_obj("orphan"), "default")
        await bind(client, "orphan")
        pod = await wait_for(client, "orphan", running)
    finally:
        await a.stop(stop_pods=False)
    uid = pod["metadata"]["uid"]
    await client.delete(PODS, "orphan", "default", grace_period_seconds=0)
    b = Agent(parts.config(client))
    await b.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (parts.runtime.containers or uid in parts.network.pods):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        assert not parts.runtime.containers
        assert uid not in parts.network.pods
        assert parts.sandboxes.get(uid) is None
    finally:
        await b.stop(stop_pods=True)


async def test_init_containers_then_app(agent: Agent, parts: Parts, client: ApiClient) -> None:
    p = pod_obj("withinit")
    p["spec"]["initContainers"] = [{"name": "init", "image": "busybox:1.36", "command": ["true"]}]
    await client.create(PODS, p, "default")
    await bind(client, "withinit")
    pod = await wait_for(
        client,
        "withinit",
        lambda p: (
            bool(p.get("status", {}).get("initContainerStatuses"))
            and "running" in p["status"]["initContainerStatuses"][0]["state"]
        ),
    )
    assert pod["status"]["phase"] == "Pending"
    assert conditions(pod)["Initialized"] == "False"
    assert cstatus(pod)["state"]["waiting"]["reason"] == "PodInitializing"
    init_cid = pod["status"]["initContainerStatuses"][0]["containerID"].split("://", 1)[1]
    parts.runtime.exit(init_cid, 0)
    pod = await wait_for(client, "withinit", running)
    assert conditions(pod)["Initialized"] == "True"
    assert pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"


async def test_image_update_restarts_container(agent: Agent, parts: Parts, client: ApiClient) -> None:
    await client.create(PODS, pod_obj("upd"), "default")
    await bind(client, "upd")
    pod = await wait_for(client, "upd", running)
    old = cstatus(pod)["containerID"]
    await client.patch(
        PODS,
        "upd",
        {"spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}},
        "default",
        patch_type="strategic",
    )
    pod = await wait_for(client, "upd", lambda p: cstatus(p)["containerID"] != old and running(p))
    assert cstatus(pod)["restartCount"] == 1
    assert cstatus(pod)["image"] == "busybox:1.37"
