"""The agent's HTTPS endpoint, which the API server proxies pods/log|exec|attach|portforward to.

Paths are the API's own (``/api/v1/namespaces/{ns}/pods/{name}/log`` ...), so the API server
forwards requests unchanged. Only clients with a certificate from the configured CA (and, when
configured, one of the allowed common names) get in; ``/healthz`` answers anyone who passes TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from peapod.clock import parse_time
from peapod.node.netns import connect_in_netns
from peapod.node.runtime.attach import stream_attach
from peapod.node.runtime.logs import LogOptions, follow_logs, read_logs
from peapod.node.runtime.types import (
    ContainerNotFound,
    ContainerRuntime,
    ContainerRuntimeError,
    ContainerStatus,
)
from peapod.node.streaming import (
    StreamError,
    StreamSession,
    handle_exec,
    handle_portforward,
    parse_bool,
    parse_exec_options,
)

if TYPE_CHECKING:
    from peapod.node.agent import Agent

Obj = dict[str, Any]
POD_PATH = "/api/v1/namespaces/{namespace}/pods/{name}"


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                              "message": message, "reason": reason, "code": code}, status=code)


def _peer_cn(request: web.Request) -> str | None:
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport is not None else None
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


class _ExecBackend:
    """Runs ``runtime.exec`` in the container, pumping the session's streams."""

    def __init__(self, runtime: ContainerRuntime, container_id: str, command: list[str], *, tty: bool,
                 stdin: bool) -> None:
        self.runtime = runtime
        self.cid = container_id
        self.command = command
        self.tty = tty
        self.stdin = stdin

    async def run(self, session: StreamSession) -> int:
        try:
            proc = await self.runtime.exec(self.cid, self.command, tty=self.tty, stdin=self.stdin)
        except ContainerRuntimeError as e:
            raise StreamError(str(e)) from None
        try:
            if proc.master_fd is not None:
                return await self._run_tty(proc, session)
            return await self._run_pipes(proc, session)
        finally:
            if proc.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.process.kill()
                await proc.process.wait()
            proc.close()

    async def _run_pipes(self, proc: Any, session: StreamSession) -> int:
        p = proc.process

        async def pump(reader: asyncio.StreamReader | None, write: Any) -> None:
            if reader is None:
                return
            while chunk := await reader.read(32 * 1024):
                await write(chunk)

        async def feed() -> None:
            if session.stdin is None or p.stdin is None:
                return
            try:
                while chunk := await session.stdin.read(32 * 1024):
                    p.stdin.write(chunk)
                    await p.stdin.drain()
            except (ConnectionError, BrokenPipeError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    p.stdin.close()

        feeder = asyncio.create_task(feed())
        await asyncio.gather(pump(p.stdout, session.write_stdout), pump(p.stderr, session.write_stderr))
        code = await p.wait()
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder
        return code

    async def _run_tty(self, proc: Any, session: StreamSession) -> int:
        loop = asyncio.get_running_loop()
        master = proc.master_fd
        out: asyncio.Queue[bytes | None] = asyncio.Queue()

        def readable() -> None:
            try:
                data = os.read(master, 32 * 1024)
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(master)
                out.put_nowait(None)
            else:
                out.put_nowait(data)

        loop.add_reader(master, readable)

        async def feed() -> None:
            if session.stdin is None:
                return
            while chunk := await session.stdin.read(32 * 1024):
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(os.write, master, chunk)

        async def resizes() -> None:
            async for width, height in session.resize_events:
                with contextlib.suppress(OSError):
                    proc.resize(height, width)

        side = [asyncio.create_task(feed()), asyncio.create_task(resizes())]
        try:
            while (chunk := await out.get()) is not None:
                await session.write_stdout(chunk)
            return await proc.process.wait()
        finally:
            with contextlib.suppress(Exception):
                loop.remove_reader(master)
            for t in side:
                t.cancel()
            await asyncio.gather(*side, return_exceptions=True)


class _AttachBackend:
    """Streams a container's main process through conmon's attach socket (kubelet's attach)."""

    def __init__(self, runtime: ContainerRuntime, container_id: str, *, forward_stdin: bool) -> None:
        self.runtime = runtime
        self.cid = container_id
        self.forward_stdin = forward_stdin  # input reaches a container only if it has stdin

    async def run(self, session: StreamSession) -> int:
        attach = getattr(self.runtime, "attach", None)
        if attach is None:
            raise StreamError("this container runtime does not support attach")
        try:
            conn = await attach(self.cid)
        except ContainerRuntimeError as e:
            raise StreamError(str(e)) from None
        return await stream_attach(conn, session, forward_stdin=self.forward_stdin)


def _container_spec(pod: Obj, name: str) -> Obj:
    spec = pod.get("spec") or {}
    for key in ("containers", "initContainers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            if c.get("name") == name:
                return c
    return {}


PORT_FORWARD_CONNECT_TIMEOUT = 10.0


class _PortForwardBackend:
    def __init__(self, netns: str | None) -> None:
        self.netns = netns

    async def connect(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect to 127.0.0.1:port inside the pod's network namespace (as kubelet does)."""
        return await connect_in_netns(self.netns, "127.0.0.1", port, PORT_FORWARD_CONNECT_TIMEOUT)


class AgentServer:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.cfg = agent.config
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get(POD_PATH + "/log", self._log)
        for sub in ("exec", "attach"):
            app.router.add_route("GET", POD_PATH + "/" + sub, self._exec)
            app.router.add_route("POST", POD_PATH + "/" + sub, self._exec)
        app.router.add_route("GET", POD_PATH + "/portforward", self._portforward)
        app.router.add_route("POST", POD_PATH + "/portforward", self._portforward)
        app.router.add_get("/stats/summary", self._stats_summary)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def start(self) -> int:
        from peapod.node.agent import server_ssl_context

        ssl_ctx = None
        if not self.cfg.insecure_http:
            if self.cfg.tls_cert is None or self.cfg.tls_key is None or self.cfg.client_ca is None:
                raise ValueError("the agent server needs tls_cert, tls_key and client_ca (or insecure_http)")
            ssl_ctx = server_ssl_context(self.cfg.tls_cert, self.cfg.tls_key, self.cfg.client_ca)
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.cfg.bind, self.cfg.port, ssl_context=ssl_ctx)
        await site.start()
        server = site._server
        assert server is not None
        return int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.cfg.insecure_http or request.path == "/healthz":
            return await handler(request)
        cn = _peer_cn(request)
        if cn is None:
            return _status(401, "Unauthorized", "a client certificate is required")
        if self.cfg.allowed_client_names and cn not in self.cfg.allowed_client_names:
            return _status(403, "Forbidden", f'client "{cn}" may not use the node agent')
        return await handler(request)

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _stats_summary(self, request: web.Request) -> web.Response:
        """Usage of the node, its pods and containers (:mod:`peapod.node.stats`)."""
        stats = getattr(self.agent, "stats", None)
        if stats is None:
            return _status(503, "ServiceUnavailable", "stats are not collected on this node")
        return web.json_response(stats.summary())

    async def _metrics(self, request: web.Request) -> web.Response:
        """Prometheus text exposition of the agent's metrics (:mod:`peapod.node.prom`)."""
        metrics = getattr(self.agent, "metrics", None)
        if metrics is None:
            return _status(404, "NotFound", "metrics are not enabled on this node")
        return web.Response(body=metrics.exposition(), headers={"Content-Type": metrics.content_type})

    # ---- helpers -----------------------------------------------------------------------------

    def _find_pod(self, request: web.Request) -> Obj | web.Response:
        ns, name = request.match_info["namespace"], request.match_info["name"]
        informer = self.agent.informer
        pod = informer.get(f"{ns}/{name}") if informer is not None else None
        if pod is None:
            return _status(404, "NotFound", f'pods "{name}" not found')
        return pod

    def _container_name(self, pod: Obj, requested: str | None) -> str | web.Response:
        spec = pod.get("spec") or {}
        names = [c["name"] for c in spec.get("containers") or []]
        all_names = names + [c["name"] for c in spec.get("initContainers") or []] + \
            [c["name"] for c in spec.get("ephemeralContainers") or []]
        if not requested:
            if len(names) == 1:
                return names[0]
            return _status(400, "BadRequest", f"a container name must be specified for pod "
                           f"{pod['metadata']['name']}, choose one of: [{' '.join(names)}]")
        if requested not in all_names:
            return _status(400, "BadRequest", f"container {requested} is not valid for pod "
                           f"{pod['metadata']['name']}")
        return requested

    # ---- logs --------------------------------------------------------------------------------

    async def _log(self, request: web.Request) -> web.StreamResponse:
        pod = self._find_pod(request)
        if isinstance(pod, web.Response):
            return pod
        q = request.query
        cname = self._container_name(pod, q.get("container"))
        if isinstance(cname, web.Response):
            return cname
        try:
            previous = parse_bool(q.get("previous"))
            follow = parse_bool(q.get("follow"))
            timestamps = parse_bool(q.get("timestamps"))
            tail = int(q["tailLines"]) if q.get("tailLines") else None
            limit = int(q["limitBytes"]) if q.get("limitBytes") else None
            since = None
            if q.get("sinceSeconds"):
                since = self.agent.clock.now() - timedelta(seconds=int(q["sinceSeconds"]))
            elif q.get("sinceTime"):
                since = parse_time(q["sinceTime"])
        except ValueError as e:
            return _status(400, "BadRequest", str(e))
        ex = self.agent.executor
        assert ex is not None
        uid = pod["metadata"]["uid"]
        rec = ex.find_container(uid, cname, previous=previous)
        pname = pod["metadata"]["name"]
        if rec is None:
            if previous:
                return _status(400, "BadRequest",
                               f'previous terminated container "{cname}" in pod "{pname}" not found')
            return _status(400, "BadRequest", f'container "{cname}" in pod "{pname}" is waiting to start: '
                           "ContainerCreating")
        opts = LogOptions(tail=tail, since=since, timestamps=timestamps, limit_bytes=limit, follow=follow)
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        if not follow:
            data = await asyncio.to_thread(read_logs, rec["log_path"], opts)
            resp.content_length = len(data)
            await resp.prepare(request)
            await resp.write(data)
            await resp.write_eof()
            return resp
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        runtime = self.agent.config.runtime

        async def done() -> bool:
            try:
                st = await runtime.state(rec["id"])
            except ContainerNotFound:
                return True
            return st.status not in (ContainerStatus.RUNNING, ContainerStatus.CREATED)

        stream: AsyncIterator[bytes] = follow_logs(rec["log_path"], opts, done=done)
        with contextlib.suppress(ConnectionError, RuntimeError):
            async for chunk in stream:
                await resp.write(chunk)
            await resp.write_eof()
        return resp

    # ---- exec / attach -----------------------------------------------------------------------

    async def _exec(self, request: web.Request) -> web.StreamResponse:
        pod = self._find_pod(request)
        if isinstance(pod, web.Response):
            return pod
        attach = request.path.endswith("/attach")
        try:
            opts = parse_exec_options(request.query, require_command=not attach)
        except ValueError as e:
            return _status(400, "BadRequest", str(e))
        cname = self._container_name(pod, opts.container)
        if isinstance(cname, web.Response):
            return cname
        ex = self.agent.executor
        assert ex is not None
        rec = ex.find_container(pod["metadata"]["uid"], cname)
        if rec is None:
            return _status(400, "BadRequest", f'container "{cname}" in pod "{pod["metadata"]["name"]}" is '
                           "waiting to start: ContainerCreating")
        try:
            st = await self.agent.config.runtime.state(rec["id"])
            running = st.status == ContainerStatus.RUNNING
        except ContainerNotFound:
            running = False
        if not running:
            return _status(400, "BadRequest", f"container {cname} is not running")
        backend: _ExecBackend | _AttachBackend
        if attach:
            spec = _container_spec(pod, cname)
            backend = _AttachBackend(self.agent.config.runtime, rec["id"],
                                     forward_stdin=bool(spec.get("stdin")))
        else:
            backend = _ExecBackend(self.agent.config.runtime, rec["id"], opts.command, tty=opts.tty,
                                   stdin=opts.stdin)
        return await handle_exec(request, backend, tty=opts.tty, stdin=opts.stdin, stdout=opts.stdout,
                                 stderr=opts.stderr, command=opts.command)

    # ---- port-forward ------------------------------------------------------------------------

    async def _portforward(self, request: web.Request) -> web.StreamResponse:
        pod = self._find_pod(request)
        if isinstance(pod, web.Response):
            return pod
        uid = pod["metadata"]["uid"]
        netns = None
        if not (pod.get("spec") or {}).get("hostNetwork"):
            sb = self.agent.config.sandboxes.get(uid)
            if sb is None or sb.netns_path is None:
                return _status(400, "BadRequest", f"pod {pod['metadata']['name']} has no network sandbox")
            netns = sb.netns_path
        md = pod["metadata"]
        return await handle_portforward(request, _PortForwardBackend(netns),
                                        pod=f"{md.get('namespace')}/{md['name']}", uid=uid)
