"""Subresources: scale, binding, finalize; node proxy for log/exec (HTTP streaming and upgrades)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.integration.conftest import ServerThread
from tests.integration.helpers import CT_JSON_PATCH, CT_MERGE, CT_STRATEGIC, call, deployment, node, pod

NS = "/api/v1/namespaces/default"
DEP = "/apis/apps/v1/namespaces/default/deployments"


async def test_scale(http: Any) -> None:
    await call(http, "POST", DEP, deployment("web", 2))
    r = await call(http, "GET", f"{DEP}/web/scale")
    assert r.status == 200
    scale = r.json
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"]["replicas"] == 2 and scale["status"]["selector"] == "app=web"
    r = await call(http, "PATCH", f"{DEP}/web/scale", {"spec": {"replicas": 4}}, ctype=CT_MERGE)
    assert r.status == 200 and r.json["spec"]["replicas"] == 4
    r = await call(http, "PATCH", f"{DEP}/web/scale", {"spec": {"replicas": 5}}, ctype=CT_STRATEGIC)
    assert r.json["spec"]["replicas"] == 5
    r = await call(
        http,
        "PATCH",
        f"{DEP}/web/scale",
        [{"op": "replace", "path": "/spec/replicas", "value": 6}],
        ctype=CT_JSON_PATCH,
    )
    assert r.json["spec"]["replicas"] == 6
    scale = r.json
    scale["spec"]["replicas"] = 1
    r = await call(http, "PUT", f"{DEP}/web/scale", scale)
    assert r.status == 200 and r.json["spec"]["replicas"] == 1
    r = await call(http, "PUT", f"{DEP}/web/scale", scale)
    assert r.status == 409, "stale resourceVersion on Scale"
    r = await call(http, "PATCH", f"{DEP}/web/scale", {"spec": {"replicas": -1}}, ctype=CT_MERGE)
    assert r.status == 422
    d = (await call(http, "GET", f"{DEP}/web")).json
    assert d["spec"]["replicas"] == 1 and d["metadata"]["generation"] == 5
    r = await call(http, "GET", "/apis/apps/v1/namespaces/default/replicasets/none/scale")
    assert r.status == 404


async def test_binding(http: Any) -> None:
    await call(http, "POST", f"{NS}/pods", pod("b"))
    body = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "b"},
        "target": {"kind": "Node", "name": "n1"},
    }
    r = await call(http, "POST", f"{NS}/pods/b/binding", body)
    assert r.status == 201 and r.json["status"] == "Success", r
    p = (await call(http, "GET", f"{NS}/pods/b")).json
    assert p["spec"]["nodeName"] == "n1"
    assert {"type": "PodScheduled", "status": "True"}.items() <= p["status"]["conditions"][0].items()
    r = await call(http, "POST", f"{NS}/pods/b/binding", body)
    assert r.status == 409, r
    r = await call(http, "POST", f"{NS}/pods/missing/binding", {**body, "metadata": {"name": "missing"}})
    assert r.status == 404
    r = await call(http, "POST", f"{NS}/pods/b/binding", {"target": {}})
    assert r.status == 422


# -- node proxy ---------------------------------------------------------------------------------


@pytest.fixture
async def fake_node() -> AsyncIterator[tuple[int, list[web.Request]]]:
    """A stand-in node agent (plain HTTP) serving logs and a raw upgrade echo."""
    seen: list[web.Request] = []

    async def log(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        resp = web.StreamResponse()
        resp.content_type = "text/plain"
        await resp.prepare(request)
        for i in range(3):
            await resp.write(f"line {i} {request.query.get('container', '')}\n".encode())
            await asyncio.sleep(0.05)
        return resp

    async def exec_(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        ws = web.WebSocketResponse(protocols=("v5.channel.k8s.io",))
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(b"\x01" + msg.data[1:].upper())
                await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/default/pods/{name}/log", log)
    app.router.add_get("/api/v1/namespaces/default/pods/{name}/exec", exec_)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield port, seen
    finally:
        await runner.cleanup()


async def test_node_proxy(tmp_path: Any, fake_node: tuple[int, list[web.Request]]) -> None:
    port, seen = fake_node
    srv = ServerThread(tmp_path, node_scheme="http", node_auth_header="Bearer node-secret")
    srv.start()
    try:
        async with aiohttp.ClientSession(base_url=srv.url) as http:
            await call(http, "POST", f"{NS}/pods", pod("unsched"))
            r = await call(http, "GET", f"{NS}/pods/unsched/log")
            assert r.status == 400 and "does not have a host assigned" in r.json["message"]
            await call(http, "POST", "/api/v1/nodes", node("n-noport"))
            await call(http, "POST", f"{NS}/pods", pod("noport", node="n-noport"))
            r = await call(http, "GET", f"{NS}/pods/noport/log")
            assert r.status == 503, r

            await call(http, "POST", "/api/v1/nodes", node("n1", port=port))
            await call(http, "POST", f"{NS}/pods", pod("p", node="n1"))
            async with http.get(f"{NS}/pods/p/log?container=c&follow=true") as resp:
                assert resp.status == 200
                lines = [line async for line in resp.content]
            assert lines == [b"line 0 c\n", b"line 1 c\n", b"line 2 c\n"]
            assert seen[-1].headers["Authorization"] == "Bearer node-secret"

            async with http.ws_connect(
                f"{NS}/pods/p/exec?command=cat&stdin=true", protocols=("v5.channel.k8s.io",)
            ) as ws:
                assert ws.protocol == "v5.channel.k8s.io"
                await ws.send_bytes(b"\x00hello")
                msg = await ws.receive(timeout=5)
                assert msg.type == aiohttp.WSMsgType.BINARY and msg.data == b"\x01HELLO"
    finally:
        srv.stop()


async def _spdy_node(ssl_ctx: Any, seen: list[bytes]) -> tuple[asyncio.Server, int]:
    """A raw node agent over TLS: answers an SPDY/3.1 upgrade with 101, then echoes bytes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head)
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
            b"X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
        )
        while data := await reader.read(1024):
            writer.write(data[::-1])
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ssl_ctx)
    return server, server.sockets[0].getsockname()[1]


