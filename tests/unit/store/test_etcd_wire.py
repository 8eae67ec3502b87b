"""EtcdStore's wire mapping and failover rules, against in-process fake gateways (no etcd needed)."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from peapod.store.base import (
    ConflictError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    StoreUnavailableError,
)
from peapod.store.etcd import EtcdStore, event_from_wire, prefix_end


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def test_prefix_end() -> None:
    assert prefix_end(b"/registry/pods/") == b"/registry/pods0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"
    assert prefix_end(b"") == b"\0"


def test_put_event_omits_defaults() -> None:
    # etcd's gateway leaves out type PUT (enum 0) and an empty value.
    ev = event_from_wire(
        {"kv": {"key": b64("/a"), "create_revision": "5", "mod_revision": "5", "version": "1"}}
    )
    assert ev.type == "PUT" and ev.created and ev.prev is None
    assert ev.kv == KeyValue("/a", b"", 5, 5)


def test_update_event_has_prev() -> None:
    raw = {
        "kv": {
            "key": b64("/a"),
            "create_revision": "5",
            "mod_revision": "7",
            "version": "2",
            "value": b64("x"),
        },
        "prev_kv": {"key": b64("/a"), "create_revision": "5", "mod_revision": "5", "version": "1"},
    }
    ev = event_from_wire(raw)
    assert not ev.created and ev.revision == 7
    assert ev.prev == KeyValue("/a", b"", 5, 5)


def test_delete_event_carries_last_value_and_delete_revision() -> None:
    raw = {
        "type": "DELETE",
        "kv": {"key": b64("/a"), "mod_revision": "9"},
        "prev_kv": {"key": b64("/a"), "create_revision": "5", "mod_revision": "7", "value": b64("x")},
    }
    ev = event_from_wire(raw)
    assert ev.type == "DELETE" and ev.revision == 9
    assert ev.kv == KeyValue("/a", b"x", 5, 9)
    assert ev.prev == KeyValue("/a", b"x", 5, 7)


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here: connections are refused
    return f"http://127.0.0.1:{port}"


Handler = Callable[[dict], tuple[int, dict]]


@pytest.fixture
async def gateway() -> AsyncIterator[Callable[[Handler], TestServer]]:
    """Start fake gateways whose answers come from a function of (path, body)."""
    servers: list[TestServer] = []

    async def make(handler: Callable[[str, dict], tuple[int, dict]]) -> TestServer:
        async def handle(request: web.Request) -> web.Response:
            status, body = handler(request.path, await request.json())
            server.calls.append(request.path)  # type: ignore[attr-defined]
            return web.json_response(body, status=status)

        app = web.Application()
        app.router.add_post("/{tail:.*}", handle)
        server = TestServer(app, host="127.0.0.1")
        server.calls = []  # type: ignore[attr-defined]
        await server.start_server()
        servers.append(server)
        return server

    yield make  # type: ignore[misc]
    for s in servers:
        await s.close()


def url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


HEADER = {"header": {"revision": "12"}}


async def test_reads_fail_over_from_a_dead_endpoint(gateway) -> None:
    live = await gateway(lambda path, body: (200, HEADER))
    dead = closed_port_url()
    store = await EtcdStore.open([dead, url(live)], retry_window=1)
    try:
        assert store.preferred_endpoint == url(live)
        assert await store.current_revision() == 12
        assert await store.get("/nope") is None
    finally:
        await store.close()


async def test_no_leader_answer_moves_even_a_write_to_the_next_member(gateway) -> None:
    cut_off = await gateway(lambda path, body: (503, {"error": "etcdserver: no leader", "code": 14}))
    ok = await gateway(lambda path, body: (200, {**HEADER, "succeeded": False}))
    store = EtcdStore([url(cut_off), url(ok)], aiohttp.ClientSession(), retry_window=1)
    try:
        with pytest.raises(KeyExistsError):
            await store.create("/a", b"x")
        assert cut_off.calls == ["/v3/kv/txn"] and ok.calls == ["/v3/kv/txn"]
    finally:
        await store.close()


async def test_write_with_unknown_outcome_is_retried_elsewhere(gateway) -> None:
    slow = await gateway(lambda path, body: (503, {"error": "etcdserver: request timed out", "code": 14}))
    other = await gateway(lambda path, body: (200, {**HEADER, "succeeded": True}))
    store = EtcdStore([url(slow), url(other)], aiohttp.ClientSession(), retry_window=1)
    try:
        kv = await store.create("/a", b"x")  # the guard held on retry: the first try did not apply
        assert kv.mod_revision == 12
        assert slow.calls == ["/v3/kv/txn"] and other.calls == ["/v3/kv/txn"]
        assert store.preferred_endpoint == url(other)
    finally:
        await store.close()


async def test_failed_guard_after_unknown_outcome_is_unavailable_not_a_conflict(gateway) -> None:
    # The first attempt may have created the key itself: "exists" on the retry proves nothing.
    slow = await gateway(lambda path, body: (504, {"error": "context deadline exceeded", "code": 4}))
    other = await gateway(lambda path, body: (200, {**HEADER, "succeeded": False}))
    store = EtcdStore([url(slow), url(other)], aiohttp.ClientSession(), retry_window=1)
    try:
        with pytest.raises(StoreUnavailableError, match="may or may not"):
            await store.create("/a", b"x")
        with pytest.raises(KeyExistsError):  # without an unknown outcome first, the answer is plain
            await store.create("/a", b"x")
    finally:
        await store.close()


async def test_unreachable_cluster_raises_unavailable() -> None:
    with pytest.raises(StoreUnavailableError):
        await EtcdStore.open([closed_port_url(), closed_port_url()], retry_window=0.2)


async def test_failed_update_tells_conflict_from_missing(gateway) -> None:
    kv = {"key": b64("/a"), "create_revision": "3", "mod_revision": "8", "value": b64("v")}
    answers = iter(
        [
            {**HEADER, "responses": [{"response_range": {"header": {}, "kvs": [kv], "count": "1"}}]},
            {**HEADER, "responses": [{"response_range": {"header": {}}}]},
        ]
    )
    sent: list[dict] = []

    def handler(path: str, body: dict) -> tuple[int, dict]:
        sent.append(body)
        return 200, next(answers)

    server = await gateway(handler)
    store = EtcdStore([url(server)], aiohttp.ClientSession(), retry_window=1)
    try:
        with pytest.raises(ConflictError) as err:
            await store.update("/a", b"w", 7)
        assert err.value.current == KeyValue("/a", b"v", 3, 8)
        with pytest.raises(KeyNotFoundError):
            await store.update("/a", b"w", 7)
        assert json.dumps(sent[0]["compare"], sort_keys=True) == json.dumps(
            [
                {"key": b64("/a"), "target": "CREATE", "result": "GREATER", "create_revision": "0"},
                {"key": b64("/a"), "target": "MOD", "result": "EQUAL", "mod_revision": "7"},
            ],
            sort_keys=True,
        )
    finally:
        await store.close()
