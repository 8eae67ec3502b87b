"""Object builders and a small request helper for the in-process API tests."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

CT_JSON = "application/json"
CT_MERGE = "application/merge-patch+json"
CT_STRATEGIC = "application/strategic-merge-patch+json"
CT_JSON_PATCH = "application/json-patch+json"
CT_APPLY = "application/apply-patch+yaml"
TABLE_ACCEPT = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,"
    "application/json"
)


def pod(
    name: str, *, labels: dict[str, str] | None = None, node: str | None = None, **spec: Any
) -> dict[str, Any]:
    s: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}], **spec}
    if node:
        s["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}}, "spec": s}


def deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }


def replicaset(name: str, replicas: int = 1) -> dict[str, Any]:
    d = deployment(name, replicas)
    d["kind"] = "ReplicaSet"
    return d


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": dict(data)}


def node(name: str, address: str = "127.0.0.1", port: int | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"addresses": [{"type": "InternalIP", "address": address}]}
    if port is not None:
        status["daemonEndpoints"] = {"kubeletEndpoint": {"Port": port}}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": status,
    }


class Resp:
    def __init__(self, status: int, body: bytes, headers: Any) -> None:
        self.status = status
        self.body = body
        self.headers = headers

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Resp {self.status} {self.body[:400]!r}>"


async def call(
    session: aiohttp.ClientSession,
    method: str,
    path: str,
    body: Any = None,
    *,
    ctype: str = CT_JSON,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> Resp:
    hdrs = dict(headers or {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
    if data is not None:
        hdrs.setdefault("Content-Type", ctype)
    async with session.request(method, path, data=data, headers=hdrs) as r:
        return Resp(r.status, await r.read(), r.headers)


async def watch_events(
    session: aiohttp.ClientSession,
    path: str,
    *,
    count: int | None = None,
    headers: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Read watch events until the server closes the stream (use timeoutSeconds) or ``count`` arrived."""
    out: list[dict[str, Any]] = []
    async with session.get(path, headers=headers) as r:
        assert r.status == 200, await r.text()
        async for line in r.content:
            if line.strip():
                out.append(json.loads(line))
                if count is not None and len(out) >= count:
                    break
    return out