async def test_spdy_upgrade_over_tls(tmp_path: Any) -> None:
    import ssl

    from peapod.apiserver.certs import ensure_tls

    files = ensure_tls(tmp_path / "tls", ["127.0.0.1"])
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(files.cert, files.key)
    client_ctx = ssl.create_default_context(cafile=str(files.ca_cert))
    seen: list[bytes] = []
    node_server, port = await _spdy_node(server_ctx, seen)
    srv = ServerThread(tmp_path, node_client_ssl=client_ctx)
    srv.start()
    try:
        async with aiohttp.ClientSession(base_url=srv.url) as http:
            await call(http, "POST", "/api/v1/nodes", node("n1", port=port))
            await call(http, "POST", f"{NS}/pods", pod("p", node="n1"))
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(
            b"POST /api/v1/namespaces/default/pods/p/exec?command=sh&stdin=true HTTP/1.1\r\n"
            b"Host: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
            b"X-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101"), head
        assert b"Upgrade: SPDY/3.1" in head
        writer.write(b"\x80\x03\x00\x01abc")
        got = await asyncio.wait_for(reader.readexactly(7), 10)
        assert got == b"cba\x01\x00\x03\x80"
        writer.close()
        assert seen and seen[0].startswith(
            b"POST /api/v1/namespaces/default/pods/p/exec?command=sh&stdin=true "
        )
    finally:
        srv.stop()
        node_server.close()
        await node_server.wait_closed()


async def test_ephemeral_containers(http: Any) -> None:
    await call(http, "POST", f"{NS}/pods", pod("e"))
    patch = {
        "spec": {
            "ephemeralContainers": [{"name": "debug", "image": "busybox", "targetContainerName": "c"}],
            "activeDeadlineSeconds": 3,
        }
    }
    r = await call(http, "PATCH", f"{NS}/pods/e/ephemeralcontainers", patch, ctype=CT_STRATEGIC)
    assert r.status == 200, r
    assert [c["name"] for c in r.json["spec"]["ephemeralContainers"]] == ["debug"]
    assert "activeDeadlineSeconds" not in r.json["spec"], "only ephemeralContainers change"
    r = await call(http, "GET", f"{NS}/pods/e/ephemeralcontainers")
    assert r.status == 200 and r.json["spec"]["ephemeralContainers"][0]["name"] == "debug"
    r = await call(http, "POST", f"{NS}/serviceaccounts/default/token", {"spec": {}})
    assert r.status == 404, "TokenRequest is not served yet"
