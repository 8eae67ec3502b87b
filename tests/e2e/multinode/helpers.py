"""Multi-node end-to-end tests: `peapod cluster up` with 3 hosts (network namespaces), 3 etcd members,
2 API servers, images from the loopback `registry` fixture (forwarded into every host)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from peapod.testing.etcd import EtcdCluster
from peapod.testing.multinode import MultiNodeCluster

pytestmark = [pytest.mark.e2e, pytest.mark.etcd]

NEEDS = pytest.mark.skipif(
    os.geteuid() != 0 or not EtcdCluster.available() or shutil.which("nsenter") is None,
    reason="needs root, etcd and nsenter",
)


def started(tmp: Path, **kw: Any) -> Iterator[MultiNodeCluster]:
    """A cluster for a module; `peapod cluster down` in teardown, and nothing may be left behind."""
    c = MultiNodeCluster(tmp / "cluster", **kw).start()
    st = c.state
    try:
        yield c
    finally:
        if (c.data_dir / "cluster.json").exists():
            c.down()
        left = {k: v for k, v in c.leftovers(st).items() if v}
        assert not left, f"left behind by the cluster: {left}"


def busybox(registry: Any) -> str:
    return str(registry.ref("busybox", "1"))


def httpd_deployment(name: str, image: str, replicas: int, *, anti_affinity: str | None = None,
                     namespace: str = "default") -> dict[str, Any]:
    """busybox httpd on :8080 answering its pod name; ``anti_affinity``: "required" or "preferred"
    (one pod per kubernetes.io/hostname)."""
    labels = {"app": name}
    spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": 1,
        "containers": [{
            "name": "web", "image": image,
            "command": ["sh", "-c", 'mkdir -p /www && echo "hello from $(hostname)" > /www/index.html '
                                    "&& exec httpd -f -p 8080 -h /www"],
            "ports": [{"containerPort": 8080}],
            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
        }],
    }
    term = {"labelSelector": {"matchLabels": labels}, "topologyKey": "kubernetes.io/hostname"}
    if anti_affinity == "required":
        spec["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    elif anti_affinity == "preferred":
        spec["affinity"] = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": term}]}}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": spec}},
    }


def live_pods(c: MultiNodeCluster, selector: str, namespace: str = "default") -> list[dict[str, Any]]:
    items = c.get_json("pods", "-n", namespace, "-l", selector)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def ready_pods(c: MultiNodeCluster, selector: str, namespace: str = "default") -> list[dict[str, Any]]:
    def ready(p: dict[str, Any]) -> bool:
        return any(cond.get("type") == "Ready" and cond.get("status") == "True"
                   for cond in (p.get("status") or {}).get("conditions") or [])
    return [p for p in live_pods(c, selector, namespace) if ready(p)]


def available(c: MultiNodeCluster, name: str, replicas: int, namespace: str = "default") -> bool:
    d = c.get_json("deployment", "-n", namespace, name)
    st = d.get("status") or {}
    return (st.get("availableReplicas") == replicas and st.get("updatedReplicas") == replicas
            and st.get("replicas") == replicas and d["spec"]["replicas"] == replicas)


def http_get(c: MultiNodeCluster, pod: str, ip: str, port: int = 8080, namespace: str = "default") -> str:
    """The body of ``GET /`` on ip:port, fetched from inside ``pod`` (busybox nc and a hand-made request:
    Debian's static busybox wget crashes in glibc's NSS)."""
    script = (f"printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {ip} {port} > /tmp/r "
              "&& grep -q ' 200 ' /tmp/r && tail -n1 /tmp/r")
    got = c.kubectl("exec", "-n", namespace, pod, "--", "sh", "-c", script, timeout=30)
    assert got.returncode == 0, f"GET http://{ip}:{port}/ from {pod} failed: {got.stderr}{got.stdout}"
    return got.stdout.strip()
