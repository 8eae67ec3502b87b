"""Real pods through `peapod up` and the real kubectl: runc, conmon, CNI and a loopback registry."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from peapod.testing.cluster import PeapodCluster
from peapod.testing.registry import LoopbackRegistry
from tests.e2e.conftest import write

pytestmark = pytest.mark.skipif(
    subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0", reason="needs root"
)


@pytest.fixture(scope="module")
def cluster(node_cluster: PeapodCluster) -> PeapodCluster:
    """This module's tests run pods: the `namespace` fixture uses this cluster too."""
    return node_cluster


def wait_for(cluster: PeapodCluster, namespace: str, pod: str, jsonpath: str, want: str,
             timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    got = ""
    while time.monotonic() < deadline:
        got = cluster.kubectl("get", "-n", namespace, "pod", pod, "-o", f"jsonpath={jsonpath}").stdout
        if got == want:
            return
        time.sleep(0.3)
    desc = cluster.kubectl("describe", "-n", namespace, "pod", pod).stdout
    raise AssertionError(f"{pod}: {jsonpath} is {got!r}, wanted {want!r}\n{desc}\n{cluster.log_tail()}")


def test_two_containers_share_localhost_volume_hostname_and_shm(
    cluster: PeapodCluster, namespace: str, registry: LoopbackRegistry, tmp_path: Path
) -> None:
    image = registry.ref("busybox", "1")
    manifest = f"""
apiVersion: v1
kind: Pod
metadata: {{name: duo}}
spec:
  volumes: [{{name: shared, emptyDir: {{}}}}]
  containers:
  - name: server
    image: {image}
    command: ["sh", "-c", "echo hello > /data/index.html; echo shm > /dev/shm/s; httpd -f -p 8080 -h /data"]
    volumeMounts: [{{name: shared, mountPath: /data}}]
  - name: client
    image: {image}
    command: ["sh", "-c", "sleep 3600"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
"""
    cluster.kubectl("apply", "-n", namespace, "-f", str(write(tmp_path, "duo.yaml", manifest)), check=True)
    wait_for(cluster, namespace, "duo", "{.status.phase}", "Running")
    wait_for(cluster, namespace, "duo", "{.status.conditions[?(@.type=='Ready')].status}", "True")
    r = cluster.kubectl("exec", "-n", namespace, "duo", "-c", "client", "--",
                        "sh", "-c", "nc 127.0.0.1 8080 <<EOF\nGET / HTTP/1.0\n\nEOF\n", check=True)
    assert "hello" in r.stdout
    assert cluster.kubectl("exec", "-n", namespace, "duo", "-c", "client", "--", "cat", "/shared/index.html",
                           check=True).stdout.strip() == "hello"
    assert cluster.kubectl("exec", "-n", namespace, "duo", "-c", "client", "--", "hostname",
                           check=True).stdout.strip() == "duo"
    assert cluster.kubectl("exec", "-n", namespace, "duo", "-c", "client", "--", "cat", "/dev/shm/s",
                           check=True).stdout.strip() == "shm"
    # Separate PID namespaces unless asked: the client cannot see httpd.
    ps = cluster.kubectl("exec", "-n", namespace, "duo", "-c", "client", "--", "ps", check=True).stdout
    assert "httpd" not in ps
    pod = cluster.kubectl("get", "-n", namespace, "pod", "duo", "-o", "json", check=True).json()
    assert pod["status"]["podIP"] and pod["spec"]["nodeName"]
    assert all(c["ready"] and c["state"].get("running") for c in pod["status"]["containerStatuses"])
    wide = cluster.kubectl("get", "-n", namespace, "pod", "duo", "-o", "wide", check=True).stdout
    assert "2/2" in wide and "Running" in wide and pod["status"]["podIP"] in wide


def test_logs_exec_exit_codes_and_pod_to_pod(
    cluster: PeapodCluster, namespace: str, registry: LoopbackRegistry, tmp_path: Path
) -> None:
    image = registry.ref("busybox", "1")
    talk = "i=0; while true; do echo line $i; i=$((i+1)); sleep 1; done"
    for name, cmd in (("web", "echo started; httpd -f -p 80 -h /etc"), ("talker", talk)):
        manifest = json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                               "spec": {"containers": [{"name": "c", "image": image,
                                                        "command": ["sh", "-c", cmd]}]}})
        cluster.kubectl("apply", "-n", namespace, "-f", str(write(tmp_path, f"{name}.json", manifest)), check=True)
    wait_for(cluster, namespace, "web", "{.status.phase}", "Running")
    wait_for(cluster, namespace, "talker", "{.status.phase}", "Running")
    web_ip = cluster.kubectl("get", "-n", namespace, "pod", "web", "-o", "jsonpath={.status.podIP}").stdout
    r = cluster.kubectl("exec", "-n", namespace, "talker", "--", "sh", "-c",
                        f"printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc {web_ip} 80", check=True)
    assert "web" in r.stdout
    r = cluster.kubectl("exec", "-n", namespace, "talker", "--", "sh", "-c", "exit 7")
    assert r.returncode == 7
    r = cluster.kubectl("exec", "-i", "-n", namespace, "talker", "--", "cat", input="piped in\n", check=True)
    assert r.stdout == "piped in\n"
    time.sleep(2)
    logs = cluster.kubectl("logs", "-n", namespace, "talker", check=True).stdout.splitlines()
    assert logs[0] == "line 0" and len(logs) >= 2
    assert cluster.kubectl("logs", "-n", namespace, "talker", "--tail=1", check=True).stdout.count("\n") == 1
    assert cluster.kubectl("logs", "-n", namespace, "web", check=True).stdout == "started\n"
    r = cluster.kubectl("delete", "-n", namespace, "pod", "web", "talker", "--grace-period=1", check=True,
                        timeout=90)
    assert 'pod "web" deleted' in r.stdout
    assert cluster.kubectl("get", "-n", namespace, "pods", "-o", "name").stdout.strip() == ""


