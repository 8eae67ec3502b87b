"""Probes connect from inside a real network namespace: servers there are reachable through the pod
IP and the namespace's own 127.0.0.1, not from the host; no thread or process per probe."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
import threading

from peapod.clock import RealClock
from peapod.node.netns import connect_in_netns
from peapod.node.probes import Outcome, ProbeManager, Prober, Target
from peapod.node.probes.handlers import http_probe, tcp_probe
from tests.e2e.probes.conftest import Netns, free_port


async def test_http_and_tcp_probes_reach_servers_inside_the_namespace(netns: Netns) -> None:
    port = free_port()
    netns.http_server(port)
    inside = Target("c1", pod_ip=netns.pod_ip, netns_path=netns.path)
    for host in (None, "127.0.0.1"):  # default host = pod IP; or the namespace's own loopback
        act = {"port": port, "path": "/", **({"host": host} if host else {})}
        res = await http_probe(act, {}, inside, 2)
        assert res.outcome == Outcome.SUCCESS, res
        assert "Directory listing" in res.output
    assert (await tcp_probe(netns.pod_ip, port, 2, netns_path=netns.path)).ok
    # The same port on the host's loopback has nothing: the probe really ran inside the namespace.
    host = Target("c1", pod_ip="127.0.0.1", netns_path=None)
    res = await http_probe({"port": port, "path": "/"}, {}, host, 2)
    assert res.output.endswith(f"dial tcp 127.0.0.1:{port}: connect: connection refused")
    # And inside the namespace a closed port is refused with kubelet's text.
    other = free_port()
    res = await http_probe({"port": other, "path": "/healthz"}, {}, inside, 2)
    assert res.output == (f'Get "http://{netns.pod_ip}:{other}/healthz": dial tcp {netns.pod_ip}:{other}: '
                          "connect: connection refused")


async def test_many_concurrent_probes_use_one_helper_thread_and_no_processes(netns: Netns) -> None:
    port = free_port()
    netns.http_server(port)
    inside = Target("c1", pod_ip=netns.pod_ip, netns_path=netns.path)
    await http_probe({"port": port}, {}, inside, 2)  # the helper thread exists from here on
    threads = threading.active_count()
    children = _children()
    results = await asyncio.gather(
        *(tcp_probe(netns.pod_ip, port, 5, netns_path=netns.path) for _ in range(200)))
    results += await asyncio.gather(*(http_probe({"port": port}, {}, inside, 5) for _ in range(50)))
    assert [r for r in results if not r.ok] == []
    assert threading.active_count() == threads
    assert _children() == children


def _children() -> set[str]:
    pid = os.getpid()
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return set(f.read().split())


async def test_connect_in_netns_streams(netns: Netns) -> None:
    port = free_port()
    netns.spawn([sys.executable, "-c", textwrap.dedent(f"""
        import socket
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", {port})); s.listen(1)
        c, _ = s.accept(); c.sendall(c.recv(100).upper()); c.close()
    """)])
    netns.wait_listening(port)
    reader, writer = await connect_in_netns(netns.path, "127.0.0.1", port, 2)
    writer.write(b"hello")
    assert await reader.read(100) == b"HELLO"
    writer.close()


async def test_manager_with_real_clock_tracks_a_server_in_the_namespace(netns: Netns) -> None:
    port = free_port()
    server = netns.http_server(port)
    events: list[tuple[str, str, str]] = []
    mgr = ProbeManager(clock=RealClock(), prober=Prober(),
                       record_event=lambda pod, t, r, m, field_path: events.append((t, r, m)))
    pod = {"metadata": {"name": "web", "namespace": "default", "uid": "u1"},
           "spec": {"containers": [{"name": "app", "ports": [{"name": "http", "containerPort": port}],
                                    "readinessProbe": {"httpGet": {"port": "http", "path": "/"},
                                                       "periodSeconds": 1, "failureThreshold": 1}}]}}
    try:
        mgr.add_pod(pod)
        mgr.container_running("u1", "app", Target("c1", pod_ip=netns.pod_ip, netns_path=netns.path))
        for _ in range(50):
            if mgr.readiness("u1", "app"):
                break
            await asyncio.sleep(0.1)
        assert mgr.readiness("u1", "app") is True
        server.kill()
        server.wait()
        for _ in range(50):
            if not mgr.readiness("u1", "app"):
                break
            await asyncio.sleep(0.1)
        assert mgr.readiness("u1", "app") is False
        assert ("Warning", "Unhealthy",
                f'Readiness probe failed: Get "http://{netns.pod_ip}:{port}/": '
                f"dial tcp {netns.pod_ip}:{port}: connect: connection refused") in events
    finally:
        await mgr.close()


async def test_grpc_probe_inside_the_namespace(netns: Netns) -> None:
    import pytest

    pytest.importorskip("grpc_health.v1.health")
    port = free_port()
    netns.spawn([sys.executable, "-c", textwrap.dedent(f"""
        from concurrent import futures
        import grpc
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        h = health.HealthServicer()
        h.set("", health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(h, server)
        server.add_insecure_port("0.0.0.0:{port}")
        server.start()
        server.wait_for_termination()
    """)])
    netns.wait_listening(port)
    res = await Prober().run({"grpc": {"port": port}}, container={},
                             target=Target("c1", pod_ip=netns.pod_ip, netns_path=netns.path), timeout=5)
    assert res.outcome == Outcome.SUCCESS and res.output == "service healthy"


async def test_missing_namespace_fails_cleanly() -> None:
    res = await tcp_probe("127.0.0.1", 80, 1, netns_path="/run/netns/peapod-does-not-exist")
    assert res.outcome == Outcome.FAILURE
    assert res.output == "dial tcp 127.0.0.1:80: connect: no such file or directory"
