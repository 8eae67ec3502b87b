"""WATCH: synthetic initial events, resume from a resourceVersion, 410, selectors, bookmarks."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from tests.integration.conftest import ServerThread
from tests.integration.helpers import CT_MERGE, TABLE_ACCEPT, call, configmap, watch_events

NS = "/api/v1/namespaces/default"


async def test_watch_from_now_and_resume(http: Any) -> None:
    r = await call(http, "POST", f"{NS}/configmaps", configmap("a"))
    rv_a = r.json["metadata"]["resourceVersion"]
    # absent resourceVersion: ADDED for the current state first
    evs = await watch_events(http, f"{NS}/configmaps?watch=true&timeoutSeconds=1")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in evs] == [("ADDED", "a")]

    await call(http, "PATCH", f"{NS}/configmaps/a", {"data": {"x": "1"}}, ctype=CT_MERGE)
    await call(http, "POST", f"{NS}/configmaps", configmap("b"))
    await call(http, "DELETE", f"{NS}/configmaps/a")
    evs = await watch_events(http, f"{NS}/configmaps?watch=1&resourceVersion={rv_a}&timeoutSeconds=1")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in evs] == [
        ("MODIFIED", "a"),
        ("ADDED", "b"),
        ("DELETED", "a"),
    ]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in evs]
    assert rvs == sorted(rvs) and rvs[0] > int(rv_a)
    # resume from the middle: strictly after
    evs2 = await watch_events(http, f"{NS}/configmaps?watch=1&resourceVersion={rvs[0]}&timeoutSeconds=1")
    assert [e["type"] for e in evs2] == ["ADDED", "DELETED"]


async def test_live_events_and_legacy_watch_path(http: Any) -> None:
    r = await call(http, "GET", f"{NS}/configmaps")
    rv = r.json["metadata"]["resourceVersion"]
    task = asyncio.create_task(
        watch_events(
            http,
            f"/api/v1/watch/namespaces/default/configmaps?resourceVersion={rv}&timeoutSeconds=5",
            count=2,
        )
    )
    await asyncio.sleep(0.2)
    await call(http, "POST", f"{NS}/configmaps", configmap("live"))
    await call(http, "POST", "/api/v1/namespaces/kube-system/configmaps", configmap("elsewhere"))
    await call(http, "DELETE", f"{NS}/configmaps/live")
    evs = await asyncio.wait_for(task, 10)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in evs] == [
        ("ADDED", "live"),
        ("DELETED", "live"),
    ]


async def test_watch_named_object(http: Any) -> None:
    await call(http, "POST", f"{NS}/configmaps", configmap("one"))
    await call(http, "POST", f"{NS}/configmaps", configmap("two"))
    evs = await watch_events(
        http, f"{NS}/configmaps?watch=1&fieldSelector=metadata.name%3Dtwo&resourceVersion=0&timeoutSeconds=1"
    )
    assert [e["object"]["metadata"]["name"] for e in evs] == ["two"]
    evs = await watch_events(http, "/api/v1/watch/namespaces/default/configmaps/one?timeoutSeconds=1")
    assert [e["object"]["metadata"]["name"] for e in evs] == ["one"]


async def test_selector_transitions(http: Any) -> None:
    body = configmap("sel")
    body["metadata"]["labels"] = {"app": "x"}
    r = await call(http, "POST", f"{NS}/configmaps", body)
    rv = r.json["metadata"]["resourceVersion"]
    await call(http, "PATCH", f"{NS}/configmaps/sel", {"metadata": {"labels": {"app": "y"}}}, ctype=CT_MERGE)
    await call(http, "PATCH", f"{NS}/configmaps/sel", {"data": {"k": "v"}}, ctype=CT_MERGE)
    await call(http, "PATCH", f"{NS}/configmaps/sel", {"metadata": {"labels": {"app": "x"}}}, ctype=CT_MERGE)
    evs = await watch_events(
        http, f"{NS}/configmaps?watch=1&labelSelector=app%3Dx&resourceVersion={rv}&timeoutSeconds=1"
    )
    assert [e["type"] for e in evs] == ["DELETED", "ADDED"]
    assert evs[0]["object"]["metadata"]["labels"] == {"app": "x"}, "leaving the selector sends the old object"
    assert int(evs[0]["object"]["metadata"]["resourceVersion"]) > int(rv)


async def test_bookmarks_and_initial_events(tmp_path: Path) -> None:
    srv = ServerThread(tmp_path, bookmark_interval=0.3)
    srv.start()
    try:
        async with aiohttp.ClientSession(base_url=srv.url) as http:
            await call(http, "POST", f"{NS}/configmaps", configmap("init"))
            evs = await watch_events(
                http,
                f"{NS}/configmaps?watch=1&allowWatchBookmarks=true"
                "&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
                "&timeoutSeconds=1",
            )
            assert evs[0]["type"] == "ADDED" and evs[0]["object"]["metadata"]["name"] == "init"
            assert evs[1]["type"] == "BOOKMARK"
            assert evs[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
            assert int(evs[1]["object"]["metadata"]["resourceVersion"]) >= int(
                evs[0]["object"]["metadata"]["resourceVersion"]
            )
            assert any(e["type"] == "BOOKMARK" for e in evs[2:]), "periodic bookmarks"
            r = await call(http, "GET", f"{NS}/configmaps?watch=1&sendInitialEvents=true")
            assert r.status == 400
            evs = await watch_events(
                http,
                f"{NS}/configmaps?watch=1&sendInitialEvents=false"
                "&resourceVersionMatch=NotOlderThan&timeoutSeconds=1",
            )
            assert [e["type"] for e in evs if e["type"] != "BOOKMARK"] == [], "no initial events"
            assert all(e["type"] != "ERROR" for e in evs)
    finally:
        srv.stop()


async def test_too_old_resource_version_410(tmp_path: Path) -> None:
    srv = ServerThread(tmp_path, watch_cache_capacity=4)
    srv.start()
    try:
        async with aiohttp.ClientSession(base_url=srv.url) as http:
            r = await call(http, "POST", f"{NS}/configmaps", configmap("old"))
            rv = r.json["metadata"]["resourceVersion"]
            for i in range(12):
                await call(http, "PATCH", f"{NS}/configmaps/old", {"data": {"i": str(i)}}, ctype=CT_MERGE)
            await asyncio.sleep(0.2)
            evs = await watch_events(http, f"{NS}/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=2")
            assert len(evs) == 1 and evs[0]["type"] == "ERROR"
            assert evs[0]["object"]["code"] == 410 and evs[0]["object"]["reason"] == "Expired"
    finally:
        srv.stop()


async def test_many_watchers_share_one_store_watch(http: Any, server: Any) -> None:
    r = await call(http, "GET", f"{NS}/configmaps")
    rv = r.json["metadata"]["resourceVersion"]
    tasks = [
        asyncio.create_task(
            watch_events(http, f"{NS}/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=10", count=1)
        )
        for _ in range(50)
    ]
    await asyncio.sleep(0.5)
    await call(http, "POST", f"{NS}/configmaps", configmap("fan"))
    results = await asyncio.wait_for(asyncio.gather(*tasks), 20)
    assert all(res[0]["object"]["metadata"]["name"] == "fan" for res in results)
    from peapod.apiserver.app import CTX

    caches = server.app[CTX].caches.caches
    assert len([p for p in caches if p.startswith("/registry/configmaps")]) == 1


async def test_table_watch(http: Any) -> None:
    from tests.integration.helpers import pod

    await call(http, "POST", f"{NS}/pods", pod("tw"))
    evs = await watch_events(http, f"{NS}/pods?watch=1&timeoutSeconds=1", headers={"Accept": TABLE_ACCEPT})
    assert evs[0]["type"] == "ADDED" and evs[0]["object"]["kind"] == "Table"
    assert evs[0]["object"]["rows"][0]["cells"][0] == "tw"


async def test_watch_timeout_closes(http: Any) -> None:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    async with http.get(f"{NS}/configmaps?watch=1&resourceVersion=1&timeoutSeconds=1") as r:
        body = await r.read()
    assert loop.time() - t0 < 5
    assert all(
        json.loads(line)["type"] in ("ADDED", "MODIFIED", "DELETED") for line in body.splitlines() if line
    )
