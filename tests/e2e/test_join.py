"""Multi-node control plane: servers sharing one CA through etcd, and a `peapod agent` that joins with
the CA-pinning node token and runs a real pod."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from peapod.testing.cluster import STARTED_BRIDGES, PeapodCluster, free_port, peapod_executable
from peapod.testing.etcd import EtcdCluster
from peapod.testing.registry import LoopbackRegistry
from peapod.testing.waiting import wait_until as wait_for


@pytest.mark.etcd
@pytest.mark.skipif(not EtcdCluster.available(), reason="etcd is not installed")
def test_servers_on_one_etcd_share_the_ca_tokens_and_watches(tmp_path: Path) -> None:
    etcd = EtcdCluster(tmp_path / "etcd")
    asyncio.run(etcd.start())
    servers: list[PeapodCluster] = []
    try:
        spec = "etcd://" + ",".join(e.removeprefix("http://") for e in etcd.endpoints)
        for name in ("a", "b"):
            servers.append(PeapodCluster(tmp_path / name, command="server", extra_args=["--store", spec]).start())
        a, b = servers
        assert (a.data_dir / "tls" / "ca.crt").read_bytes() == (b.data_dir / "tls" / "ca.crt").read_bytes()
        assert (a.data_dir / "node-token").read_text() == (b.data_dir / "node-token").read_text()
        # One kubeconfig works against both servers (same CA, same admin token).
        watch = subprocess.Popen(
            ["kubectl", f"--kubeconfig={a.kubeconfig}", f"--server={b.url}", "get", "configmaps", "-n", "default",
             "--watch", "-o", "name", "--request-timeout=30s"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(1.0)  # let the watch start before the write
            a.kubectl("create", "configmap", "through-a", "--from-literal=k=v", check=True)
            assert watch.stdout is not None
            deadline = time.monotonic() + 20
            seen = []
            while time.monotonic() < deadline:
                line = watch.stdout.readline().strip()
                seen.append(line)
                if line == "configmap/through-a":
                    break
            assert "configmap/through-a" in seen, (seen, watch.stderr.read() if watch.poll() is not None else "")
        finally:
            watch.terminate()
            watch.wait(10)
    finally:
        for s in servers:
            s.stop()
        asyncio.run(etcd.stop())


class Agent:
    """A `peapod agent` child process, stopped by its PID."""

    def __init__(self, data_dir: Path, args: list[str]) -> None:
        self.data_dir = data_dir
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"{data_dir.name}.log"

    def start(self, *extra: str) -> Agent:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([*peapod_executable(), "agent", *self.args, *extra],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.mark.skipif(os.geteuid() != 0, reason="running pods needs root")
def test_an_agent_joins_with_the_token_and_runs_a_pod(tmp_path: Path, registry: LoopbackRegistry) -> None:
    server = PeapodCluster(tmp_path / "server", command="server")
    # The node's block comes out of this test's own pod CIDR (a /24, cut into /26 blocks).
    server.extra_args = ["--cluster-cidr", server.pod_cidr, "--node-cidr-mask-size", "26",
                         "--default-unreachable-toleration-seconds", "7"]
    server.start()
    node_name = f"joined-{server.bridge}"
    agent_dir = tmp_path / "agent"
    common = ["--server", server.url, "--node-name", node_name, "--data-dir", str(agent_dir), "--node-ip",
              "127.0.0.1", "--port", str(free_port()), "--bridge", server.bridge, "--allowed-registry", "127.0.0.1"]
    STARTED_BRIDGES.add(server.bridge)
    agent = Agent(agent_dir, [*common, "--token-file", str(server.data_dir / "node-token")])
    try:
        # A wrong CA pin and a wrong token are refused, each with one line.
        token = (server.data_dir / "node-token").read_text().strip()
        prefix, pin, secret = token.split("::")
        for bad, expected in ((f"{prefix}::{'0' * 64}::{secret}", "does not match the join token's pin"),
                              (f"{prefix}::{pin}::{secret[:7]}{'x' * 16}", "refused the join token")):
            (tmp_path / "bad-token").write_text(bad)
            p = subprocess.run([*peapod_executable(), "agent", *common, "--data-dir", str(tmp_path / "bad"),
                                "--token-file", str(tmp_path / "bad-token")],
                               capture_output=True, text=True, timeout=60)
            assert p.returncode == 1 and expected in p.stderr, p.stderr
            assert len(p.stderr.strip().splitlines()) == 1, p.stderr
        agent.start()
        wait_for(lambda: server.kubectl("get", "node", node_name, "-o",
                                        "jsonpath={.status.conditions[?(@.type=='Ready')].status}").stdout == "True",
                 60, f"node {node_name} Ready\n{agent.text()}")
        cidr = server.kubectl("get", "node", node_name, "-o", "jsonpath={.spec.podCIDR}", check=True).stdout
        assert cidr.endswith("/26") and cidr.rsplit(".", 1)[0] == server.pod_cidr.rsplit(".", 1)[0], cidr
        ip = server.kubectl("get", "node", node_name, "-o",
                            "jsonpath={.status.addresses[?(@.type=='InternalIP')].address}", check=True).stdout
        assert ip == "127.0.0.1"
        image = registry.ref("busybox", "1")
        server.kubectl("run", "hello", f"--image={image}", "--restart=Never",
                       f"--overrides={{\"spec\":{{\"nodeName\":\"{node_name}\"}}}}", "--",
                       "sh", "-c", "echo hello from $(hostname -i); sleep 3600", check=True)
        wait_for(lambda: server.kubectl("get", "pod", "hello", "-o", "jsonpath={.status.phase}").stdout == "Running",
                 90, f"pod Running\n{agent.text()[-3000:]}")
        tolerations = server.kubectl("get", "pod", "hello", "-o", "json", check=True).json()["spec"]["tolerations"]
        assert {(t["key"], t["tolerationSeconds"]) for t in tolerations} == {
            ("node.kubernetes.io/not-ready", 300), ("node.kubernetes.io/unreachable", 7)}
        pod_ip = server.kubectl("get", "pod", "hello", "-o", "jsonpath={.status.podIP}", check=True).stdout
        assert pod_ip.rsplit(".", 1)[0] == cidr.rsplit(".", 1)[0], (pod_ip, cidr)
        # Logs and exec go API server -> agent (node-ip:port) with the apiserver-kubelet-client cert.
        wait_for(lambda: "hello from" in server.kubectl("logs", "hello").stdout, 20, "pod logs")
        assert server.kubectl("exec", "hello", "--", "echo", "ok", check=True).stdout.strip() == "ok"
        assert agent.stop() == 0, agent.text()[-3000:]
        # A restart reuses the kept credentials: no token needed.
        agent.args = common
        agent.start()
        wait_for(lambda: "joined" in agent.text().split("stopping")[-1], 60, f"agent restarted\n{agent.text()}")
        assert "using the node credentials kept in" in agent.text()
        server.kubectl("delete", "pod", "hello", "--wait=true", "--timeout=60s", check=True)
    finally:
        agent.stop()
        server.stop()
