"""Container lifecycle hooks (postStart, preStop) with kubelet's semantics and event texts.

Handlers: ``exec`` (runc exec; a non-zero exit fails), ``httpGet`` (from inside the pod's network
namespace; only a failed request fails -- kubelet ignores the status code -- and an HTTPS hook
answered in plain HTTP is retried over HTTP), ``sleep`` (on the injected clock). ``tcpSocket`` is
accepted by the API only for compatibility: kubelet fails such a hook at run time, and so do we.

- :func:`run_post_start`: on failure records ``FailedPostStartHook`` with kubelet's message; the
  caller then kills the container (kubelet's kill reason/message: "FailedPostStartHook").
- :func:`run_pre_stop`: bounded by the termination deadline; on failure records ``FailedPreStopHook``
  ("PreStopHook failed": kubelet keeps the details out of the event). Returns the time it took, which
  the caller subtracts from the grace period (kubelet keeps at least 2 s for the stop itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from peapod.clock import Clock
from peapod.node.netns import NetnsSocketFactory
from peapod.node.probes.handlers import http_url, run_exec
from peapod.node.probes.httpclient import HttpError, http_get
from peapod.node.probes.manager import RecordEvent, field_path
from peapod.node.probes.types import LIFECYCLE_USER_AGENT, Target
from peapod.node.probes.util import ProbeError, go_quote
from peapod.node.runtime.types import ContainerRuntime

Obj = Mapping[str, Any]
# kubelet's minimumGracePeriodInSeconds: what the stop keeps after a long preStop hook.
MIN_GRACE_AFTER_HOOK = 2


@dataclass(frozen=True)
class HookResult:
    ok: bool
    message: str = ""  # kubelet's failure text
    elapsed: float = 0.0  # seconds on the clock
    completed: bool = True  # False: the deadline cut it short (preStop)


def format_pod(pod: Obj) -> str:
    """kubelet's format.Pod: name_namespace(uid)."""
    md = pod.get("metadata") or {}
    return f"{md.get('name', '')}_{md.get('namespace', '')}({md.get('uid', '')})"


def _int_or_string(v: Any) -> str:
    return f"{{0 {v} }}" if isinstance(v, int) else f"{{1 0 {v}}}"


def _describe(handler: Obj) -> str:
    """Roughly Go's %v of a LifecycleHandler, for the "invalid handler" message."""
    tcp = handler.get("tcpSocket")
    tcp_text = "nil" if tcp is None else \
        f"&TCPSocketAction{{Port:{_int_or_string(tcp.get('port'))},Host:{tcp.get('host') or ''},}}"
    return f"&LifecycleHandler{{Exec:nil,HTTPGet:nil,TCPSocket:{tcp_text},Sleep:nil,}}"


async def _emit(
    record_event: RecordEvent | None, pod: Obj, type_: str, reason: str, message: str, container: str = "",
) -> None:
    if record_event is None:
        return
    path = field_path(pod, container) if container else ""
    out = record_event(pod, type_, reason, message, field_path=path)
    if inspect.isawaitable(out):
        await out


async def run_handler(
    handler: Obj,
    *,
    pod: Obj,
    container: Obj,
    target: Target,
    runtime: ContainerRuntime,
    clock: Clock,
    record_event: RecordEvent | None = None,
    factory: NetnsSocketFactory | None = None,
) -> HookResult:
    """Run one lifecycle handler to completion (no timeout: kubelet sets none; callers bound it)."""
    cname, pname = go_quote(container.get("name", "")), go_quote(format_pod(pod))
    if handler.get("exec") is not None:
        command = [str(a) for a in handler["exec"].get("command") or ()]
        try:
            code, out, err = await run_exec(runtime, target.container_id, command, None)
            error = None if code == 0 else \
                f"command '{' '.join(command)}' exited with {code}: {err.decode(errors='replace')}"
        except Exception as e:
            out, err, error = b"", b"", str(e) or type(e).__name__
        if error is None:
            return HookResult(True)
        output = (out + err).decode(errors="replace")
        return HookResult(False, f"Exec lifecycle hook ([{' '.join(command)}]) for Container {cname} in Pod "
                                 f"{pname} failed - error: {error}, message: {go_quote(output)}")
    if handler.get("httpGet") is not None:
        action = handler["httpGet"]
        error = await _run_http(action, pod, container, target, record_event, factory)
        if error is None:
            return HookResult(True)
        path = action.get("path") or ""
        return HookResult(False, f"HTTP lifecycle hook ({path}) for Container {cname} in Pod {pname} "
                                 f"failed - error: {error}")
    if handler.get("sleep") is not None:
        seconds = int(handler["sleep"].get("seconds") or 0)
        await clock.sleep(seconds)
        return HookResult(True)
    return HookResult(False, f"Cannot run handler: invalid handler: {_describe(handler)}")


