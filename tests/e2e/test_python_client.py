"""The official `kubernetes` Python client against a real `peapod up`."""

from __future__ import annotations

import threading

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from peapod.testing.cluster import PeapodCluster


def test_crud_watch_and_errors(cluster: PeapodCluster, namespace: str) -> None:
    api = cluster.python_client()
    core = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    cm = core.create_namespaced_config_map(namespace, {"metadata": {"name": "c1"}, "data": {"a": "1"}})
    assert cm.metadata.resource_version and cm.metadata.uid
    got = core.read_namespaced_config_map("c1", namespace)
    assert got.data == {"a": "1"}
    got.data["a"] = "2"
    core.replace_namespaced_config_map("c1", namespace, got)
    with pytest.raises(ApiException) as e:
        got.data["a"] = "3"
        core.replace_namespaced_config_map("c1", namespace, got)  # stale resourceVersion
    assert e.value.status == 409
    core.patch_namespaced_config_map("c1", namespace, {"data": {"b": "x"}})
    assert core.read_namespaced_config_map("c1", namespace).data == {"a": "2", "b": "x"}

    dep = {
        "metadata": {"name": "d"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "d"}},
                 "template": {"metadata": {"labels": {"app": "d"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}},
    }
    apps.create_namespaced_deployment(namespace, dep)
    scale = apps.patch_namespaced_deployment_scale("d", namespace, {"spec": {"replicas": 4}})
    assert scale.spec.replicas == 4
    assert apps.read_namespaced_deployment("d", namespace).spec.replicas == 4

    with pytest.raises(ApiException) as e:
        core.create_namespaced_pod(namespace, {"metadata": {"name": "p"},
                                               "spec": {"containers": [{"name": "c"}]}})
    assert e.value.status == 422
    assert "spec.containers[0].image: Required value" in e.value.body

    lst = core.list_namespaced_config_map(namespace)
    rv = lst.metadata.resource_version
    seen: list[tuple[str, str]] = []

    def consume() -> None:
        w = watch.Watch()
        stream = w.stream(core.list_namespaced_config_map, namespace, resource_version=rv, timeout_seconds=10)
        for ev in stream:
            seen.append((ev["type"], ev["object"].metadata.name))
            if ev["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=consume)
    t.start()
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "c2"}})
    core.delete_namespaced_config_map("c2", namespace)
    t.join(20)
    assert seen == [("ADDED", "c2"), ("DELETED", "c2")]
    core.delete_namespaced_config_map("c1", namespace, grace_period_seconds=0,
                                      propagation_policy="Background")
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("c1", namespace)
    assert e.value.status == 404


def test_default_namespaces_and_service_account(cluster: PeapodCluster) -> None:
    core = client.CoreV1Api(cluster.python_client())
    names = {n.metadata.name for n in core.list_namespace().items}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
    assert core.read_namespaced_service_account("default", "default").metadata.name == "default"
