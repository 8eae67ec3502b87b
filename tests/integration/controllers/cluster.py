"""Test helpers: running controllers as tasks, a fake kubelet, polling for a condition."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from peapod.api.errors import ApiError
from peapod.api.resources import api_path, resource
from peapod.client.rest import ApiClient
from peapod.clock import RealClock, rfc3339
from peapod.testing import waiting

PODS = resource("", "v1", "pods")
NODES = resource("", "v1", "nodes")
RS = resource("apps", "v1", "replicasets")
DEPLOY = resource("apps", "v1", "deployments")
EVENTS = resource("", "v1", "events")
Obj = dict[str, Any]


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 20.0, what: str = "") -> Any:
    """Poll ``check`` (real time: the server does real I/O); API errors and failed asserts mean "not yet"."""
    return await waiting.eventually(check, timeout, what or str(check), retry_on=(ApiError, AssertionError))


@contextlib.asynccontextmanager
async def running(*coros: Awaitable[Any]) -> AsyncIterator[list[asyncio.Task[Any]]]:
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        yield tasks
    finally:
        for t in tasks:
            t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
                raise r


class FakeKubelet:
    """Binds pending pods to its node and reports them Running (and Ready unless told otherwise);
    finishes deletions at once (grace 0), as a kubelet would after stopping the containers."""

    def __init__(
        self, client: ApiClient, node: str = "node-1", ready: Callable[[Obj], bool] = lambda p: True
    ) -> None:
        self.client = client
        self.node = node
        self.ready = ready

    async def run(self) -> None:
        await self.client.create(
            NODES,
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": self.node},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]},
            },
        )
        while True:
            for pod in (await self.client.list(PODS)).get("items", []):
                try:
                    await self._handle(pod)
                except ApiError as e:
                    if e.code not in (404, 409, 422):
                        raise
            await asyncio.sleep(0.03)

    async def _handle(self, pod: Obj) -> None:
        md, spec = pod["metadata"], pod.get("spec") or {}
        ns, name = md["namespace"], md["name"]
        if md.get("deletionTimestamp"):
            await self.client.delete(PODS, name, ns, grace_period_seconds=0)
            return
        if not spec.get("nodeName"):
            body = {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": name, "namespace": ns},
                "target": {"apiVersion": "v1", "kind": "Node", "name": self.node},
            }
            await self.client.request("POST", api_path(PODS, ns, name, "binding"), body=body)
            return
        if spec["nodeName"] != self.node or (pod.get("status") or {}).get("phase") == "Running":
            return
        now = rfc3339(RealClock().now())
        ready = "True" if self.ready(pod) else "False"
        pod["status"] = {
            **(pod.get("status") or {}),
            "phase": "Running",
            "startTime": now,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
                {"type": "Ready", "status": ready, "lastTransitionTime": now},
            ],
        }
        await self.client.update(PODS, pod, subresource="status")


async def pods(client: ApiClient, selector: str, ns: str = "default") -> list[Obj]:
    return (await client.list(PODS, ns, label_selector=selector)).get("items", [])


async def events(client: ApiClient, name: str, ns: str = "default") -> list[Obj]:
    items = (await client.list(EVENTS, ns)).get("items", [])
    return [e for e in items if e["involvedObject"]["name"] == name]
