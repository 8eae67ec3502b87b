"""In-memory ContainerRuntime and PodNetwork for agent unit tests: record calls, fail on demand,
simulate container exits. No processes, no sleeps; time comes from an injected clock."""

from __future__ import annotations

import asyncio
import ipaddress
import signal as _signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from peapod.clock import Clock, RealClock
from peapod.node.network.types import NetworkError, NetworkStatus, PortMapping
from peapod.node.runtime.types import (
    ContainerNotFound,
    ContainerRuntimeError,
    ContainerState,
    ContainerStatus,
    ExecProcess,
)


@dataclass
class Call:
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


class _Failures:
    def __init__(self) -> None:
        self._fail: dict[str, list[Exception]] = {}
        self.calls: list[Call] = []

    def fail(self, method: str, exc: Exception | None = None, *, times: int = 1) -> None:
        """Make the next ``times`` calls of ``method`` raise ``exc``."""
        self._fail.setdefault(method, []).extend([exc or self._default_error(method)] * times)

    def _default_error(self, method: str) -> Exception:
        return Exception(f"injected {method} failure")

    def _record(self, method: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append(Call(method, args, kwargs))
        pending = self._fail.get(method)
        if pending:
            raise pending.pop(0)

    def called(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]


class FakeRuntime(_Failures):
    """Containers are dicts of state; ``exit(id, code)`` simulates the process ending.

    ``stop`` ends the container with 128+signal unless ``ignore_sigterm`` holds the id, in which
    case it is SIGKILLed (137) "after the timeout" (no waiting)."""

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__()
        self.clock = clock or RealClock()
        self.containers: dict[str, ContainerState] = {}
        self.ignore_sigterm: set[str] = set()
        self.exec_results: dict[str, tuple[int, bytes, bytes]] = {}
        self._pid = 1000

    def _default_error(self, method: str) -> Exception:
        return ContainerRuntimeError(f"injected {method} failure")

    def _get(self, cid: str) -> ContainerState:
        try:
            return self.containers[cid]
        except KeyError:
            raise ContainerNotFound(cid) from None

    async def create(self, container_id: str, bundle_dir: str, log_path: str) -> None:
        self._record("create", container_id, bundle_dir, log_path)
        if container_id in self.containers:
            raise ContainerRuntimeError(f"container {container_id} already exists")
        self._pid += 1
        self.containers[container_id] = ContainerState(
            id=container_id, status=ContainerStatus.CREATED, pid=self._pid, created_at=self.clock.now(),
            bundle=bundle_dir, log_path=log_path,
        )

    async def start(self, container_id: str) -> None:
        self._record("start", container_id)
        st = self._get(container_id)
        if st.status != ContainerStatus.CREATED:
            raise ContainerRuntimeError(f"cannot start a {st.status} container")
        st.status = ContainerStatus.RUNNING
        st.started_at = self.clock.now()

    def exit(self, container_id: str, code: int, *, oom: bool = False) -> None:
        """Simulate the container's process exiting."""
        st = self._get(container_id)
        st.status = ContainerStatus.STOPPED
        st.exit_code = code
        st.oom_killed = oom
        st.pid = 0
        st.finished_at = self.clock.now()

    async def kill(self, container_id: str, signal: int) -> None:
        self._record("kill", container_id, signal)
        st = self._get(container_id)
        if st.status in (ContainerStatus.RUNNING, ContainerStatus.CREATED):
            if signal == _signal.SIGKILL or container_id not in self.ignore_sigterm:
                self.exit(container_id, 128 + int(signal))

    async def stop(self, container_id: str, timeout: float, signal: int = _signal.SIGTERM) -> None:
        self._record("stop", container_id, timeout, signal)
        st = self._get(container_id)
        if st.status not in (ContainerStatus.RUNNING, ContainerStatus.CREATED):
            return
        if container_id in self.ignore_sigterm and signal != _signal.SIGKILL:
            self.exit(container_id, 137)
        else:
            self.exit(container_id, 128 + int(signal))

    async def remove(self, container_id: str) -> None:
        self._record("remove", container_id)
        self.containers.pop(container_id, None)

    async def state(self, container_id: str) -> ContainerState:
        self._record("state", container_id)
        return self._get(container_id)

    async def list(self) -> list[ContainerState]:
        self._record("list")
        return [self.containers[k] for k in sorted(self.containers)]

    async def exec(
        self, container_id: str, argv: Sequence[str], *, tty: bool = False, stdin: bool = False,
        env: Sequence[str] = (), cwd: str | None = None,
    ) -> ExecProcess:
        """Runs a real ``sh -c`` on the host printing the configured output (exec_results[id])."""
        self._record("exec", container_id, tuple(argv), tty=tty, stdin=stdin)
        if self._get(container_id).status != ContainerStatus.RUNNING:
            raise ContainerRuntimeError(f"container {container_id} is not running")
        code, out, err = self.exec_results.get(container_id, (0, b"", b""))
        script = f"printf '%s' \"$1\"; printf '%s' \"$2\" >&2; exit {int(code)}"
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", script, "sh", out.decode(), err.decode(),
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        return ExecProcess(proc)


class FakePodNetwork(_Failures):
    """Hands out IPs from ``subnet`` in order; remembers which pod has which."""

    def __init__(self, subnet: str = "10.77.0.0/16") -> None:
        super().__init__()
        self.net = ipaddress.ip_network(subnet)
        self._hosts = self.net.hosts()
        self.gateway = str(next(self._hosts))
        self.pods: dict[str, NetworkStatus] = {}
        self.port_mappings: dict[str, list[PortMapping]] = {}

    def _default_error(self, method: str) -> Exception:
        return NetworkError(f"injected {method} failure")

    async def setup(
        self, pod_uid: str, netns_path: str, port_mappings: Sequence[PortMapping] = (), *,
        pod_name: str = "", pod_namespace: str = "",
    ) -> NetworkStatus:
        self._record("setup", pod_uid, netns_path, tuple(port_mappings))
        if pod_uid not in self.pods:
            ip = str(next(self._hosts))
            self.pods[pod_uid] = NetworkStatus(ips=[ip], gateway=self.gateway,
                                               cidrs=[f"{ip}/{self.net.prefixlen}"])
        self.port_mappings[pod_uid] = list(port_mappings)
        return self.pods[pod_uid]

    async def teardown(self, pod_uid: str, netns_path: str | None) -> None:
        self._record("teardown", pod_uid, netns_path)
        self.pods.pop(pod_uid, None)
        self.port_mappings.pop(pod_uid, None)

    async def check(self, pod_uid: str, netns_path: str) -> None:
        self._record("check", pod_uid, netns_path)
        if pod_uid not in self.pods:
            raise NetworkError(f"no network for pod {pod_uid}")

    def status(self, pod_uid: str) -> NetworkStatus | None:
        return self.pods.get(pod_uid)
