"""Pod and node object builders for the scheduler tests."""

from __future__ import annotations

from typing import Any

from peapod.controlplane.scheduler.model import NodeInfo, PodInfo, pod_info


def pod(name: str = "p", *, ns: str = "default", labels: dict[str, str] | None = None, cpu: str | None = None,
        memory: str | None = None, node: str | None = None, **spec: Any) -> dict[str, Any]:
    requests = {}
    if cpu:
        requests["cpu"] = cpu
    if memory:
        requests["memory"] = memory
    c: dict[str, Any] = {"name": "c", "image": "busybox"}
    if requests:
        c["resources"] = {"requests": requests}
    s: dict[str, Any] = {"containers": [c], **spec}
    if node:
        s["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "uid": f"uid-{ns}-{name}", "labels": labels or {}},
            "spec": s}


def node(name: str = "n1", *, labels: dict[str, str] | None = None, cpu: str = "4", memory: str = "8Gi",
         pods: str = "110", ready: str | None = "True", taints: list[dict[str, str]] | None = None,
         unschedulable: bool = False, images: list[dict[str, Any]] | None = None,
         **alloc: str) -> dict[str, Any]:
    lab = {"kubernetes.io/hostname": name, **(labels or {})}
    status: dict[str, Any] = {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods, **alloc}}
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": ready}]
    if images:
        status["images"] = images
    spec: dict[str, Any] = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": lab}, "spec": spec,
            "status": status}


def node_info(obj: dict[str, Any], *pods: dict[str, Any]) -> NodeInfo:
    ni = NodeInfo(obj["metadata"]["name"])
    ni.set_node(obj)
    for p in pods:
        info = pod_info(p)
        info.node_name = ni.name
        ni.add_pod(info)
    return ni


def pi(obj: dict[str, Any]) -> PodInfo:
    return pod_info(obj)


def snapshot(nodes: list[dict[str, Any]], pods: list[dict[str, Any]] = (),  # type: ignore[assignment]
             namespaces: dict[str, dict[str, str]] | None = None) -> Any:
    from peapod.controlplane.scheduler.snapshot import Snapshot

    s = Snapshot()
    for n in nodes:
        s.set_node(n)
    for p in pods:
        s.add_pod(pod_info(p))
    s.namespace_labels.update(namespaces or {})
    return s