async def _run_http(
    action: Obj, pod: Obj, container: Obj, target: Target, record_event: RecordEvent | None,
    factory: NetnsSocketFactory | None,
) -> str | None:
    try:
        url, headers = http_url(action, container, target.pod_ip)
    except ProbeError as e:
        return str(e)
    try:
        await http_get(url, headers=headers, timeout=None, netns_path=target.netns_path,
                       user_agent=LIFECYCLE_USER_AGENT, factory=factory)
        return None
    except HttpError as e:
        if not e.http_response_to_https:
            return str(e)
        first = e
    # An HTTPS hook answered in plain HTTP: retry over HTTP without credentials (kubelet does).
    plain = "http" + url[len("https"):]
    headers = [(k, v) for k, v in headers if k.lower() != "authorization"]
    try:
        await http_get(plain, headers=headers, timeout=None, netns_path=target.netns_path,
                       user_agent=LIFECYCLE_USER_AGENT, factory=factory)
    except HttpError:
        return str(first)
    hostport = plain.split("://", 1)[1].split("/", 1)[0]
    await _emit(record_event, pod, "Warning", "LifecycleHTTPFallback",
                f"request to HTTPS lifecycle hook {hostport} got HTTP response, retry with HTTP succeeded")
    return None


async def run_post_start(
    *,
    pod: Obj,
    container: Obj,
    target: Target,
    runtime: ContainerRuntime,
    clock: Clock,
    record_event: RecordEvent | None = None,
    factory: NetnsSocketFactory | None = None,
) -> HookResult:
    """Run the container's postStart hook (if any). A failure records FailedPostStartHook; the caller
    must then kill the container."""
    handler = (container.get("lifecycle") or {}).get("postStart")
    if not handler:
        return HookResult(True)
    start = clock.monotonic()
    res = await run_handler(handler, pod=pod, container=container, target=target, runtime=runtime,
                            clock=clock, record_event=record_event, factory=factory)
    res = HookResult(res.ok, res.message, clock.monotonic() - start)
    if not res.ok:
        await _emit(record_event, pod, "Warning", "FailedPostStartHook", res.message,
                    container.get("name", ""))
    return res


async def run_pre_stop(
    *,
    pod: Obj,
    container: Obj,
    target: Target,
    runtime: ContainerRuntime,
    clock: Clock,
    deadline: float,
    record_event: RecordEvent | None = None,
    factory: NetnsSocketFactory | None = None,
) -> HookResult:
    """Run the preStop hook (if any) until it ends or ``deadline`` (``clock.monotonic()``) passes.

    A hook still running at the deadline is abandoned (cancelled) and ``completed`` is False."""
    handler = (container.get("lifecycle") or {}).get("preStop")
    if not handler:
        return HookResult(True)
    start = clock.monotonic()
    hook = asyncio.ensure_future(run_handler(
        handler, pod=pod, container=container, target=target, runtime=runtime, clock=clock,
        record_event=record_event, factory=factory,
    ))
    timer = asyncio.ensure_future(clock.sleep(max(0.0, deadline - start)))
    try:
        await asyncio.wait([hook, timer], return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        if not hook.done():
            hook.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await hook
    elapsed = clock.monotonic() - start
    if hook.cancelled():
        return HookResult(False, "PreStop hook not completed in grace period", elapsed, completed=False)
    exc = hook.exception()
    res = HookResult(False, f"{type(exc).__name__}: {exc}") if exc is not None else hook.result()
    if not res.ok:
        await _emit(record_event, pod, "Warning", "FailedPreStopHook", "PreStopHook failed",
                    container.get("name", ""))
    return HookResult(res.ok, res.message, elapsed)
