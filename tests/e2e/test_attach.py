"""`kubectl attach` against real pods (`peapod up`): conmon's attach socket through the agent.

kubectl 1.33 speaks WebSocket (v5.channel.k8s.io), 1.27 SPDY/3.1.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from peapod.testing.cluster import PeapodCluster
from peapod.testing.registry import LoopbackRegistry
from tests.e2e.conftest import write
from tests.e2e.test_pods import wait_for

pytestmark = pytest.mark.skipif(
    subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0", reason="needs root"
)

VERSIONS = ["1.33", "1.27"]


@pytest.fixture(scope="module")
def cluster(node_cluster: PeapodCluster) -> PeapodCluster:
    return node_cluster


def _pod(cluster: PeapodCluster, namespace: str, tmp_path: Path, name: str, container: dict) -> None:
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                         "containers": [{"name": "c", **container}]}}
    cluster.kubectl("apply", "-n", namespace, "-f", str(write(tmp_path, f"{name}.json", json.dumps(manifest))),
                    check=True)
    wait_for(cluster, namespace, name, "{.status.phase}", "Running")


def _kubectl_cmd(cluster: PeapodCluster, version: str, *args: str) -> list[str]:
    from peapod.testing.cluster import _versioned_kubectl

    return [_versioned_kubectl(version), f"--kubeconfig={cluster.kubeconfig}",
            f"--cache-dir={cluster.data_dir / 'kubectl-cache'}", *args]


@pytest.mark.parametrize("version", VERSIONS)
def test_attach_stdin_tty_shell_runs_input_and_the_container_exits(
    cluster: PeapodCluster, namespace: str, registry: LoopbackRegistry, tmp_path: Path, version: str,
) -> None:
    image = registry.ref("busybox", "1")
    _pod(cluster, namespace, tmp_path, "shell", {"image": image, "command": ["sh"], "stdin": True,
                                                 "stdinOnce": True, "tty": True})
    r = cluster.kubectl("attach", "-i", "-n", namespace, "shell", "-c", "c", version=version,
                        input="echo hi-$((1+1))\nexit\n", timeout=60)
    assert r.returncode == 0, r.stderr
    assert "hi-2" in r.stdout, (r.stdout, r.stderr)
    wait_for(cluster, namespace, "shell", "{.status.phase}", "Succeeded")


@pytest.mark.parametrize("version", VERSIONS)
def test_attach_without_stdin_streams_output_live(
    cluster: PeapodCluster, namespace: str, registry: LoopbackRegistry, tmp_path: Path, version: str,
) -> None:
    image = registry.ref("busybox", "1")
    loop = "i=0; while true; do i=$((i+1)); echo tick-$i; echo warn-$i >&2; sleep 0.5; done"
    _pod(cluster, namespace, tmp_path, "ticker", {"image": image, "command": ["sh", "-c", loop]})
    time.sleep(1.2)
    before = cluster.kubectl("logs", "-n", namespace, "ticker", check=True).stdout.count("tick-")
    p = subprocess.Popen(_kubectl_cmd(cluster, version, "attach", "-n", namespace, "ticker"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
    finally:
        p.terminate()
        out, err = p.communicate(timeout=10)
    ticks = [int(ln.split("-")[1]) for ln in out.splitlines() if ln.startswith("tick-")]
    assert len(ticks) >= 2, (out, err)
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks)))  # live lines, in order, none lost
    assert ticks[0] >= before  # only what was written after attaching (older lines are in the log)
    assert "warn-" in err and "warn-" not in out  # stderr stays apart without a terminal
    # detaching leaves the container running
    assert cluster.kubectl("get", "-n", namespace, "pod", "ticker", "-o",
                           "jsonpath={.status.phase}").stdout == "Running"


# kubectl 1.27 (SPDY) closes stdin only with protocol v2 and later: it offers each version in a header of
# its own, and the API server must pass them all on (keeping the last one alone made the node pick v1).
@pytest.mark.parametrize("version", VERSIONS)
def test_attach_stdin_once_without_tty_sees_eof_after_input(
    cluster: PeapodCluster, namespace: str, registry: LoopbackRegistry, tmp_path: Path, version: str,
) -> None:
    image = registry.ref("busybox", "1")
    script = "while read l; do echo got-$l; done; echo stdin-closed"
    _pod(cluster, namespace, tmp_path, "reader", {"image": image, "command": ["sh", "-c", script],
                                                  "stdin": True, "stdinOnce": True})
    r = cluster.kubectl("attach", "-i", "-n", namespace, "reader", version=version, input="a\nb\n", timeout=20)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "got-a\ngot-b\nstdin-closed\n", (r.stdout, r.stderr)
    wait_for(cluster, namespace, "reader", "{.status.phase}", "Succeeded")


def test_attach_stdin_stays_open_without_stdin_once(
    cluster: PeapodCluster, namespace: str, registry: LoopbackRegistry, tmp_path: Path,
) -> None:
    image = registry.ref("busybox", "1")
    script = "while read l; do echo got-$l; done; echo stdin-closed"
    _pod(cluster, namespace, tmp_path, "keeper", {"image": image, "command": ["sh", "-c", script],
                                                  "stdin": True})
    for word in ("one", "two"):
        p = subprocess.Popen(_kubectl_cmd(cluster, "1.33", "attach", "-i", "-n", namespace, "keeper"),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # stdin stays open in the container, so the attach lasts until the client leaves
            out, err = p.communicate(f"{word}\n", timeout=3)
        except subprocess.TimeoutExpired:
            p.terminate()
            out, err = p.communicate(timeout=10)
        assert f"got-{word}" in out and "stdin-closed" not in out, (out, err)
    logs = cluster.kubectl("logs", "-n", namespace, "keeper", check=True).stdout
    assert logs == "got-one\ngot-two\n"


def test_attach_resizes_the_terminal_with_the_python_client(
    cluster: PeapodCluster, namespace: str, registry: LoopbackRegistry, tmp_path: Path,
) -> None:
    from kubernetes import client
    from kubernetes.stream import stream

    image = registry.ref("busybox", "1")
    _pod(cluster, namespace, tmp_path, "term", {"image": image, "command": ["sh"], "stdin": True, "tty": True})
    api = client.CoreV1Api(cluster.python_client())
    ws = stream(api.connect_get_namespaced_pod_attach, "term", namespace, container="c", stdin=True,
                stdout=True, stderr=False, tty=True, _preload_content=False)
    try:
        ws.write_channel(4, json.dumps({"Width": 101, "Height": 37}))
        time.sleep(0.5)
        ws.write_stdin("stty size; echo done-$((3*3))\n")
        out = ""
        deadline = time.monotonic() + 20
        while "done-9" not in out and time.monotonic() < deadline and ws.is_open():
            ws.update(timeout=1)
            out += ws.read_stdout() if ws.peek_stdout() else ""
        assert "37 101" in out, out
    finally:
        ws.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_exec_with_piped_stdin_ends_at_its_eof(
    cluster: PeapodCluster, namespace: str, registry: LoopbackRegistry, tmp_path: Path, version: str,
) -> None:
    image = registry.ref("busybox", "1")
    _pod(cluster, namespace, tmp_path, f"sleeper-{version.replace('.', '-')}",
         {"image": image, "command": ["sleep", "3600"]})
    r = cluster.kubectl("exec", "-i", "-n", namespace, f"sleeper-{version.replace('.', '-')}", "--", "cat",
                        version=version, input="piped\n", timeout=20)
    assert (r.returncode, r.stdout) == (0, "piped\n"), r.stderr
