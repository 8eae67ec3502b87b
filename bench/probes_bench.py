"""CPU cost of probing: N pods x 2 HTTP probes (readiness + liveness) every second, each pod in its own
network namespace with an HTTP server on its pod IP (an address on the namespace's loopback).

Needs root. Creates ``peapod-bench-*`` namespaces with ``ip netns add`` and one server process that
listens in all of them (sockets created in each namespace by peapod.node.netns), so the server's CPU
is not counted. Reports the probing process's CPU (user+sys, all threads) as % of one core.
Everything is removed at the end (server by PID, namespaces by name).

    sudo .venv/bin/python bench/probes_bench.py [--smoke] [--pods 110] [--seconds 30] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from peapod.clock import RealClock
from peapod.node.netns import NetnsSocketFactory
from peapod.node.probes import ProbeManager, Prober, Target

PORT = 8080
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


def pod_ip(i: int) -> str:
    return f"10.252.{i // 250}.{i % 250 + 2}"


class _Http(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if b"\r\n\r\n" in self.buf:
            self.t.write(RESPONSE)  # type: ignore[attr-defined]
            self.t.close()


async def serve(paths: list[str]) -> None:
    """The server process: one listening socket per namespace, all on one event loop."""
    factory = NetnsSocketFactory()
    loop = asyncio.get_running_loop()
    for i, path in enumerate(paths):
        sock = factory.new_socket_sync(path)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((pod_ip(i), PORT))
        sock.listen(128)
        await loop.create_server(_Http, sock=sock)
    print("ready", flush=True)
    await asyncio.Event().wait()


def sh(*args: str) -> None:
    subprocess.run(args, check=True)


class Namespaces:
    """``pods`` namespaces with a pod IP on lo, and one server process listening in all of them."""

    def __init__(self, pods: int) -> None:
        tag = secrets.token_hex(3)
        self.names = [f"peapod-bench-{tag}-{i}" for i in range(pods)]
        self.paths = [f"/run/netns/{n}" for n in self.names]
        self.created: list[str] = []
        self.server: subprocess.Popen | None = None

    def __enter__(self) -> Namespaces:
        try:
            for i, n in enumerate(self.names):
                sh("ip", "netns", "add", n)
                self.created.append(n)
                sh("ip", "-n", n, "link", "set", "lo", "up")
                sh("ip", "-n", n, "addr", "add", f"{pod_ip(i)}/32", "dev", "lo")
            self.server = subprocess.Popen([sys.executable, __file__, "--serve", json.dumps(self.paths)],
                                           stdout=subprocess.PIPE, text=True)
            assert self.server.stdout is not None and self.server.stdout.readline().strip() == "ready"
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.send_signal(signal.SIGKILL)
            self.server.wait()
        for n in self.created:
            subprocess.run(["ip", "netns", "del", n], check=False)


async def bench(paths: list[str], seconds: float, period: int) -> dict:
    pods = len(paths)
    mgr = ProbeManager(clock=RealClock(), prober=Prober())
    probe = {"httpGet": {"port": PORT, "path": "/healthz"}, "periodSeconds": period}
    for i in range(pods):
        uid = f"pod-{i}"
        mgr.add_pod({"metadata": {"name": uid, "namespace": "bench", "uid": uid},
                     "spec": {"containers": [{"name": "app", "readinessProbe": probe, "livenessProbe": probe}]}})
        mgr.container_running(uid, "app", Target(f"c{i}", pod_ip=pod_ip(i), netns_path=paths[i]))
    await asyncio.sleep(3)  # warm up: every worker has probed
    ready = sum(bool(mgr.readiness(f"pod-{i}", "app")) for i in range(pods))
    r0, t0, n0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic(), mgr.worker_stats()["probes_run"]
    await asyncio.sleep(seconds)
    r1, t1, n1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic(), mgr.worker_stats()["probes_run"]
    restarts = sum(mgr.restart_request(f"pod-{i}", "app") is not None for i in range(pods))
    await mgr.close()
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    wall = t1 - t0
    probes = n1 - n0
    return {
        "pods": pods, "probes_per_pod": 2, "period_s": period, "seconds": round(wall, 1),
        "probes_per_s": round(probes / wall, 1), "cpu_percent_of_one_core": round(100 * cpu / wall, 1),
        "cpu_us_per_probe": round(1e6 * cpu / max(1, probes)), "ready_pods": ready,
        "restart_requests": restarts,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="5 pods for 2 s: checks the script runs")
    ap.add_argument("--pods", type=int, default=None, help="pods (default 110)")
    ap.add_argument("--seconds", type=float, default=None, help="measurement window (default 30)")
    ap.add_argument("--period", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON to this file")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        asyncio.run(serve(json.loads(args.serve)))
        return
    if os.geteuid() != 0:
        sys.exit("needs root (creates network namespaces)")
    pods = args.pods or (5 if args.smoke else 110)
    seconds = args.seconds or (2.0 if args.smoke else 30.0)
    with Namespaces(pods) as ns:
        r = asyncio.run(bench(ns.paths, seconds, args.period))
    print(json.dumps(r, indent=2))
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
