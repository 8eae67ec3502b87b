"""Running one probe: exec, httpGet, tcpSocket, grpc -- kubelet's semantics and output texts.

Network probes connect from inside the pod's network namespace (:mod:`peapod.node.netns`): no
process and no thread per probe. Only exec probes start a process (``runc exec``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Mapping, Sequence
from typing import Any

from peapod.node.netns import NetnsSocketFactory, connect_in_netns
from peapod.node.probes.grpc import grpc_probe
from peapod.node.probes.httpclient import HttpError, HttpResponse, format_url, http_get
from peapod.node.probes.types import MAX_OUTPUT, PROBE_USER_AGENT, Outcome, ProbeResult, Target
from peapod.node.probes.util import ProbeError, dial_error, go_quote, resolve_port
from peapod.node.runtime.types import ContainerRuntime
from peapod.node.volumes.subpath import expand

Obj = Mapping[str, Any]
# After a timed-out exec's SIGTERM (runc forwards it into the container), SIGKILL runc after this.
EXEC_KILL_GRACE = 1.0


def expand_command(command: Sequence[str], container: Obj) -> list[str]:
    """kubelet's ExpandContainerCommandOnlyStatic: ``$(VAR)`` from the container's literal env."""
    env = {e.get("name", ""): e.get("value", "") or "" for e in container.get("env") or ()}

    def lookup(name: str) -> str:
        return env[name] if name in env else f"$({name})"

    return [expand(str(arg), lookup) for arg in command]


async def _drain(stream: asyncio.StreamReader | None, into: bytearray, cap: int) -> None:
    if stream is None:
        return
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            return
        room = cap - len(into)
        if room > 0:
            into += chunk[:room]


async def _reap_later(proc: asyncio.subprocess.Process) -> None:
    """Stop a timed-out exec: SIGTERM (runc forwards it into the container), then SIGKILL runc."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), EXEC_KILL_GRACE)
        return
    except TimeoutError:
        pass
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    # wait() also waits for the pipes, which a process left in the container may hold: don't hang.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), 5)


_background: set[asyncio.Task] = set()


async def run_exec(
    runtime: ContainerRuntime, container_id: str, command: Sequence[str], timeout: float | None,
) -> tuple[int | None, bytes, bytes]:
    """Run ``command`` in the container: (exit code, stdout, stderr), each capped at 10 KiB.

    Exit code None means it timed out; the process is then stopped in the background."""
    proc = (await runtime.exec(container_id, list(command))).process
    out, err = bytearray(), bytearray()
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(_drain(proc.stdout, out, MAX_OUTPUT), _drain(proc.stderr, err, MAX_OUTPUT))
            await proc.wait()
    except (TimeoutError, asyncio.CancelledError) as e:
        task = asyncio.create_task(_reap_later(proc))
        _background.add(task)
        task.add_done_callback(_background.discard)
        if isinstance(e, asyncio.CancelledError):
            raise
        return None, bytes(out), bytes(err)
    return proc.returncode, bytes(out), bytes(err)


async def exec_probe(
    runtime: ContainerRuntime, container_id: str, command: Sequence[str], timeout: float,
) -> ProbeResult:
    try:
        code, out, err = await run_exec(runtime, container_id, command, timeout)
    except Exception as e:  # the runtime could not start the exec: kubelet's "probe errored"
        return ProbeResult(Outcome.UNKNOWN, error=str(e) or type(e).__name__)
    if code is None:
        return ProbeResult(Outcome.FAILURE, f"command {go_quote(' '.join(command))} timed out")
    text = (out + err)[:MAX_OUTPUT].decode(errors="replace")
    return ProbeResult(Outcome.SUCCESS if code == 0 else Outcome.FAILURE, text)


def http_url(action: Obj, container: Obj, pod_ip: str | None) -> tuple[str, list[tuple[str, str]]]:
    """The URL and headers of an httpGet action (host defaults to the pod IP)."""
    scheme = str(action.get("scheme") or "HTTP").lower()
    host = action.get("host") or pod_ip or "127.0.0.1"
    port = resolve_port(action.get("port"), container)
    headers = [(h.get("name", ""), h.get("value", "")) for h in action.get("httpHeaders") or ()]
    return format_url(scheme, host, port, action.get("path") or ""), headers


def http_result(resp: HttpResponse) -> ProbeResult:
    """kubelet's DoHTTPProbe verdict: 200-399 succeed; a 3xx that wasn't followed is a warning."""
    body = resp.body.decode(errors="replace")
    if 200 <= resp.status < 400:
        if resp.status >= 300:
            return ProbeResult(Outcome.WARNING, f"Probe terminated redirects, Response body: {body}")
        return ProbeResult(Outcome.SUCCESS, body)
    return ProbeResult(Outcome.FAILURE, f"HTTP probe failed with statuscode: {resp.status}")


async def http_probe(
    action: Obj, container: Obj, target: Target, timeout: float, *, factory: NetnsSocketFactory | None = None,
) -> ProbeResult:
    try:
        url, headers = http_url(action, container, target.pod_ip)
    except ProbeError as e:
        return ProbeResult(Outcome.UNKNOWN, error=str(e))
    try:
        resp = await http_get(url, headers=headers, timeout=timeout, netns_path=target.netns_path,
                              user_agent=PROBE_USER_AGENT, factory=factory)
    except HttpError as e:
        return ProbeResult(Outcome.FAILURE, str(e))
    return http_result(resp)


async def tcp_probe(
    host: str, port: int, timeout: float, *, netns_path: str | None,
    factory: NetnsSocketFactory | None = None,
) -> ProbeResult:
    """Success when a TCP connection opens (it is closed right away)."""
    try:
        _, writer = await connect_in_netns(netns_path, host, port, timeout, factory=factory)
    except (OSError, TimeoutError) as e:
        return ProbeResult(Outcome.FAILURE, dial_error(host, port, e))
    writer.close()
    return ProbeResult(Outcome.SUCCESS, "")


class Prober:
    """Runs probe handlers for the manager; ``runtime`` is needed only for exec probes."""

    def __init__(
        self, *, runtime: ContainerRuntime | None = None, factory: NetnsSocketFactory | None = None,
    ) -> None:
        self.runtime = runtime
        self.factory = factory

    async def run(self, handler: Obj, *, container: Obj, target: Target, timeout: float) -> ProbeResult:
        if handler.get("exec") is not None:
            if self.runtime is None:
                return ProbeResult(Outcome.UNKNOWN, error="no container runtime for exec probes")
            command = expand_command(handler["exec"].get("command") or (), container)
            return await exec_probe(self.runtime, target.container_id, command, timeout)
        if handler.get("httpGet") is not None:
            return await http_probe(handler["httpGet"], container, target, timeout, factory=self.factory)
        if handler.get("tcpSocket") is not None:
            action = handler["tcpSocket"]
            try:
                port = resolve_port(action.get("port"), container)
            except ProbeError as e:
                return ProbeResult(Outcome.UNKNOWN, error=str(e))
            host = action.get("host") or target.pod_ip or "127.0.0.1"
            return await tcp_probe(host, port, timeout, netns_path=target.netns_path, factory=self.factory)
        if handler.get("grpc") is not None:
            action = handler["grpc"]
            host = target.pod_ip or "127.0.0.1"
            return await grpc_probe(host, int(action.get("port") or 0), action.get("service") or "", timeout,
                                    netns_path=target.netns_path, factory=self.factory)
        return ProbeResult(Outcome.UNKNOWN, error=f"missing probe handler for {container.get('name')}")
