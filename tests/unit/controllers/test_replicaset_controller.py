"""ReplicaSet controller sync() with a fake API client: no server, no sleeps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from peapod.api.errors import ApiError
from peapod.api.resources import ResourceInfo
from peapod.controlplane.controllers.replicaset import ReplicaSetController, calculate_status
from peapod.testing.clock import FakeClock
from tests.unit.controllers.builders import pod

NOW = datetime(2026, 1, 1, 0, 10, tzinfo=UTC)


class FakeApi:
    """Records calls; pod creates fail once ``fail_after`` succeeded (like FakePodControl.Err)."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.fail_after = fail_after
        self.created: list[dict] = []
        self.deleted: list[str] = []
        self.statuses: list[dict] = []
        self.events: list[tuple[str, str]] = []

    async def create(self, info: ResourceInfo, obj: dict, namespace: str | None = None, **_: Any) -> dict:
        if info.resource == "events":
            self.events.append((obj["reason"], obj["message"]))
            return obj
        if self.fail_after is not None and len(self.created) >= self.fail_after:
            raise ApiError(403, "Forbidden", 'pods "x" is forbidden: exceeded quota')
        obj = {**obj, "metadata": {**obj["metadata"], "name": f"rs-{len(self.created)}"}}
        self.created.append(obj)
        return obj

    async def delete(self, info: ResourceInfo, name: str, namespace: str | None = None, **_: Any) -> None:
        self.deleted.append(name)

    async def update(
        self, info: ResourceInfo, obj: dict, *, subresource: str | None = None, **_: Any
    ) -> dict:
        assert subresource == "status"
        self.statuses.append(obj["status"])
        return obj

    async def get(self, info: ResourceInfo, name: str, namespace: str | None = None, **_: Any) -> dict:
        raise ApiError(404, "NotFound", "")


def replicaset(replicas: int) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": "rs",
            "namespace": "default",
            "uid": "rs-uid",
            "generation": 2,
            "resourceVersion": "5",
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": []}},
        },
        "status": {},
    }


def controller(api: FakeApi, rs: dict, pods: list[dict]) -> ReplicaSetController:
    c = ReplicaSetController(api, clock=FakeClock(NOW))  # type: ignore[arg-type]
    c.rs_informer.cache._items["default/rs"] = rs
    for p in pods:
        c.pod_informer.cache._items[f"default/{p['metadata']['name']}"] = p
    return c


async def test_creates_in_slow_start_batches_and_reports_failure() -> None:
    api = FakeApi(fail_after=4)
    c = controller(api, replicaset(10), [])
    with pytest.raises(ApiError):
        await c.sync("default/rs")
    # Batches 1, 2, 4: the third batch had 1 success and 3 failures; nothing attempted after it.
    assert len(api.created) == 4
    assert api.created[0]["metadata"]["generateName"] == "rs-"
    assert api.created[0]["metadata"]["ownerReferences"][0]["uid"] == "rs-uid"
    assert ("SuccessfulCreate", "Created pod: rs-0") in api.events
    assert ("FailedCreate", 'Error creating: pods "x" is forbidden: exceeded quota') in api.events
    status = api.statuses[-1]
    cond = status["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == ("ReplicaFailure", "True", "FailedCreate")
    assert status["observedGeneration"] == 2
    # The 4 successful creates are still expected: a resync before the cache shows them does nothing.
    assert c.expectations.pending("default/rs") == (4, 0)
    api.fail_after = None
    await c.sync("default/rs")
    assert len(api.created) == 4


async def test_deletes_lowest_ranked_and_expects_deletions() -> None:
    api = FakeApi()
    owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs-uid", "controller": True}
    ps = [
        pod("ready", node="n", ready=True, labels={"app": "x"}, owner=owner),
        pod("pending", node="n", phase="Pending", labels={"app": "x"}, owner=owner),
        pod("unassigned", phase="Pending", labels={"app": "x"}, owner=owner),
    ]
    c = controller(api, replicaset(1), ps)
    await c.sync("default/rs")
    assert sorted(api.deleted) == ["pending", "unassigned"]
    assert not c.expectations.satisfied("default/rs")
    c._pod_deleted(ps[2])
    c._pod_deleted(ps[1])
    assert c.expectations.satisfied("default/rs")


def test_calculate_status() -> None:
    rs = replicaset(3)
    rs["spec"]["minReadySeconds"] = 60
    rs["spec"]["template"]["metadata"]["labels"]["tier"] = "web"
    pods = [
        pod("a", ready=True, ready_since="2026-01-01T00:00:00Z", labels={"app": "x", "tier": "web"}),
        pod("b", ready=True, ready_since="2026-01-01T00:09:30Z", labels={"app": "x"}),
        pod("c", labels={"app": "x", "tier": "web"}),
    ]
    st = calculate_status(rs, pods, None, NOW)
    assert st == {
        "replicas": 3,
        "fullyLabeledReplicas": 2,
        "readyReplicas": 2,
        "availableReplicas": 1,
        "observedGeneration": 2,
    }
    rs["status"] = calculate_status(rs, pods[:1], "boom", NOW)
    assert rs["status"]["conditions"][0]["reason"] == "FailedCreate"
    assert "conditions" not in calculate_status(rs, pods, None, NOW)
