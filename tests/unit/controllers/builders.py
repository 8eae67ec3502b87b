"""Wire-dict builders for controller unit tests."""

from __future__ import annotations

from typing import Any

T0 = "2026-01-01T00:00:00Z"


def pod(
    name: str,
    *,
    node: str = "",
    phase: str = "Running",
    ready: bool = False,
    ready_since: str = T0,
    restarts: int = 0,
    created: str = T0,
    labels: dict[str, str] | None = None,
    owner: dict[str, Any] | None = None,
    deleting: bool = False,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    md: dict[str, Any] = {
        "name": name,
        "namespace": "default",
        "uid": f"uid-{name}",
        "creationTimestamp": created,
        "labels": labels or {},
        "resourceVersion": "1",
    }
    if owner:
        md["ownerReferences"] = [owner]
    if annotations:
        md["annotations"] = annotations
    if deleting:
        md["deletionTimestamp"] = T0
    status: dict[str, Any] = {"phase": phase, "containerStatuses": [{"name": "c", "restartCount": restarts}]}
    if ready:
        status["conditions"] = [{"type": "Ready", "status": "True", "lastTransitionTime": ready_since}]
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "x"}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": md, "spec": spec, "status": status}


def deploy(
    replicas: int = 10,
    *,
    surge: Any = 0,
    unavailable: Any = 0,
    strategy: str = "RollingUpdate",
    generation: int = 1,
    status: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    st: dict[str, Any] = {"type": strategy}
    if strategy == "RollingUpdate":
        st["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return {
        "metadata": {
            "name": "foo",
            "namespace": "default",
            "uid": "d-uid",
            "generation": generation,
            "resourceVersion": "1",
        },
        "spec": {
            "replicas": replicas,
            "strategy": st,
            "selector": {"matchLabels": {"app": "foo"}},
            "template": {
                "metadata": {"labels": {"app": "foo"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
            **spec,
        },
        "status": status or {},
    }


def rs(
    name: str,
    replicas: int,
    *,
    available: int | None = None,
    created: str = T0,
    actual: int | None = None,
    revision: int | None = None,
    desired: int | None = None,
    max_replicas: int | None = None,
    generation: int = 1,
    observed: int = 1,
) -> dict[str, Any]:
    ann: dict[str, str] = {}
    if revision is not None:
        ann["deployment.kubernetes.io/revision"] = str(revision)
    if desired is not None:
        ann["deployment.kubernetes.io/desired-replicas"] = str(desired)
    if max_replicas is not None:
        ann["deployment.kubernetes.io/max-replicas"] = str(max_replicas)
    return {
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": f"uid-{name}",
            "creationTimestamp": created,
            "annotations": ann,
            "generation": generation,
        },
        "spec": {"replicas": replicas},
        "status": {
            "replicas": replicas if actual is None else actual,
            "availableReplicas": replicas if available is None else available,
            "observedGeneration": observed,
        },
    }
