"""Real network namespaces (root): ``ip netns add`` with loopback up and a pod-like address on lo,
servers started inside with ``ip netns exec``. Everything is removed by PID / name in teardown."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "e2e/probes" not in str(item.fspath):
            continue
        item.add_marker(pytest.mark.e2e)
        if os.geteuid() != 0:
            item.add_marker(pytest.mark.skip(reason="needs root"))
        elif shutil.which("ip") is None:
            item.add_marker(pytest.mark.skip(reason="needs iproute2"))


# http.server with a deep accept queue (its default of 5 drops connections under concurrent probes).
HTTP_SERVER = """
import http.server, sys
class S(http.server.ThreadingHTTPServer):
    request_queue_size = 1024
S(("0.0.0.0", int(sys.argv[1])), http.server.SimpleHTTPRequestHandler).serve_forever()
"""


@dataclass
class Netns:
    name: str
    path: str
    pod_ip: str
    procs: list[subprocess.Popen] = field(default_factory=list)

    def spawn(self, argv: Sequence[str]) -> subprocess.Popen:
        """Run a process inside the namespace (``ip netns exec`` execs it: the PID is the process)."""
        p = subprocess.Popen(["ip", "netns", "exec", self.name, *argv], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.procs.append(p)
        return p

    def http_server(self, port: int) -> subprocess.Popen:
        p = self.spawn([sys.executable, "-c", HTTP_SERVER, str(port)])
        self.wait_listening(port)
        return p

    def wait_listening(self, port: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = subprocess.run(["ip", "netns", "exec", self.name, "ss", "-Hltn", f"sport = :{port}"],
                                 capture_output=True, text=True).stdout
            if out.strip():
                return
            time.sleep(0.1)
        raise TimeoutError(f"nothing listens on {port} in {self.name}")


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def netns() -> Iterator[Netns]:
    name = f"peapod-probe-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    pod_ip = f"10.251.{secrets.randbelow(250)}.{2 + secrets.randbelow(250)}"
    ns = Netns(name, f"/run/netns/{name}", pod_ip=pod_ip)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        # The "pod IP" lives only inside the namespace (on lo): nothing leaves the machine.
        subprocess.run(["ip", "-n", name, "addr", "add", f"{ns.pod_ip}/32", "dev", "lo"], check=True)
        yield ns
    finally:
        for p in ns.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            if p.stderr:
                p.stderr.close()
        subprocess.run(["ip", "netns", "del", name], check=False)
        assert not os.path.exists(ns.path)