def test_shared_pid_namespace_only_when_asked(
    cluster: PeapodCluster, namespace: str, registry: LoopbackRegistry, tmp_path: Path
) -> None:
    image = registry.ref("busybox", "1")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "shared-pid"},
           "spec": {"shareProcessNamespace": True, "containers": [
               {"name": "a", "image": image, "command": ["sh", "-c", "exec sleep 3601"]},
               {"name": "b", "image": image, "command": ["sh", "-c", "exec sleep 3602"]}]}}
    cluster.kubectl("apply", "-n", namespace, "-f", str(write(tmp_path, "sp.json", json.dumps(pod))), check=True)
    wait_for(cluster, namespace, "shared-pid", "{.status.phase}", "Running")
    ps = cluster.kubectl("exec", "-n", namespace, "shared-pid", "-c", "b", "--", "ps", check=True).stdout
    assert "sleep 3601" in ps and "sleep 3602" in ps


def _port_forward(cluster: PeapodCluster, namespace: str, pod: str, port: int, version: str | None) -> None:
    exe = "kubectl" if version is None else str(Path(cluster_kubectl_dir()) / f"kubectl.{version}")
    proc = subprocess.Popen(
        [exe, f"--kubeconfig={cluster.kubeconfig}", f"--cache-dir={cluster.data_dir / ('pf' + str(version))}",
         "port-forward", "-n", namespace, f"pod/{pod}", f":{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Forwarding from 127.0.0.1:"), line + (proc.stderr.read() if proc.stderr else "")
        local = int(line.split("127.0.0.1:")[1].split()[0])
        for _ in range(2):  # two connections through one forward
            with socket.create_connection(("127.0.0.1", local), timeout=10) as s:
                s.sendall(b"GET /hostname HTTP/1.0\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
            assert b"200 OK" in data and data.rstrip().endswith(b"pf"), data
    finally:
        proc.terminate()
        proc.wait(10)


def cluster_kubectl_dir() -> str:
    import os
    import shutil

    return os.path.dirname(os.path.realpath(shutil.which("kubectl") or "/usr/bin/kubectl"))


def test_port_forward_and_follow_logs(
    cluster: PeapodCluster, namespace: str, registry: LoopbackRegistry, tmp_path: Path
) -> None:
    image = registry.ref("busybox", "1")
    pods = [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pf"},
         "spec": {"containers": [{"name": "c", "image": image, "command": ["httpd", "-f", "-p", "8080", "-h", "/etc"],
                                  "ports": [{"containerPort": 8080}]}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "counter"},
         "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": image, "command": [
             "sh", "-c", "for i in 1 2 3; do echo tick $i; sleep 1; done"]}]}},
    ]
    for p in pods:
        cluster.kubectl("apply", "-n", namespace, "-f", str(write(tmp_path, p["metadata"]["name"] + ".json",
                                                                    json.dumps(p))), check=True)
    wait_for(cluster, namespace, "counter", "{.status.phase}", "Running")
    # Follow streams until the container stops, then kubectl exits.
    r = cluster.kubectl("logs", "-f", "-n", namespace, "counter", timeout=30, check=True)
    assert r.stdout.splitlines() == ["tick 1", "tick 2", "tick 3"]
    wait_for(cluster, namespace, "counter", "{.status.phase}", "Succeeded")
    wait_for(cluster, namespace, "pf", "{.status.phase}", "Running")
    _port_forward(cluster, namespace, "pf", 8080, None)  # newest kubectl: SPDY over WebSocket
    _port_forward(cluster, namespace, "pf", 8080, "1.27")  # oldest: plain SPDY


def test_images_cli_talks_to_the_running_agent(
    cluster: PeapodCluster, namespace: str, registry: LoopbackRegistry, tmp_path: Path
) -> None:
    from peapod.testing.cluster import peapod_executable

    image = registry.ref("busybox", "1")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "user"},
           "spec": {"containers": [{"name": "c", "image": image, "command": ["sleep", "3600"]}]}}
    cluster.kubectl("apply", "-n", namespace, "-f", str(write(tmp_path, "u.json", json.dumps(pod))), check=True)
    wait_for(cluster, namespace, "user", "{.status.phase}", "Running")

    def images(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*peapod_executable(), "images", *args, "--data-dir", str(cluster.data_dir)],
                              capture_output=True, text=True, timeout=60)

    ls = images("ls")
    assert ls.returncode == 0, ls.stderr
    assert registry.ref("busybox", "1").rsplit(":", 1)[0] in ls.stdout
    rm = images("rm", image)
    assert rm.returncode == 1 and "in use" in rm.stderr
