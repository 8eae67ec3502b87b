"""A tiny API server for kubectl and the Python client, wired to the streaming protocols.

It answers /version (the kubectl dispatcher picks kubectl.1.<minor> from it), legacy discovery,
GET of one Running pod, and exec/attach/portforward through peapod.node.streaming with test
backends: exec runs a local subprocess (a pty in tty mode), port-forward connects to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import shutil
import signal
import struct
import termios
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from peapod.node.streaming import (
    StreamError,
    StreamSession,
    handle_exec,
    handle_portforward,
    parse_exec_options,
)

KUBECTL = shutil.which("kubectl")


@dataclass
class Record:
    """What the server saw, for assertions."""

    upgrades: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, Upgrade header, protocol)
    resizes: list[tuple[int, int]] = field(default_factory=list)
    resize_seen: asyncio.Event = field(default_factory=asyncio.Event)
    exits: list[int] = field(default_factory=list)


class SubprocessExec:
    """Runs the command locally; in tty mode on a pty that follows the client's terminal size."""

    def __init__(self, command: list[str], record: Record) -> None:
        self.command = command
        self.record = record

    async def run(self, session: StreamSession) -> int:
        if not self.command:
            raise StreamError("no command")
        if session.tty:
            code = await self._run_tty(session)
        else:
            code = await self._run_pipes(session)
        self.record.exits.append(code)
        return code

    async def _run_pipes(self, session: StreamSession) -> int:
        proc = await asyncio.create_subprocess_exec(
            *self.command, stdin=asyncio.subprocess.PIPE if session.stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None

        async def pump_in() -> None:
            assert proc.stdin is not None and session.stdin is not None
            with contextlib.suppress(ConnectionError, BrokenPipeError):
                while data := await session.stdin.read(65536):
                    proc.stdin.write(data)
                    await proc.stdin.drain()
            proc.stdin.close()

        async def pump_out(src: asyncio.StreamReader, write: Any) -> None:
            while data := await src.read(65536):
                await write(data)

        feeder = asyncio.create_task(pump_in()) if session.stdin else None
        try:
            await asyncio.gather(pump_out(proc.stdout, session.write_stdout),
                                 pump_out(proc.stderr, session.write_stderr))
            return await proc.wait()
        finally:
            if feeder is not None:
                feeder.cancel()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    async def _run_tty(self, session: StreamSession) -> int:
        master, slave = pty.openpty()
        proc = await asyncio.create_subprocess_exec(*self.command, stdin=slave, stdout=slave, stderr=slave,
                                                    start_new_session=True)
        os.close(slave)
        loop = asyncio.get_running_loop()
        out: asyncio.Queue[bytes] = asyncio.Queue()

        def readable() -> None:
            try:
                data = os.read(master, 65536)
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(master)
            out.put_nowait(data)

        loop.add_reader(master, readable)

        async def resizes() -> None:
            async for width, height in session.resize_events:
                fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
                self.record.resizes.append((width, height))
                self.record.resize_seen.set()

        async def pump_in() -> None:
            assert session.stdin is not None
            while data := await session.stdin.read(65536):
                os.write(master, data)

        helpers = [asyncio.create_task(resizes())]
        if session.stdin is not None:
            helpers.append(asyncio.create_task(pump_in()))
        try:
            while data := await out.get():
                await session.write_stdout(data)
            return await proc.wait()
        finally:
            for t in helpers:
                t.cancel()
            loop.remove_reader(master)
            os.close(master)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


class LoopbackPorts:
    async def connect(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", port)


def make_app(minor: int, record: Record) -> web.Application:
    app = web.Application()

    async def version(request: web.Request) -> web.Response:
        return web.json_response({"major": "1", "minor": str(minor), "gitVersion": f"v1.{minor}.0",
                                  "gitCommit": "0" * 40, "gitTreeState": "clean",
                                  "buildDate": "2024-01-01T00:00:00Z", "goVersion": "go1.22",
                                  "compiler": "gc", "platform": "linux/amd64"})

    async def api(request: web.Request) -> web.Response:
        return web.json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}]})

    async def apis(request: web.Request) -> web.Response:
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})

    def sub(name: str, kind: str) -> dict[str, Any]:
        return {"name": name, "singularName": "", "namespaced": True, "kind": kind,
                "verbs": ["create", "get"]}

    async def v1(request: web.Request) -> web.Response:
        return web.json_response({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1",
                                  "resources": [
            {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
             "verbs": ["get", "list"], "shortNames": ["po"]},
            sub("pods/exec", "PodExecOptions"), sub("pods/attach", "PodAttachOptions"),
            sub("pods/portforward", "PodPortForwardOptions")]})

    async def pod(request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        return web.json_response({
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": ns, "uid": "00000000-0000-0000-0000-000000000001",
                         "resourceVersion": "1", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox", "stdin": True,
                                                       "tty": True}]},
            "status": {"phase": "Running", "podIP": "127.0.0.1", "containerStatuses": [
                {"name": "c", "ready": True, "restartCount": 0, "image": "busybox", "imageID": "",
                 "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}}}]}})

    def note(request: web.Request, kind: str) -> None:
        h = request.headers
        proto = h.get("Sec-WebSocket-Protocol") or h.get("X-Stream-Protocol-Version", "")
        record.upgrades.append((kind, request.headers.get("Upgrade", ""), proto))

    async def exec_(request: web.Request) -> web.StreamResponse:
        try:
            opts = parse_exec_options(request.query)
        except ValueError as e:
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                      "message": str(e), "reason": "BadRequest", "code": 400}, status=400)
        note(request, "exec")
        return await handle_exec(request, SubprocessExec(opts.command, record), tty=opts.tty,
                                 stdin=opts.stdin, stdout=opts.stdout, stderr=opts.stderr)

    async def attach(request: web.Request) -> web.StreamResponse:
        opts = parse_exec_options(request.query, require_command=False)
        note(request, "attach")
        # Stands in for the container's main process: echoes what arrives on its stdin.
        return await handle_exec(request, SubprocessExec(["cat"], record), tty=opts.tty, stdin=opts.stdin,
                                 stdout=opts.stdout, stderr=opts.stderr)

    async def portforward(request: web.Request) -> web.StreamResponse:
        note(request, "portforward")
        ns, name = request.match_info["ns"], request.match_info["name"]
        return await handle_portforward(request, LoopbackPorts(), pod=f"{ns}/{name}",
                                        uid="00000000-0000-0000-0000-000000000001")

    base = "/api/v1/namespaces/{ns}/pods/{name}"
    app.router.add_get("/version", version)
    app.router.add_get("/api", api)
    app.router.add_get("/apis", apis)
    app.router.add_get("/api/v1", v1)
    app.router.add_get(base, pod)
    for m in ("GET", "POST"):
        app.router.add_route(m, base + "/exec", exec_)
        app.router.add_route(m, base + "/attach", attach)
        app.router.add_route(m, base + "/portforward", portforward)
    return app


@dataclass
class FakeApi:
    url: str
    port: int
    record: Record
    kubeconfig: Path
    cache: Path
    home: Path

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(KUBECONFIG=str(self.kubeconfig), HOME=str(self.home))
        return env

    def args(self, *args: str) -> list[str]:
        assert KUBECTL is not None
        return [KUBECTL, f"--kubeconfig={self.kubeconfig}", f"--cache-dir={self.cache}", *args]

    async def kubectl(self, *args: str, input: bytes | None = None,
                      timeout: float = 60) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *self.args(*args), env=self.env(), stdin=asyncio.subprocess.PIPE if input is not None else
            asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(input), timeout)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()


@contextlib.asynccontextmanager
async def serve(tmp_path: Path, minor: int) -> AsyncIterator[FakeApi]:
    record = Record()
    runner = web.AppRunner(make_app(minor, record), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: c, cluster: {{server: '{url}'}}}}]\n"
        "users: [{name: u, user: {}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u, namespace: default}}]\n"
        "current-context: x\n")
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    try:
        yield FakeApi(url, port, record, kubeconfig, tmp_path / "cache", home)
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            await proc.wait()
