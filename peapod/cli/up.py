"""``peapod up`` / ``peapod server``: run the control plane (and the local node agent) in one process."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import signal
import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from peapod.apiserver.auth import (
    MASTERS,
    TokenAuthenticator,
    auth_middleware,
    load_or_create_token,
    user_info,
)
from peapod.apiserver.certs import TLSFiles, ensure_tls
from peapod.cli.datadir import DataDirBusyError, DataDirLock
from peapod.cli.kubeconfig import make_kubeconfig, write_kubeconfig
from peapod.cli.main import CliError
from peapod.client.rest import ApiClient
from peapod.clock import RealClock
from peapod.controlplane.manager import run_controllers
from peapod.store.base import Store

log = logging.getLogger("peapod")


@dataclass
class ControlPlane:
    """The API server with its store, TLS and credentials; controllers attach to it later."""

    data_dir: Path
    bind: str
    port: int
    store_spec: str | None = None
    advertise: str | None = None
    store: Store | None = None
    tls: TLSFiles | None = None
    admin_token: str = ""
    client: ApiClient | None = None
    _runner: web.AppRunner | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def url(self) -> str:
        host = self.advertise or ("127.0.0.1" if self.bind in ("0.0.0.0", "::") else self.bind)
        host = f"[{host}]" if ":" in host else host
        return f"https://{host}:{self.port}"

    def _hosts(self) -> list[str]:
        hosts = ["127.0.0.1", "localhost", "::1"]
        for h in (self.bind, self.advertise):
            if h and h not in ("0.0.0.0", "::") and h not in hosts:
                hosts.append(h)
        return hosts

    def _ssl_context(self) -> ssl.SSLContext:
        assert self.tls is not None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.tls.cert, self.tls.key)
        ctx.load_verify_locations(cafile=str(self.tls.ca_cert))
        ctx.verify_mode = ssl.CERT_OPTIONAL  # client certificates are one way to authenticate
        return ctx

    async def start(self) -> None:
        from peapod.apiserver.app import build_app
        from peapod.apiserver.bootstrap import bootstrap
        from peapod.store.compactor import run_compactor
        from peapod.store.factory import open_store

        clock = RealClock()
        self.tls = ensure_tls(self.data_dir / "tls", self._hosts())
        self.admin_token = load_or_create_token(self.data_dir / "auth" / "admin.token")
        authn = TokenAuthenticator()
        authn.add(self.admin_token, user_info("admin", [MASTERS]))
        # Controllers are API clients with their own credential (RBAC narrows it later).
        controller_token = load_or_create_token(self.data_dir / "auth" / "controller.token")
        authn.add(controller_token, user_info("system:kube-controller-manager", [MASTERS]))
        try:
            self.store = await open_store(self.store_spec, self.data_dir)
        except ValueError as e:
            raise CliError(str(e)) from None
        await bootstrap(self.store, clock)
        app = build_app(
            store=self.store,
            clock=clock,
            middlewares=[auth_middleware(authn)],
            server_address=f"{self.advertise or self.bind}:{self.port}",
        )
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.bind, self.port, ssl_context=self._ssl_context())
        try:
            await site.start()
        except OSError as e:
            await self._runner.cleanup()
            if e.errno == errno.EADDRINUSE:
                raise CliError(
                    f"port {self.port} on {self.bind} is already in use; stop what listens there "
                    "or pass another --port"
                ) from None
            raise CliError(f"cannot listen on {self.bind}:{self.port}: {e.strerror}") from None
        self._tasks.append(asyncio.create_task(run_compactor(self.store, clock=clock)))
        client_ssl = ssl.create_default_context(cafile=str(self.tls.ca_cert))
        self.client = ApiClient(self.url, token=controller_token, ssl_context=client_ssl,
                                user_agent="peapod-controller-manager")
        self._tasks.append(asyncio.create_task(run_controllers(self.client, clock=clock)))
        write_kubeconfig(
            self.data_dir / "kubeconfig",
            make_kubeconfig(self.url, self.tls.ca_cert.read_bytes(), token=self.admin_token),
        )

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        if self.client is not None:
            await self.client.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.store is not None:
            await self.store.close()


async def _serve(args: argparse.Namespace, with_agent: bool) -> None:
    cp = ControlPlane(
        data_dir=args.data_dir.resolve(), bind=args.bind, port=args.port, store_spec=args.store,
        advertise=args.advertise_address,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await cp.start()
    kubeconfig = cp.data_dir / "kubeconfig"
    print(f"peapod is up at {cp.url}", file=sys.stderr)
    print(f"  export KUBECONFIG={kubeconfig}", file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        print("peapod: stopping", file=sys.stderr, flush=True)
        await cp.stop()


def run_up(args: argparse.Namespace, *, with_agent: bool) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    lock = DataDirLock(args.data_dir)
    try:
        lock.acquire()
    except DataDirBusyError as e:
        raise CliError(str(e)) from None
    except PermissionError:
        raise CliError(f"cannot write {args.data_dir}: run as root or pass a --data-dir you own") from None
    try:
        asyncio.run(_serve(args, with_agent))
    finally:
        lock.release()
    return 0
