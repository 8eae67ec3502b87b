"""A split node on this machine: a real ``peapod server`` and a ``peapod agent`` joined to it with the
server's ``DATA/node-token``, so the agent can be SIGKILLed alone while the API server keeps serving.

::

    node = SplitNode(tmp / "split", registries=("127.0.0.1",)).start()
    node.server.kubectl("get", "nodes")          # the server is a PeapodCluster (command="server")
    node.kill_agent()                           # SIGKILL, as a crash would: pods live on under conmon
    node.restart_agent()                        # same data dir and credentials; adopts what runs
    assert node.stop() == []                    # agent (and its pods), then the server, by PID
    assert node.leftovers() == {}               # nothing of it left on the machine

The server gets the pod CIDR of the test (``--cluster-cidr``, one block for the one node) and the
agent a bridge of its own and ``--allowed-registry`` (loopback only by default), like
``tests/e2e/test_join.py``. After a SIGKILL ``--keep-pods`` makes no difference (the agent never
gets to stop anything): the next agent re-adopts the running pods either way. With ``keep_pods=True``
a SIGTERM leaves the pods running too, and ``stop()`` removes them with ``peapod down``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from peapod.testing.cluster import STARTED_BRIDGES, PeapodCluster, free_port, peapod_executable

JOINED = "peapod agent: node "  # the agent prints this once it has started (pods adopted)
# Node data dirs of the split nodes this process started (session checks look for their cgroups).
STARTED_NODE_DIRS: set[Path] = set()


@dataclass
class SplitNode:
    base: Path
    registries: Sequence[str] = ("127.0.0.1", "localhost")
    server_args: Sequence[str] = ()
    agent_args: Sequence[str] = ()
    keep_pods: bool = False  # agents run with --keep-pods (a SIGTERM leaves pods running)
    server: PeapodCluster = field(init=False)
    agent_proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    agent_port: int = field(default=0, init=False)
    node_name: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self.base = Path(self.base).resolve()
        self.server = PeapodCluster(self.base / "server", command="server")
        # The one node gets the whole of the test's pod CIDR (a /24: room for 100+ pods).
        self.server.extra_args = ["--cluster-cidr", self.server.pod_cidr, "--node-cidr-mask-size",
                                  self.server.pod_cidr.rsplit("/", 1)[1], *self.server_args]
        self.node_name = f"split-{self.server.bridge}"
        self.agent_port = free_port()

    # -- paths ---------------------------------------------------------------------------------

    @property
    def agent_dir(self) -> Path:
        """The agent's ``--data-dir`` (its pods' runtime is under ``node/``, as for ``peapod up``)."""
        return self.base / "agent"

    @property
    def agent_log(self) -> Path:
        return self.base / "agent.log"

    @property
    def bridge(self) -> str:
        return self.server.bridge

    def agent_argv(self) -> list[str]:
        args = [*peapod_executable(), "agent", "--server", self.server.url, "--node-name", self.node_name,
                "--data-dir", str(self.agent_dir), "--node-ip", "127.0.0.1", "--port", str(self.agent_port),
                "--bridge", self.bridge, "--token-file", str(self.server.data_dir / "node-token")]
        for reg in self.registries:
            args += ["--allowed-registry", reg]
        if self.keep_pods:
            args.append("--keep-pods")
        return [*args, *self.agent_args]

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> SplitNode:
        self.base.mkdir(parents=True, exist_ok=True)
        self.server.start(timeout=timeout)
        STARTED_BRIDGES.add(self.bridge)
        STARTED_NODE_DIRS.add(self.agent_dir / "node")
        try:
            self.restart_agent(timeout)
            self._wait(lambda: self.node_ready() == "True", timeout, f"node {self.node_name} Ready")
        except BaseException:
            self.stop()
            raise
        return self

    def agent_alive(self) -> bool:
        return self.agent_proc is not None and self.agent_proc.poll() is None

    def kill_agent(self) -> int | None:
        """SIGKILL the agent, as a crash would; its pods keep running under their conmons. Its old pid."""
        if not self.agent_alive():
            return None
        assert self.agent_proc is not None
        self.agent_proc.send_signal(signal.SIGKILL)
        self.agent_proc.wait(10)
        return self.agent_proc.pid

    def terminate_agent(self, timeout: float = 120.0) -> int | None:
        """SIGTERM the agent and wait: it stops its pods unless it runs with ``--keep-pods``. Exit code."""
        if self.agent_proc is None:
            return None
        if self.agent_proc.poll() is None:
            self.agent_proc.send_signal(signal.SIGTERM)
            try:
                self.agent_proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.agent_proc.kill()
                self.agent_proc.wait(10)
        return self.agent_proc.returncode

    def restart_agent(self, timeout: float = 90.0) -> int:
        """Start the agent (again) on its data dir; returns once it has started (adopted its pods). Its pid."""
        if self.agent_alive():
            raise RuntimeError(f"the agent of {self.node_name} is running")
        joined = self._joined_count()
        with open(self.agent_log, "ab") as log:
            self.agent_proc = subprocess.Popen(self.agent_argv(), stdout=log, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL)

        def started() -> bool:
            if self.agent_proc is not None and self.agent_proc.poll() is not None:
                raise RuntimeError(f"peapod agent exited with {self.agent_proc.returncode}:\n{self.log_tail()}")
            return self._joined_count() > joined

        self._wait(started, timeout, "the agent has started")
        return self.agent_proc.pid

    def stop(self) -> list[str]:
        """The agent (SIGTERM: its pods stop with it; with ``keep_pods``, ``peapod down`` removes them),
        then the server, each by its PID. Returns the containers a stopping agent without ``keep_pods``
        left behind (a bug; ``peapod down`` removes them anyway, so the machine is clean)."""
        code = self.terminate_agent()
        if code not in (0, None):
            print(f"peapod agent exited with {code}:\n{self.log_tail()}")
        left = [] if self.keep_pods else self.runc_containers()
        if self.keep_pods or left:
            self.down()
        if self.server.stop() not in (0, None):
            print(self.server.log_tail())
        return left

    def down(self) -> str:
        """``peapod down`` on the agent's data dir: remove what its pods hold (the agent must be stopped)."""
        if not (self.agent_dir / "node").exists():
            return ""
        p = subprocess.run([*peapod_executable(), "down", "--data-dir", str(self.agent_dir)],
                           capture_output=True, text=True, timeout=120)
        return p.stdout + p.stderr

    # -- observation ---------------------------------------------------------------------------

    def log_tail(self, n: int = 60) -> str:
        if not self.agent_log.exists():
            return ""
        return "\n".join(self.agent_log.read_text(errors="replace").splitlines()[-n:])

    def _joined_count(self) -> int:
        if not self.agent_log.exists():
            return 0
        return self.agent_log.read_text(errors="replace").count(JOINED + self.node_name + " ")

    def node_ready(self) -> str:
        """The Ready condition's status of the node ("True", "False", "Unknown"; "" when absent)."""
        got = self.server.kubectl("get", "node", self.node_name, "-o", "json")
        if got.returncode != 0:
            return ""
        for c in (got.json().get("status") or {}).get("conditions") or []:
            if c.get("type") == "Ready":
                return str(c.get("status"))
        return ""

    def runc_containers(self) -> list[str]:
        root = self.agent_dir / "node" / "runtime" / "runc"
        if not root.is_dir():
            return []
        p = subprocess.run(["runc", "--root", str(root), "list", "--format", "json"],
                           capture_output=True, text=True, timeout=30)
        return [c["id"] for c in json.loads(p.stdout or "null") or []]

    def leftovers(self) -> dict[str, list[str]]:
        """What of this split node is still on the machine; ``{}`` after ``stop()``."""
        found = {
            "processes": processes_mentioning(str(self.base)),
            "mounts": mounts_under(self.base),
            "runc": self.runc_containers(),
            "bridge": [self.bridge] if Path(f"/sys/class/net/{self.bridge}").exists() else [],
            "cgroups": cgroups_of(self.agent_dir / "node"),
        }
        return {k: v for k, v in found.items() if v}

    @staticmethod
    def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting until {what}")
            time.sleep(0.1)


def processes_mentioning(text: str) -> list[str]:
    """Processes whose command line contains ``text`` (a data dir): peapod, conmon, container helpers."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            out.append(f"{entry} {cmd[:160]}")
    return out


def mounts_under(path: Path) -> list[str]:
    prefix = str(path)
    return [ln.split()[1] for ln in Path("/proc/mounts").read_text().splitlines() if prefix in ln.split()[1]]


def cgroups_of(node_dir: Path) -> list[str]:
    """The agent's cgroup parent (named after its node dir, under our own cgroups as the agent's
    child processes resolve it) wherever it still exists."""
    from peapod.node.agent import cgroup_parent_for
    from peapod.node.runtime.cgroups import CgroupManager

    cg = CgroupManager(cgroup_parent_for(node_dir))
    return sorted(str(d) for d in cg.dirs(cg.parent).values() if d.exists())
