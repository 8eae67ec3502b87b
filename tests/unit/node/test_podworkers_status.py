"""Pod workers (lifecycle, coalescing, retries on a FakeClock), the status manager, node status."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from peapod.api.errors import ApiError
from peapod.node.nodestatus import NodeFacts, build_node, build_node_status, meminfo_total, os_release_name
from peapod.node.podworkers import PodLifecycle, PodWorkers, SyncResult, termination_grace
from peapod.node.statusmanager import StatusManager
from peapod.testing.clock import FakeClock


def pod(
    uid: str = "u1", *, deleting: bool = False, rv: str = "1", grace: int | None = None
) -> dict[str, Any]:
    md: dict[str, Any] = {"name": "p", "namespace": "ns", "uid": uid, "resourceVersion": rv}
    if deleting:
        md["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        md["deletionGracePeriodSeconds"] = 7
    spec: dict[str, Any] = {}
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return {"metadata": md, "spec": spec}


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.gate: asyncio.Event | None = None
        self.result = SyncResult()
        self.fail_sync = 0
        self.finished = True

    async def sync(self, p: dict[str, Any]) -> SyncResult:
        self.calls.append(("sync", p["metadata"]["resourceVersion"]))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_sync:
            self.fail_sync -= 1
            raise RuntimeError("boom")
        return self.result

    async def terminate(self, p: dict[str, Any], grace: int) -> None:
        self.calls.append(("terminate", grace))

    async def cleanup(self, p: dict[str, Any], removed: bool) -> bool:
        self.calls.append(("cleanup", removed))
        return self.finished


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def workers(rec: Recorder, clock: FakeClock) -> Any:
    w = PodWorkers(sync=rec.sync, terminate=rec.terminate, cleanup=rec.cleanup, clock=clock)
    yield w
    await w.stop(timeout=1)


async def test_lifecycle_on_deletion(workers: PodWorkers, rec: Recorder) -> None:
    workers.update(pod())
    await workers.wait_idle()
    assert workers.state("u1") == PodLifecycle.SYNCING and not workers.is_terminating("u1")
    workers.update(pod(deleting=True, rv="2"))
    await workers.wait_idle()
    assert rec.calls == [("sync", "1"), ("terminate", 7), ("cleanup", False)]
    assert workers.state("u1") == PodLifecycle.TERMINATED and workers.is_terminating("u1")
    workers.update(pod(deleting=True, rv="3"))  # a terminated pod never syncs again
    await workers.wait_idle()
    assert ("sync", "3") not in rec.calls


async def test_updates_coalesce(workers: PodWorkers, rec: Recorder) -> None:
    rec.gate = asyncio.Event()
    workers.update(pod(rv="1"))
    await settle()
    for rv in ("2", "3", "4"):
        workers.update(pod(rv=rv))
    rec.gate.set()
    await workers.wait_idle()
    assert rec.calls == [("sync", "1"), ("sync", "4")]
    assert not workers.busy("u1")  # the idle worker exited


async def test_terminal_sync_and_kill(workers: PodWorkers, rec: Recorder) -> None:
    rec.result = SyncResult(terminal=True)
    workers.update(pod(grace=3))
    await workers.wait_idle()
    assert rec.calls == [("sync", "1"), ("terminate", 3), ("cleanup", False)]
    workers.kill("u1", grace=1)  # removed from the API: cleanup again, fully
    await workers.wait_idle()
    assert rec.calls[-1] == ("cleanup", True)


async def test_errors_retry_with_backoff(workers: PodWorkers, rec: Recorder, clock: FakeClock) -> None:
    rec.fail_sync = 2
    workers.update(pod())
    await workers.wait_idle()
    assert len(rec.calls) == 1
    clock.advance(0.5)
    await settle()
    await workers.wait_idle()
    assert len(rec.calls) == 2
    clock.advance(0.9)  # second delay is 1 s
    await settle()
    assert len(rec.calls) == 2
    clock.advance(0.1)
    await settle()
    await workers.wait_idle()
    assert len(rec.calls) == 3


async def test_requeue_after(workers: PodWorkers, rec: Recorder, clock: FakeClock) -> None:
    rec.result = SyncResult(requeue_after=10)
    workers.update(pod())
    await workers.wait_idle()
    clock.advance(9.9)
    await settle()
    assert len(rec.calls) == 1
    clock.advance(0.2)
    await settle()
    await workers.wait_idle()
    assert len(rec.calls) == 2


def test_termination_grace() -> None:
    assert termination_grace(pod()) == 30
    assert termination_grace(pod(grace=5)) == 5
    assert termination_grace(pod(deleting=True, grace=5)) == 7


class FakeClient:
    def __init__(self) -> None:
        self.patches: list[tuple[str, str, Any, str | None]] = []
        self.deletes: list[tuple[str, dict[str, Any]]] = []
        self.fail: list[ApiError] = []

    async def patch(
        self,
        info: Any,
        name: str,
        body: Any,
        namespace: str | None = None,
        *,
        patch_type: str = "merge",
        subresource: str | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        if self.fail:
            raise self.fail.pop(0)
        self.patches.append((name, patch_type, body, subresource))
        return {"status": body["status"]}

    async def delete(self, info: Any, name: str, namespace: str | None = None, **kw: Any) -> None:
        self.deletes.append((name, kw))
        if self.fail:
            raise self.fail.pop(0)


async def test_status_manager_patches_only_changes(clock: FakeClock) -> None:
    client = FakeClient()
    sm = StatusManager(client, clock=clock)  # type: ignore[arg-type]
    p = pod()
    sm.set_status(p, {"phase": "Running"})
    assert await sm.sync_once()
    assert client.patches == [
        ("p", "merge", {"metadata": {"uid": "u1"}, "status": {"phase": "Running"}}, "status")
    ]
    sm.set_status(p, {"phase": "Running"})
    await sm.sync_once()
    assert len(client.patches) == 1
    sm.set_status(p, {"phase": "Failed"})
    client.fail = [ApiError(500, "InternalError", "x")]
    assert not await sm.sync_once()
    assert await sm.sync_once()
    assert client.patches[-1][2]["status"] == {"phase": "Failed"}
    client.fail = [ApiError(404, "NotFound", "gone")]
    sm.set_status(p, {"phase": "Succeeded"})
    assert await sm.sync_once()  # a gone pod is given up, not retried
    await sm.delete_pod(p)
    assert client.deletes == [("p", {"grace_period_seconds": 0, "preconditions": {"uid": "u1"}})]


async def test_final_delete_of_a_reused_name_is_done_not_retried(clock: FakeClock) -> None:
    """The name now belongs to a pod bound elsewhere (node authorization answers 403): since a pod's
    nodeName never changes, ours is gone; the delete must not fail (and be retried forever)."""
    client = FakeClient()
    sm = StatusManager(client, clock=clock)  # type: ignore[arg-type]
    p = pod("u1")
    for code in (403, 404, 409):
        client.fail = [ApiError(code, "x", "not ours")]
        await sm.delete_pod(p)
    client.fail = [ApiError(500, "InternalError", "store down")]
    with pytest.raises(ApiError):
        await sm.delete_pod(p)


def test_node_status_builders() -> None:
    facts = NodeFacts(
        hostname="h",
        cpus=4,
        memory=8 << 30,
        storage=100 << 30,
        kernel="6.1",
        os_image="Debian",
        arch="amd64",
        runc_version="1.1.5",
        addresses=["192.0.2.1"],
    )
    now = datetime(2026, 1, 1, tzinfo=UTC)
    st = build_node_status(facts, port=10250, previous=None, now=now)
    assert st["capacity"] == {
        "cpu": "4",
        "memory": "8388608Ki",
        "pods": "110",
        "ephemeral-storage": "104857600Ki",
    }
    assert st["allocatable"]["memory"] == f"{((8 << 30) - (100 << 20)) // 1024}Ki"
    assert st["nodeInfo"]["containerRuntimeVersion"] == "runc://1.1.5"
    assert st["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10250}}
    assert [a["type"] for a in st["addresses"]] == ["InternalIP", "Hostname"]
    ready = {c["type"]: c for c in st["conditions"]}["Ready"]
    assert ready["status"] == "True" and ready["reason"] == "KubeletReady"
    later = build_node_status(facts, port=10250, previous=st, now=datetime(2026, 1, 2, tzinfo=UTC))
    r2 = {c["type"]: c for c in later["conditions"]}["Ready"]
    assert (
        r2["lastTransitionTime"] == ready["lastTransitionTime"]
        and r2["lastHeartbeatTime"] != ready["lastHeartbeatTime"]
    )
    node = build_node("n", facts, pod_cidr="10.77.0.0/24")
    assert node["spec"]["podCIDR"] == "10.77.0.0/24"
    assert node["metadata"]["labels"]["kubernetes.io/arch"] == "amd64"
    assert meminfo_total("MemTotal:  1024 kB\nMemFree: 1 kB\n") == 1024 * 1024
    assert (
        os_release_name('NAME="Debian"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
        == "Debian GNU/Linux 12 (bookworm)"
    )
