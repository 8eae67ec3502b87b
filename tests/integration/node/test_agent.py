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
    return next((s for s in pod.get("status", {}).get("containerStatuses", []) if s["name"] == name), {})


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
    assert stops and stops[0].args[1] == pytest.approx(5.0, abs=0.5)  # the pod's grace period, counted from the start


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


async def test_failed_init_container_backs_off(agent: Agent, parts: Parts, client: ApiClient) -> None:
    p = pod_obj("initcrash")
    p["spec"]["initContainers"] = [{"name": "init", "image": "busybox:1.36", "command": ["false"]}]
    await client.create(PODS, p, "default")
    await bind(client, "initcrash")

    def init_status(p: dict[str, Any]) -> dict[str, Any]:
        return (p.get("status", {}).get("initContainerStatuses") or [{}])[0]

    for attempt in (0, 1):
        pod = await wait_for(client, "initcrash", lambda p, a=attempt: init_status(p).get("restartCount") == a
                             and "running" in init_status(p).get("state", {}))
        parts.runtime.exit(init_status(pod)["containerID"].split("://", 1)[1], 1)
    pod = await wait_for(client, "initcrash", lambda p: "waiting" in init_status(p).get("state", {}))
    st = init_status(pod)
    assert st["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert st["restartCount"] == 1
    await asyncio.sleep(1.0)
    assert init_status(await client.get(PODS, "initcrash", "default"))["restartCount"] == 1


EVENTS = resource("", "v1", "events")


async def event_messages(client: ApiClient, name: str, reason: str, timeout: float = 5.0) -> list[str]:
    """The messages of the pod's events with ``reason``, waiting (up to ``timeout``) for at least one:
    the agent sends events in the background, after the status that caused them may be visible."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await client.list(EVENTS, "default")
        msgs = [e["message"] for e in got["items"] if e["involvedObject"]["name"] == name and e["reason"] == reason]
        if msgs or asyncio.get_running_loop().time() > deadline:
            return msgs
        await asyncio.sleep(0.05)


async def create_bound(client: ApiClient, p: dict[str, Any]) -> str:
    created = await client.create(PODS, p, "default")
    await bind(client, p["metadata"]["name"])
    return created["metadata"]["uid"]


def exec_probe(**kw: Any) -> dict[str, Any]:
    return {"exec": {"command": ["check"]}, "periodSeconds": 1, "failureThreshold": 1, **kw}


async def test_readiness_probe_gates_ready(agent: Agent, parts: Parts, client: ApiClient) -> None:
    p = pod_obj("ready", containers=[{"name": "c", "image": "busybox:1.36", "readinessProbe": exec_probe()}])
    uid = (await client.create(PODS, p, "default"))["metadata"]["uid"]
    parts.runtime.exec_results[f"{uid}-c-0"] = (1, b"not yet", b"")
    await bind(client, "ready")
    pod = await wait_for(client, "ready", lambda p: p.get("status", {}).get("phase") == "Running")
    await asyncio.sleep(1.5)
    pod = await client.get(PODS, "ready", "default")
    assert conditions(pod)["Ready"] == "False" and conditions(pod)["ContainersReady"] == "False"
    assert cstatus(pod)["ready"] is False and cstatus(pod)["started"] is True
    assert any("Readiness probe failed: not yet" in m for m in await event_messages(client, "ready", "Unhealthy"))
    parts.runtime.exec_results[f"{uid}-c-0"] = (0, b"", b"")
    pod = await wait_for(client, "ready", running, timeout=5)
    assert cstatus(pod)["ready"] is True and cstatus(pod)["restartCount"] == 0


async def test_liveness_failure_restarts_the_container(agent: Agent, parts: Parts, client: ApiClient) -> None:
    p = pod_obj("live", containers=[{"name": "c", "image": "busybox:1.36",
                                     "livenessProbe": exec_probe(terminationGracePeriodSeconds=3)}])
    uid = (await client.create(PODS, p, "default"))["metadata"]["uid"]
    parts.runtime.exec_results[f"{uid}-c-0"] = (1, b"", b"dead")
    await bind(client, "live")
    pod = await wait_for(client, "live", lambda p: cstatus(p).get("restartCount") == 1 and running(p),
                         timeout=10)
    assert cstatus(pod)["lastState"]["terminated"]["exitCode"] == 143
    assert "Container c failed liveness probe, will be restarted" in await event_messages(client, "live", "Killing")
    stop = next(c for c in parts.runtime.called("stop") if c.args[0] == f"{uid}-c-0")
    assert stop.args[1] == pytest.approx(3.0, abs=0.5)  # the probe's terminationGracePeriodSeconds
    await asyncio.sleep(1.5)  # the new instance passes (no exec result configured): no more restarts
    assert cstatus(await client.get(PODS, "live", "default"))["restartCount"] == 1


async def test_startup_probe_holds_liveness_and_readiness(agent: Agent, parts: Parts, client: ApiClient) -> None:
    c = {"name": "c", "image": "busybox:1.36", "startupProbe": exec_probe(failureThreshold=30),
         "livenessProbe": {"exec": {"command": ["alive"]}, "periodSeconds": 1, "failureThreshold": 1}}
    uid = (await client.create(PODS, pod_obj("startup", containers=[c]), "default"))["metadata"]["uid"]
    parts.runtime.exec_results[f"{uid}-c-0"] = (1, b"", b"")  # every probe fails, liveness too
    await bind(client, "startup")
    pod = await wait_for(client, "startup", lambda p: p.get("status", {}).get("phase") == "Running")
    await asyncio.sleep(2.5)
    pod = await client.get(PODS, "startup", "default")
    assert cstatus(pod)["started"] is False and cstatus(pod)["ready"] is False
    assert cstatus(pod)["restartCount"] == 0
    liveness_runs = [x for x in parts.runtime.called("exec") if x.args[1] == ("alive",)]
    assert liveness_runs == []


async def test_post_start_failure_kills_the_container(agent: Agent, parts: Parts, client: ApiClient) -> None:
    c = {"name": "c", "image": "busybox:1.36", "lifecycle": {"postStart": {"exec": {"command": ["hook"]}}}}
    uid = (await client.create(PODS, pod_obj("post", restart="Never", containers=[c]), "default"))["metadata"]["uid"]
    parts.runtime.exec_results[f"{uid}-c-0"] = (7, b"", b"bad hook")
    await bind(client, "post")
    pod = await wait_for(client, "post", lambda p: p.get("status", {}).get("phase") == "Failed")
    assert cstatus(pod)["state"]["terminated"]["exitCode"] == 143
    msgs = await event_messages(client, "post", "FailedPostStartHook")
    assert msgs and "exited with 7: bad hook" in msgs[0]
    assert "FailedPostStartHook" in await event_messages(client, "post", "Killing")


async def test_missing_executable_is_container_cannot_run(agent: Agent, parts: Parts, client: ApiClient) -> None:
    from peapod.node.runtime.types import ContainerRuntimeError

    parts.runtime.fail("create", ContainerRuntimeError(
        'create x: runc create failed: unable to start container process: exec: "/nope": '
        "stat /nope: no such file or directory"))
    await create_bound(client, pod_obj("cantrun", restart="Never"))
    pod = await wait_for(client, "cantrun", lambda p: p.get("status", {}).get("phase") == "Failed")
    t = cstatus(pod)["state"]["terminated"]
    assert (t["reason"], t["exitCode"]) == ("ContainerCannotRun", 128)
    assert "/nope" in t["message"]


async def test_cannot_run_restarts_with_backoff(agent: Agent, parts: Parts, client: ApiClient) -> None:
    from peapod.node.runtime.types import ContainerRuntimeError

    parts.runtime.fail("create", ContainerRuntimeError("unable to start container process: exec: no"), times=5)
    await create_bound(client, pod_obj("cantrun2"))
    pod = await wait_for(client, "cantrun2", lambda p: "waiting" in cstatus(p).get("state", {})
                         and cstatus(p)["state"]["waiting"]["reason"] == "CrashLoopBackOff")
    assert cstatus(pod)["restartCount"] == 1
    assert cstatus(pod)["lastState"]["terminated"]["reason"] == "ContainerCannotRun"


async def test_active_deadline_fails_the_pod(agent: Agent, parts: Parts, client: ApiClient) -> None:
    await create_bound(client, pod_obj("deadline", activeDeadlineSeconds=1))
    pod = await wait_for(client, "deadline", lambda p: p.get("status", {}).get("phase") == "Failed", timeout=10)
    assert pod["status"]["reason"] == "DeadlineExceeded"
    pod = await wait_for(client, "deadline", lambda p: "terminated" in cstatus(p).get("state", {}))
    assert cstatus(pod)["state"]["terminated"]["exitCode"] == 143
    assert await event_messages(client, "deadline", "DeadlineExceeded")


async def test_sidecar_stopped_after_app_containers(agent: Agent, parts: Parts, client: ApiClient) -> None:
    p = pod_obj("sc")
    p["spec"]["initContainers"] = [{"name": "side", "image": "busybox:1.36", "restartPolicy": "Always"}]
    uid = await create_bound(client, p)
    await wait_for(client, "sc", running)
    await client.delete(PODS, "sc", "default")
    await wait_for(client, "sc", lambda p: p == {})
    stops = [c.args[0] for c in parts.runtime.called("stop") if c.args[0].startswith(uid)]
    assert stops == [f"{uid}-c-0", f"{uid}-side-0"]
