"""The official ``kubernetes`` Python client, unmodified, against the in-process server."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException


def _pod(name: str, **labels: str) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels or None),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
    )


def test_core_crud(kube: Any) -> None:
    core = client.CoreV1Api(kube)
    ns = core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="py")))
    assert ns.status.phase == "Active"
    created = core.create_namespaced_pod("py", _pod("p1", app="x"))
    assert created.metadata.uid and created.status.phase == "Pending"
    core.create_namespaced_pod("py", _pod("p2", app="y"))
    got = core.read_namespaced_pod("p1", "py")
    assert got.metadata.uid == created.metadata.uid
    names = [p.metadata.name for p in core.list_namespaced_pod("py", label_selector="app=x").items]
    assert names == ["p1"]
    patched = core.patch_namespaced_pod("p1", "py", {"metadata": {"labels": {"extra": "1"}}})
    assert patched.metadata.labels == {"app": "x", "extra": "1"}
    got = core.read_namespaced_pod("p1", "py")
    got.metadata.annotations = {"note": "hi"}
    replaced = core.replace_namespaced_pod("p1", "py", got)
    assert replaced.metadata.annotations == {"note": "hi"}
    with pytest.raises(ApiException) as e:
        core.replace_namespaced_pod("p1", "py", got)  # stale resourceVersion
    assert e.value.status == 409
    with pytest.raises(ApiException) as e:
        core.create_namespaced_pod("py", _pod("p1"))
    assert e.value.status == 409
    bad = _pod("bad")
    bad.spec.containers[0].image = None
    with pytest.raises(ApiException) as e:
        core.create_namespaced_pod("py", bad)
    assert e.value.status == 422
    core.delete_namespaced_pod("p1", "py", grace_period_seconds=0, propagation_policy="Background")
    with pytest.raises(ApiException) as e:
        core.read_namespaced_pod("p1", "py")
    assert e.value.status == 404
    cm = core.create_namespaced_config_map(
        "py", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"), data={"k": "v"})
    )
    assert cm.data == {"k": "v"}
    status = core.delete_namespaced_config_map("c", "py")
    assert (status.get("status") if isinstance(status, dict) else status.status) == "Success"


def test_paging(kube: Any) -> None:
    core = client.CoreV1Api(kube)
    for i in range(5):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"c{i}"}, "data": {}})
    seen: list[str] = []
    token = None
    while True:
        page = core.list_namespaced_config_map("default", limit=2, _continue=token)
        seen += [c.metadata.name for c in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert [s for s in seen if s.startswith("c")] == [f"c{i}" for i in range(5)]


def test_deployment_and_scale(kube: Any) -> None:
    apps = client.AppsV1Api(kube)
    body = {
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
        },
    }
    d = apps.create_namespaced_deployment("default", body)
    assert d.metadata.generation == 1
    scale = apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 5}})
    assert scale.spec.replicas == 5
    assert apps.read_namespaced_deployment_scale("web", "default").status.selector == "app=web"
    assert apps.read_namespaced_deployment("web", "default").spec.replicas == 5
    d = apps.read_namespaced_deployment("web", "default")
    d.status = client.V1DeploymentStatus(replicas=5, observed_generation=d.metadata.generation)
    out = apps.replace_namespaced_deployment_status("web", "default", d)
    assert out.status.replicas == 5


def test_watch_stream(kube: Any) -> None:
    core = client.CoreV1Api(kube)
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    events: list[tuple[str, str]] = []
    started = threading.Event()

    def run() -> None:
        w = watch.Watch()
        started.set()
        for ev in w.stream(
            core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=3
        ):
            events.append((ev["type"], ev["object"].metadata.name))
            if len(events) == 2:
                w.stop()

    t = threading.Thread(target=run)
    t.start()
    started.wait()
    core.create_namespaced_config_map("default", {"metadata": {"name": "w"}})
    core.delete_namespaced_config_map("w", "default")
    t.join(10)
    assert events == [("ADDED", "w"), ("DELETED", "w")]


def test_events_and_access_review(kube: Any) -> None:
    ev = client.EventsV1Api(kube).create_namespaced_event(
        "default",
        {
            "metadata": {"name": "e"},
            "regarding": {"kind": "Pod", "name": "p", "namespace": "default"},
            "reason": "Tested",
            "note": "n",
            "type": "Normal",
            "action": "Test",
            "reportingController": "peapod/test",
            "reportingInstance": "i",
            "eventTime": "2026-01-01T00:00:00.000000Z",
        },
    )
    assert ev.note == "n"
    core_ev = client.CoreV1Api(kube).read_namespaced_event("e", "default")
    assert core_ev.message == "n" and core_ev.involved_object.name == "p"
    review = client.AuthorizationV1Api(kube).create_self_subject_access_review(
        {"spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}}}
    )
    assert review.status.allowed is True


def test_server_side_apply_via_client(kube: Any) -> None:
    core = client.CoreV1Api(kube)
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "1"}}
    created = core.patch_namespaced_config_map(
        "ssa", "default", body, field_manager="py", _content_type="application/apply-patch+yaml"
    )
    assert created.data == {"a": "1"} and created.metadata.managed_fields[0].manager == "py"
    merged = core.patch_namespaced_config_map(
        "ssa", "default", {"data": {"b": "2"}}, _content_type="application/merge-patch+json"
    )
    assert merged.data == {"a": "1", "b": "2"}
