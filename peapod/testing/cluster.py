"""A real ``peapod up`` in a temporary directory, for end-to-end tests and benchmarks.

Starts the ``peapod`` console script as a child process on a free loopback port, waits for
``/readyz``, and offers a ``kubectl`` runner bound to the cluster's kubeconfig with a private
discovery cache. ``stop()`` ends the process by its PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KUBECTL = os.environ.get("PEAPOD_KUBECTL", "kubectl")
# Bridges of the `peapod up` clusters this process started (tests check none is left behind).
STARTED_BRIDGES: set[str] = set()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peapod_executable() -> list[str]:
    exe = Path(sys.executable).with_name("peapod")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "peapod.cli.main"]


@dataclass
class KubectlResult:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class PeapodCluster:
    data_dir: Path
    port: int = 0
    command: str = "up"
    extra_args: list[str] = field(default_factory=list)
    # Tests pull only from loopback registries: refuse any other before a packet leaves.
    allowed_registries: tuple[str, ...] = ("127.0.0.1", "localhost")
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    bridge: str = ""
    pod_cidr: str = ""

    def __post_init__(self) -> None:
        if not self.port:
            self.port = free_port()
        rng = random.SystemRandom()
        self.bridge = self.bridge or f"ppt{rng.randrange(16**6):06x}"
        self.pod_cidr = self.pod_cidr or f"10.{rng.randrange(100, 250)}.{rng.randrange(256)}.0/24"

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> PeapodCluster:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / "peapod.log"
        log = open(self.log_path, "ab")
        args = [*peapod_executable(), self.command, "--data-dir", str(self.data_dir), "--port", str(self.port)]
        if self.command == "up":
            for reg in self.allowed_registries:
                args += ["--allowed-registry", reg]
            # A bridge and pod CIDR of its own: clusters of concurrent test runs never share one.
            args += ["--bridge", self.bridge, "--pod-cidr", self.pod_cidr]
            STARTED_BRIDGES.add(self.bridge)
        self.proc = subprocess.Popen(
            [*args, *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"peapod exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", context=ctx, timeout=2) as r:
                    if r.status == 200 and self.kubeconfig.exists():
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"peapod not ready after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 60) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def admin_token(self) -> str:
        cfg = yaml.safe_load(self.kubeconfig.read_text())
        return cfg["users"][0]["user"]["token"]

    def kubectl(
        self, *args: str, input: str | None = None, version: str | None = None, timeout: float = 60.0,
        check: bool = False,
    ) -> KubectlResult:
        """Run kubectl (the PATH dispatcher, or ``kubectl.1.<version>`` when given)."""
        exe = KUBECTL if version is None else _versioned_kubectl(version)
        cache = self.data_dir / "kubectl-cache"
        cmd = [exe, f"--kubeconfig={self.kubeconfig}", f"--cache-dir={cache}", *args]
        p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        res = KubectlResult(p.returncode, p.stdout, p.stderr)
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({p.returncode}):\n{p.stderr}{p.stdout}")
        return res

    def python_client(self) -> Any:
        """An official ``kubernetes`` ApiClient for this cluster."""
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=cfg)
        return client.ApiClient(cfg)


def _versioned_kubectl(version: str) -> str:
    base = Path(os.path.realpath(_which(KUBECTL))).parent
    exe = base / f"kubectl.{version}"
    if not exe.exists():
        raise FileNotFoundError(f"{exe} not found")
    return str(exe)


def _which(name: str) -> str:
    for d in os.environ.get("PATH", "").split(os.pathsep):
        p = Path(d) / name
        if p.exists():
            return str(p)
    raise FileNotFoundError(name)
