"""Metrics for users of a real `peapod up`: `kubectl top`, Prometheus /metrics, JSON logs."""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from peapod.testing.cluster import PeapodCluster
from peapod.testing.registry import LoopbackRegistry
from tests.e2e.conftest import write

pytestmark = pytest.mark.skipif(
    subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0", reason="needs root"
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PeapodCluster]:
    """`peapod up --log-format json`: every log line must be a JSON object."""
    c = PeapodCluster(tmp_path_factory.mktemp("peapod"), command="up", extra_args=["--log-format", "json"])
    c.start()
    try:
        yield c
    finally:
        code = c.stop()
        if code not in (0, None):
            print(c.log_tail())


@pytest.fixture(scope="module")
def burner(cluster: PeapodCluster, registry: LoopbackRegistry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A namespace with a running pod `burner` (one container spinning on a CPU, one sleeping)."""
    ns = f"metrics{os.getpid() % 10000}"
    cluster.kubectl("create", "namespace", ns, check=True)
    image = registry.ref("busybox", "1")
    manifest = f"""
apiVersion: v1
kind: Pod
metadata: {{name: burner, labels: {{app: burner}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: spin
    image: {image}
    command: ["sh", "-c", "while :; do :; done"]
  - name: idle
    image: {image}
    command: ["sleep", "3600"]
"""
    path = write(tmp_path_factory.mktemp("m"), "burner.yaml", manifest)
    cluster.kubectl("apply", "-n", ns, "-f", str(path), check=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        phase = cluster.kubectl("get", "-n", ns, "pod", "burner", "-o", "jsonpath={.status.phase}").stdout
        if phase == "Running":
            return ns
        time.sleep(0.5)
    raise AssertionError(cluster.kubectl("describe", "-n", ns, "pod", "burner").stdout + cluster.log_tail())


def _millicores(text: str) -> int:
    return int(text[:-1]) if text.endswith("m") else int(float(text) * 1000)


def _poll_top(cluster: PeapodCluster, *args: str, want: re.Pattern[str], timeout: float = 60) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        r = cluster.kubectl("top", *args)
        out = r.stdout + r.stderr
        m = want.search(r.stdout)
        if r.returncode == 0 and m:
            return m
        time.sleep(1)
    raise AssertionError(f"kubectl top {' '.join(args)}:\n{out}\n{cluster.log_tail()}")


def test_top_pods_shows_a_busy_container(cluster: PeapodCluster, burner: str) -> None:
    m = _poll_top(cluster, "pods", "-n", burner, "--containers",
                  want=re.compile(r"^burner\s+spin\s+(\d+m?)\s+(\d+)Mi", re.M))
    assert _millicores(m.group(1)) >= 100, m.group(0)
    r = cluster.kubectl("top", "pods", "-n", burner, "--containers", check=True)
    idle = re.search(r"^burner\s+idle\s+(\d+)m\s+(\d+)Mi", r.stdout, re.M)
    assert idle is not None and int(idle.group(1)) < 50, r.stdout
    # all namespaces, and a label selector
    everywhere = cluster.kubectl("top", "pods", "-A", check=True).stdout
    line = re.search(rf"^{burner}\s+burner\s+(\d+)m\s+\d+Mi", everywhere, re.M)
    assert line is not None and int(line.group(1)) >= 100, everywhere
    assert "burner" in cluster.kubectl("top", "pods", "-n", burner, "-l", "app=burner", check=True).stdout
    none = cluster.kubectl("top", "pods", "-n", burner, "-l", "app=other")
    assert "burner" not in none.stdout


def test_top_pod_by_name_and_metrics_objects(cluster: PeapodCluster, burner: str) -> None:
    _poll_top(cluster, "pods", "-n", burner, "burner", want=re.compile(r"^burner\s+\d+m", re.M))
    obj = cluster.kubectl("get", "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/{burner}/pods/burner",
                          check=True).json()
    assert obj["kind"] == "PodMetrics" and obj["metadata"]["labels"] == {"app": "burner"}
    assert sorted(c["name"] for c in obj["containers"]) == ["idle", "spin"]
    assert re.fullmatch(r"[\d.]+s", obj["window"]) and obj["timestamp"].endswith("Z")
    missing = cluster.kubectl("get", "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/{burner}/pods/nope")
    assert missing.returncode != 0 and "not found" in missing.stderr.lower(), missing.stderr


def test_top_nodes_shows_the_node(cluster: PeapodCluster) -> None:
    node = cluster.kubectl("get", "nodes", "-o", "jsonpath={.items[0].metadata.name}", check=True).stdout
    m = _poll_top(cluster, "nodes", want=re.compile(rf"^{re.escape(node)}\s+(\d+)m\s+(\d+)%\s+(\d+)Mi\s+(\d+)%",
                                                   re.M))
    assert int(m.group(3)) > 0, m.group(0)


def _get(url: str, *, token: str | None = None, ctx: ssl.SSLContext) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_server_metrics_need_auth_and_have_request_latencies(cluster: PeapodCluster) -> None:
    ctx = ssl.create_default_context(cafile=str(cluster.data_dir / "tls" / "ca.crt"))
    cluster.kubectl("get", "pods", "-A", check=True)
    code, _ = _get(f"{cluster.url}/metrics", ctx=ctx)
    assert code == 401
    code, text = _get(f"{cluster.url}/metrics", token=cluster.admin_token(), ctx=ctx)
    assert code == 200
    assert re.search(r'^apiserver_request_duration_seconds_count\{[^}]*resource="pods"[^}]*verb="LIST"'
                     r'[^}]*\} [1-9]', text, re.M), text[:3000]
    assert "apiserver_registered_watchers{" in text  # the controllers and the agent watch
    assert re.search(r'^peapod_store_request_duration_seconds_count\{operation="get"', text, re.M)


def test_agent_metrics_and_stats_only_for_the_api_server(cluster: PeapodCluster, burner: str) -> None:
    node = cluster.kubectl("get", "nodes", "-o", "json", check=True).json()["items"][0]
    port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    tls = cluster.data_dir / "tls"
    anonymous = ssl.create_default_context(cafile=str(tls / "ca.crt"))
    anonymous.check_hostname = False
    # the agent's TLS requires a client certificate from the cluster CA: no certificate, no answer
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
        _get(f"https://{ip}:{port}/metrics", ctx=anonymous)
    ctx = ssl.create_default_context(cafile=str(tls / "ca.crt"))
    ctx.check_hostname = False
    ctx.load_cert_chain(str(tls / "apiserver-kubelet-client.crt"), str(tls / "apiserver-kubelet-client.key"))
    code, text = _get(f"https://{ip}:{port}/metrics", ctx=ctx)
    assert code == 200
    assert re.search(r"^kubelet_running_pods [1-9]", text, re.M), text
    assert re.search(r"^kubelet_pod_start_duration_seconds_count [1-9]", text, re.M), text
    assert re.search(r"^kubelet_image_pull_bytes_total [1-9]", text, re.M), text
    code, body = _get(f"https://{ip}:{port}/stats/summary", ctx=ctx)
    summary = json.loads(body)
    assert summary["node"]["memory"]["workingSetBytes"] > 0
    assert any(p["podRef"]["name"] == "burner" for p in summary["pods"])


def test_logs_are_json_lines(cluster: PeapodCluster, burner: str) -> None:
    assert cluster.log_path is not None
    lines = [ln for ln in Path(cluster.log_path).read_text().splitlines() if ln.strip()]
    assert lines
    records = [json.loads(ln) for ln in lines]
    assert all({"time", "level", "logger", "msg"} <= r.keys() for r in records)
    assert any(r["msg"].startswith("peapod is up at") for r in records)


@pytest.mark.parametrize("version", ["1.27", "1.33"])
def test_top_with_oldest_and_newest_kubectl(cluster: PeapodCluster, burner: str, version: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        pods = cluster.kubectl("top", "pods", "-n", burner, version=version)
        nodes = cluster.kubectl("top", "nodes", version=version)
        ok = (pods.returncode, nodes.returncode) == (0, 0) and "burner" in pods.stdout
        if ok or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert pods.returncode == 0 and re.search(r"^burner\s+\d+m\s+\d+Mi", pods.stdout, re.M), pods.stderr
    assert nodes.returncode == 0 and re.search(r"\d+m\s+\d+%\s+\d+Mi\s+\d+%", nodes.stdout), nodes.stderr
