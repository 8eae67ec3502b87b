"""Service account tokens in real pods: the kube-api-access projected volume, like Kubernetes."""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from peapod.testing.cluster import PeapodCluster
from peapod.testing.registry import LoopbackRegistry
from tests.e2e.conftest import write

pytestmark = pytest.mark.skipif(
    subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0", reason="needs root"
)

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture(scope="module")
def cluster(node_cluster: PeapodCluster) -> PeapodCluster:
    return node_cluster


def _wait(cluster: PeapodCluster, ns: str, pod: str, jsonpath: str, want: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    got = ""
    while time.monotonic() < deadline:
        got = cluster.kubectl("get", "-n", ns, "pod", pod, "-o", f"jsonpath={jsonpath}").stdout
        if got == want:
            return
        time.sleep(0.3)
    desc = cluster.kubectl("describe", "-n", ns, "pod", pod).stdout
    raise AssertionError(f"{pod}: {jsonpath} is {got!r}, wanted {want!r}\n{desc}\n{cluster.log_tail()}")


def _api(cluster: PeapodCluster, path: str, token: str) -> tuple[int, Any]:
    """A request from the host with a bearer token, verified against the cluster CA (like curl --cacert)."""
    ctx = ssl.create_default_context(cafile=str(cluster.data_dir / "tls" / "ca.crt"))
    req = urllib.request.Request(f"{cluster.url}{path}", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_pod_reads_its_token_and_the_token_authenticates(
    cluster: PeapodCluster, namespace: str, registry: LoopbackRegistry, tmp_path: Path
) -> None:
    image = registry.ref("busybox", "1")
    manifest = f"""
apiVersion: v1
kind: Pod
metadata: {{name: reader}}
spec:
  containers:
  - {{name: c, image: {image}, command: ["sleep", "3600"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: quiet}}
spec:
  automountServiceAccountToken: false
  containers:
  - {{name: c, image: {image}, command: ["sleep", "3600"]}}
"""
    cluster.kubectl("apply", "-n", namespace, "-f", str(write(tmp_path, "p.yaml", manifest)), check=True)
    _wait(cluster, namespace, "reader", "{.status.phase}", "Running")
    _wait(cluster, namespace, "quiet", "{.status.phase}", "Running")

    def sh(pod: str, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return cluster.kubectl("exec", "-n", namespace, pod, "--", "sh", "-c", script, check=check)

    assert sh("reader", f"cat {SA_DIR}/namespace").stdout == namespace
    ca = sh("reader", f"cat {SA_DIR}/ca.crt").stdout
    assert ca == (cluster.data_dir / "tls" / "ca.crt").read_text()
    assert sorted(sh("reader", f"ls {SA_DIR}").stdout.split()) == ["ca.crt", "namespace", "token"]
    assert "ro," in sh("reader", f"grep ' {SA_DIR} ' /proc/mounts").stdout  # read-only mount
    token = sh("reader", f"cat {SA_DIR}/token").stdout
    assert token.count(".") == 2

    user = f"system:serviceaccount:{namespace}:default"
    code, body = _api(cluster, f"/api/v1/namespaces/{namespace}/pods", token)
    assert code == 403, body
    assert body["message"] == (
        f'pods is forbidden: User "{user}" cannot list resource "pods" in API group "" in the namespace "{namespace}"'
    )
    cluster.kubectl("create", "rolebinding", "-n", namespace, "sa-view", "--clusterrole=view",
                    f"--serviceaccount={namespace}:default", check=True)
    deadline = time.monotonic() + 10
    while (code := _api(cluster, f"/api/v1/namespaces/{namespace}/pods", token)[0]) != 200:
        assert time.monotonic() < deadline, code
        time.sleep(0.1)
    code, body = _api(cluster, f"/api/v1/namespaces/{namespace}/pods", token)
    assert {p["metadata"]["name"] for p in body["items"]} == {"reader", "quiet"}

    # automountServiceAccountToken: false -> no volume, nothing mounted.
    spec = json.loads(cluster.kubectl("get", "-n", namespace, "pod", "quiet", "-o", "json", check=True).stdout)["spec"]
    assert not [v for v in spec.get("volumes") or [] if v["name"].startswith("kube-api-access-")]
    res = sh("quiet", "ls /var/run/secrets/kubernetes.io", check=False)
    assert res.returncode != 0 and "No such file or directory" in res.stderr

    # Deleting the pod revokes its (pod-bound) token.
    cluster.kubectl("delete", "-n", namespace, "pod", "reader", "--wait=false", check=True)
    deadline = time.monotonic() + 10
    while (code := _api(cluster, "/api", token)[0]) != 401:
        assert time.monotonic() < deadline, code
        time.sleep(0.1)
