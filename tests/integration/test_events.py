"""events.k8s.io/v1 Events share storage with core/v1 Events, converted both ways."""

from __future__ import annotations

from typing import Any

from tests.integration.helpers import call, watch_events

CORE = "/api/v1/namespaces/default/events"
NEW = "/apis/events.k8s.io/v1/namespaces/default/events"


async def test_events_v1_read_as_core(http: Any, server: Any) -> None:
    body = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "e1"},
        "regarding": {"kind": "Pod", "name": "p", "namespace": "default", "uid": "u1"},
        "note": "Started container",
        "reason": "Started",
        "type": "Normal",
        "action": "Start",
        "reportingController": "peapod/agent",
        "reportingInstance": "node-1",
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "series": {"count": 3, "lastObservedTime": "2026-01-01T00:01:00.000000Z"},
    }
    r = await call(http, "POST", NEW, body)
    assert r.status == 201, r
    assert r.json["apiVersion"] == "events.k8s.io/v1" and r.json["note"] == "Started container"
    core = (await call(http, "GET", f"{CORE}/e1")).json
    assert core["apiVersion"] == "v1"
    assert core["involvedObject"] == body["regarding"]
    assert core["message"] == "Started container"
    assert core["reportingComponent"] == "peapod/agent" and core["reportingInstance"] == "node-1"
    assert not core.get("source") and not core.get("count")
    assert core["series"]["count"] == 3 and core["eventTime"] == body["eventTime"]
    assert b'"regarding"' not in (await server.raw("/registry/events/default/e1")), "stored in core form"
    # a describe-style field selector on the core API finds it
    r = await call(
        http, "GET", f"{CORE}?fieldSelector=involvedObject.name%3Dp,involvedObject.namespace%3Ddefault"
    )
    assert [i["metadata"]["name"] for i in r.json["items"]] == ["e1"]


async def test_core_event_read_as_events_v1(http: Any) -> None:
    body = {
        "metadata": {"name": "c1"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
        "reason": "Pulled",
        "message": "pulled image",
        "type": "Normal",
        "count": 4,
        "source": {"component": "kubelet"},
        "firstTimestamp": "2026-01-01T00:00:00Z",
        "lastTimestamp": "2026-01-01T00:05:00Z",
    }
    assert (await call(http, "POST", CORE, body)).status == 201
    bad = {**body, "metadata": {"name": "c2"}}
    r = await call(
        http,
        "POST",
        NEW,
        {
            "metadata": {"name": "bad"},
            "regarding": {"name": "p"},
            "reason": "R",
            "note": "n",
            "type": "Normal",
            "action": "A",
            "reportingController": "x",
            "reportingInstance": "y",
            "deprecatedCount": 3,
            "eventTime": "2026-01-01T00:00:00.000000Z",
        },
    )
    assert r.status == 422 and "count: Invalid value" in r.json["message"], "validated in its own version"
    assert bad
    ev = (await call(http, "GET", f"{NEW}/c1")).json
    assert ev["apiVersion"] == "events.k8s.io/v1" and ev["kind"] == "Event"
    assert ev["regarding"]["name"] == "p" and ev["note"] == "pulled image"
    assert ev["deprecatedCount"] == 4 and ev["deprecatedSource"] == {"component": "kubelet"}
    assert ev["deprecatedFirstTimestamp"] == "2026-01-01T00:00:00Z"
    assert "involvedObject" not in ev and "message" not in ev
    lst = (await call(http, "GET", NEW)).json
    assert lst["kind"] == "EventList" and lst["apiVersion"] == "events.k8s.io/v1"
    evs = await watch_events(http, f"{NEW}?watch=1&timeoutSeconds=1")
    assert evs[0]["object"]["apiVersion"] == "events.k8s.io/v1" and evs[0]["object"]["note"] == "pulled image"
