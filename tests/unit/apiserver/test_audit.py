"""Audit log: Events for mutating requests, none for reads, rotation, 0600 files."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from peapod.api.errors import ApiError
from peapod.apiserver.audit import AuditLog, audit_middleware
from peapod.apiserver.authz import DECISION, Decision
from peapod.apiserver.negotiation import status_response
from peapod.testing.clock import FakeClock


def _clock() -> Any:
    return FakeClock(datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC))


@web.middleware
async def fake_auth(request: web.Request, handler: Any) -> web.StreamResponse:
    """Stands in for authentication + authorization: user from a header, 'deny' refuses."""
    who = request.headers.get("X-User")
    if who is None:
        return web.json_response({"kind": "Status", "code": 401}, status=401)
    request["user"] = {"username": who, "groups": ["g1", "system:authenticated"], "uid": ""}
    allowed = who != "deny"
    request[DECISION] = Decision(allowed, "RBAC: allowed by test" if allowed else "")
    if not allowed:
        err = ApiError(403, "Forbidden", 'configmaps "x" is forbidden: no', {"name": "x", "kind": "configmaps"})
        return status_response(err)
    return await handler(request)


async def _create(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response({"kind": "ConfigMap", "metadata": {"name": body["metadata"]["name"]}}, status=201)


async def _ok(request: web.Request) -> web.Response:
    return web.json_response({"kind": "ConfigMap", "metadata": {"name": request.match_info["name"]}})


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[TestClient, AuditLog, Path]]:
    path = tmp_path / "audit" / "audit.log"
    audit = AuditLog(path, max_size_mb=0.002, max_backups=2)  # ~2 KB per file
    audit.start()
    app = web.Application(middlewares=[audit_middleware(audit, _clock()), fake_auth])
    app.router.add_post("/api/v1/namespaces/{ns}/configmaps", _create)
    app.router.add_route("*", "/api/v1/namespaces/{ns}/configmaps/{name}", _ok)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client, audit, path
    finally:
        await client.close()
        audit.stop()


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _all_events(path: Path) -> list[dict[str, Any]]:
    """Oldest first, across the rotated files."""
    files = [path.with_name(f"{path.name}.{i}") for i in (2, 1)] + [path]
    return [e for f in files if f.exists() for e in _events(f)]


async def test_mutating_requests_are_recorded(setup: tuple[TestClient, AuditLog, Path]) -> None:
    client, audit, path = setup
    r = await client.post("/api/v1/namespaces/dev/configmaps?fieldManager=kubectl-create",
                          json={"metadata": {"name": "cm1"}}, headers={"X-User": "alice", "User-Agent": "kubectl/v1"})
    assert r.status == 201 and r.headers["Audit-Id"]
    await client.get("/api/v1/namespaces/dev/configmaps/cm1", headers={"X-User": "alice"})  # a read: not recorded
    await client.delete("/api/v1/namespaces/dev/configmaps/cm1", headers={"X-User": "alice"})
    await client.patch("/api/v1/namespaces/dev/configmaps/x", headers={"X-User": "deny"})
    await client.put("/api/v1/namespaces/dev/configmaps/x")  # no credentials: 401
    audit.stop()
    created, deleted, refused, unauthenticated = _all_events(path)
    assert created == {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": r.headers["Audit-Id"],
        "stage": "ResponseComplete", "requestURI": "/api/v1/namespaces/dev/configmaps?fieldManager=kubectl-create",
        "verb": "create", "user": {"username": "alice", "groups": ["g1", "system:authenticated"]},
        "sourceIPs": ["127.0.0.1"], "userAgent": "kubectl/v1",
        "objectRef": {"resource": "configmaps", "namespace": "dev", "name": "cm1", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 201},
        "requestReceivedTimestamp": "2026-01-02T03:04:05.678901Z", "stageTimestamp": "2026-01-02T03:04:05.678901Z",
        "annotations": {"authorization.k8s.io/decision": "allow",
                        "authorization.k8s.io/reason": "RBAC: allowed by test"},
    }
    assert (deleted["verb"], deleted["objectRef"]["name"], deleted["responseStatus"]["code"]) == ("delete", "cm1", 200)
    assert refused["verb"] == "patch" and refused["user"]["username"] == "deny"
    assert refused["responseStatus"] == {"metadata": {}, "code": 403, "status": "Failure", "reason": "Forbidden",
                                         "message": 'configmaps "x" is forbidden: no',
                                         "details": {"name": "x", "kind": "configmaps"}}
    assert refused["annotations"]["authorization.k8s.io/decision"] == "forbid"
    assert unauthenticated["user"] == {} and unauthenticated["responseStatus"]["code"] == 401
    assert path.stat().st_mode & 0o777 == 0o600


async def test_rotation_keeps_max_backups(setup: tuple[TestClient, AuditLog, Path]) -> None:
    client, audit, path = setup
    for i in range(30):  # ~700 bytes each: ~21 KB through 2 KB files
        await client.post("/api/v1/namespaces/dev/configmaps", json={"metadata": {"name": f"cm{i}"}},
                          headers={"X-User": "alice"})
    audit.stop()
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["audit.log", "audit.log.1", "audit.log.2"]
    names = [e["objectRef"]["name"] for e in _all_events(path)]
    assert names == [f"cm{i}" for i in range(30 - len(names), 30)]  # the newest, in order, none torn
    assert all((path.parent / f).stat().st_mode & 0o777 == 0o600 for f in files)


def test_negative_limits_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        AuditLog(tmp_path / "a.log", max_size_mb=-1)
