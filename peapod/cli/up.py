"""``peapod up`` / ``peapod server``: the control plane (and, for ``up``, the local node agent) in
one process.

Credentials, all signed by the cluster CA made at first start (``DATA/tls``) and shared through the
store by every server of the cluster (:mod:`peapod.apiserver.clusterinit`):
- the admin (bearer token, in ``DATA/kubeconfig``) and the controllers (their own token);
- joining agents (``peapod agent``): the join token ``DATA/node-token`` pins the CA and lets them
  get their own node credentials (:mod:`peapod.apiserver.nodejoin`);
- the local node (client certificate ``system:node:<name>`` in ``system:nodes``, so node
  authorization limits it to what a node may touch);
- the API server towards agents (client certificate ``peapod-apiserver-kubelet-client``; agents
  accept no one else), and each agent's serving certificate.

Environment (for tests, not a user setting): ``PEAPOD_VOLUME_REFRESH_PERIOD`` (seconds, default 60)
is how often the local node re-renders configMap/secret/downwardAPI/projected volumes of running pods.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import hashlib
import logging
import os
import signal
import socket
import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from peapod.apiserver.auth import (
    MASTERS,
    TokenAuthenticator,
    auth_middleware,
    user_info,
)
from peapod.apiserver.authz import NODE_PREFIX, NODES_GROUP, Authorizer, authz_middleware, install_authorizer
from peapod.apiserver.certs import TLSFiles, ensure_identity, ensure_tls
from peapod.cli.datadir import DataDirBusyError, DataDirLock
from peapod.cli.kubeconfig import make_kubeconfig, write_kubeconfig
from peapod.cli.logging_setup import setup_logging
from peapod.cli.main import CliError
from peapod.cli.prereq import missing_prerequisites, port_problem
from peapod.cli.progress import Steps
from peapod.client.rest import ApiClient
from peapod.clock import RealClock
from peapod.controlplane.manager import ControllerOptions
from peapod.store.base import Store

log = logging.getLogger("peapod")

APISERVER_CLIENT_CN = "peapod-apiserver-kubelet-client"
VOLUME_REFRESH_ENV = "PEAPOD_VOLUME_REFRESH_PERIOD"


def volume_refresh_period(env: dict[str, str] | None = None) -> float:
    """The local node's volume refresh period: ``PEAPOD_VOLUME_REFRESH_PERIOD`` seconds, else 60."""
    raw = (os.environ if env is None else env).get(VOLUME_REFRESH_ENV, "").strip()
    if not raw:
        return 60.0
    try:
        value = float(raw)
    except ValueError:
        raise CliError(f"{VOLUME_REFRESH_ENV}: not a number of seconds: {raw!r}") from None
    if value < 0:
        raise CliError(f"{VOLUME_REFRESH_ENV}: must not be negative")
    return value


def client_ssl(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None and key is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


@dataclass
class ControlPlane:
    """API server, store, controllers and scheduler, with the cluster's TLS and credentials."""

    data_dir: Path
    bind: str
    port: int
    store_spec: str | None = None
    advertise: str | None = None
    pod_security: str = "baseline"  # PodSecurity enforce level of unlabelled namespaces
    controller_options: ControllerOptions = field(default_factory=ControllerOptions)
    leader_elect_lease_duration: float = 15.0
    leader_elect_renew_deadline: float = 10.0
    leader_elect_retry_period: float = 2.0
    default_not_ready_toleration_seconds: int = 300
    default_unreachable_toleration_seconds: int = 300
    audit_log: Path | None = None  # --audit-log: mutating requests as audit.k8s.io/v1 Events
    audit_log_maxsize: float = 100.0  # MB before rotation
    audit_log_maxbackup: int = 10
    store: Store | None = None
    tls: TLSFiles | None = None
    admin_token: str = ""
    client: ApiClient | None = None
    _runner: web.AppRunner | None = None
    _audit: Any = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def host(self) -> str:
        return self.advertise or ("127.0.0.1" if self.bind in ("0.0.0.0", "::") else self.bind)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
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

    def identity(self) -> str:
        """A leader-election identity stable across restarts of this data dir, so a restarted
        server takes its own lease back at once."""
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:8]
        return f"{socket.gethostname()}-{digest}"

    async def start(self) -> None:
        from peapod.apiserver.app import build_app
        from peapod.apiserver.bootstrap import bootstrap
        from peapod.apiserver.certs import load_ca
        from peapod.apiserver.clusterinit import BOOTSTRAP_USER_PREFIX, BOOTSTRAPPERS_GROUP, ensure_cluster_secrets
        from peapod.apiserver.nodejoin import NodeSigner, install_node_join
        from peapod.apiserver.prom import ApiServerMetrics
        from peapod.client.sharedinformer import InformerFactory
        from peapod.controlplane.manager import controllers, run_controllers
        from peapod.controlplane.scheduler import run_scheduler
        from peapod.store.compactor import run_compactor
        from peapod.store.factory import open_store

        clock = RealClock()
        try:
            self.store = await open_store(self.store_spec, self.data_dir)
        except ValueError as e:
            raise CliError(str(e)) from None
        # The CA, signing key and tokens are the cluster's (in the store), written to this data dir.
        secrets = await ensure_cluster_secrets(self.store, self.data_dir)
        self.tls = ensure_tls(self.data_dir / "tls", self._hosts())
        self.admin_token = secrets.admin_token
        authn = TokenAuthenticator()
        authn.add(self.admin_token, user_info("admin", [MASTERS]))
        # Controllers and the scheduler are API clients with their own credential.
        controller_token = secrets.controller_token
        authn.add(controller_token, user_info("system:kube-controller-manager", [MASTERS]))
        # Joining agents: the secret part of the node token, good only for getting node credentials.
        authn.add(secrets.bootstrap_token,
                  user_info(BOOTSTRAP_USER_PREFIX + secrets.node_token_id, [BOOTSTRAPPERS_GROUP]))
        await bootstrap(self.store, clock)
        kubelet_cert, kubelet_key = ensure_identity(
            self.tls, "apiserver-kubelet-client", APISERVER_CLIENT_CN, organizations=[MASTERS]
        )
        from peapod.apiserver.serviceaccounts import (
            TokenSigner,
            install_token_signer,
            load_or_create_signing_key,
            service_account_authenticator,
        )

        # Service account tokens (JWTs) are signed with a key of this data dir; RBAC decides the rest.
        signer = TokenSigner(load_or_create_signing_key(self.data_dir / "tls" / "sa.key"))
        sa_authn = service_account_authenticator(signer, self.store, clock.now)
        authorizer = Authorizer(self.store)
        audit: list[Any] = []
        if self.audit_log is not None:
            from peapod.apiserver.audit import AuditLog, audit_middleware

            self._audit = AuditLog(self.audit_log, max_size_mb=self.audit_log_maxsize,
                                   max_backups=self.audit_log_maxbackup)
            self._audit.start()
            audit.append(audit_middleware(self._audit, clock))
        app = build_app(
            store=self.store,
            clock=clock,
            middlewares=[
                *audit,
                auth_middleware(authn, token_authenticators=[sa_authn]),
                authz_middleware(authorizer),
            ],
            server_address=f"{self.host}:{self.port}",
            node_client_ssl=client_ssl(self.tls.ca_cert, kubelet_cert, kubelet_key),
            pod_security_default=self.pod_security,
            metrics=ApiServerMetrics(),
        )
        install_authorizer(app, authorizer)
        install_token_signer(app, signer)
        tls = self.tls
        install_node_join(app, NodeSigner(load_ca=lambda: load_ca(tls), ca_pem=tls.ca_cert.read_bytes))
        from peapod.apiserver.app import CTX

        app[CTX].default_not_ready_toleration_seconds = self.default_not_ready_toleration_seconds
        app[CTX].default_unreachable_toleration_seconds = self.default_unreachable_toleration_seconds
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.bind, self.port, ssl_context=self._ssl_context())
        try:
            await site.start()
        except OSError as e:
            await self._runner.cleanup()
            if e.errno == errno.EADDRINUSE:
                raise CliError(
                    f"port {self.port} on {self.bind} is already in use; stop what listens there or pass another --port"
                ) from None
            raise CliError(f"cannot listen on {self.bind}:{self.port}: {e.strerror}") from None
        self._tasks.append(asyncio.create_task(run_compactor(self.store, clock=clock)))
        self.client = ApiClient(
            self.url, token=controller_token, ssl_context=client_ssl(self.tls.ca_cert),
            user_agent="peapod-controller-manager",
        )
        informers = InformerFactory(self.client, clock=clock)  # one watch per resource for all of them
        factories = {
            **controllers(self.client, clock=clock, factory=informers, options=dataclasses.replace(
                self.controller_options, root_ca_pem=self.tls.ca_cert.read_bytes())),
            "scheduler": lambda: run_scheduler(self.client, clock=clock, factory=informers),
        }
        self._tasks.append(asyncio.create_task(
            run_controllers(self.client, clock=clock, identity=self.identity(), factories=factories,
                            lease_duration=self.leader_elect_lease_duration,
                            renew_deadline=self.leader_elect_renew_deadline,
                            retry_period=self.leader_elect_retry_period)
        ))
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
        if self._audit is not None:
            self._audit.stop()
        if self.store is not None:
            await self.store.close()


@dataclass
class LocalNode:
    """The node agent of ``peapod up``, with node credentials issued by the local control plane."""

    cp: ControlPlane
    node_name: str
    keep_pods: bool = False
    insecure_registries: tuple[str, ...] = ()
    allowed_registries: tuple[str, ...] = ()
    pod_cidr: str = "10.77.0.0/16"
    bridge: str = "peapod0"
    agent: Any = None
    client: ApiClient | None = None

    async def start(self) -> None:
        from peapod.node.agent import Agent, AgentConfig
        from peapod.node.images import RegistryConfig

        tls = self.cp.tls
        assert tls is not None
        node_ip = self.cp.host
        cert, key = ensure_identity(
            tls, f"node-{self.node_name}", f"{NODE_PREFIX}{self.node_name}", organizations=[NODES_GROUP]
        )
        serving_cert, serving_key = ensure_identity(
            tls, f"agent-{self.node_name}", self.node_name, hosts=[node_ip, "127.0.0.1", "localhost"],
            server=True, client=False,
        )
        self.client = ApiClient(self.cp.url, ssl_context=client_ssl(tls.ca_cert, cert, key), user_agent="peapod-agent")
        cfg = AgentConfig.for_data_dir(
            node_name=self.node_name, data_dir=self.cp.data_dir / "node", client=self.client,
            pod_cidr=self.pod_cidr, bridge=self.bridge,
            node_ips=[node_ip], bind=node_ip, port=0, tls_cert=serving_cert, tls_key=serving_key,
            client_ca=tls.ca_cert, allowed_client_names=(APISERVER_CLIENT_CN,), keep_pods=self.keep_pods,
            volume_refresh_period=volume_refresh_period(),
            registry_config=RegistryConfig(
                insecure_registries=self.insecure_registries, allowed_registries=self.allowed_registries
            ),
        )
        # `peapod down` removes the bridge recorded here.
        (self.cp.data_dir / "node" / "bridge").write_text(self.bridge + "\n")
        self.agent = Agent(cfg)
        await self.agent.start()

    async def stop(self) -> None:
        if self.agent is not None:
            await self.agent.stop(stop_pods=not self.keep_pods)
        if self.client is not None:
            await self.client.close()


async def _serve(args: argparse.Namespace, with_agent: bool, steps: Steps | None = None) -> None:
    steps = steps or Steps("plain")
    cp = control_plane_from_args(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with steps.step(f"control plane: store, API server on {cp.url}, controllers"):
        await cp.start()
    node: LocalNode | None = None
    try:
        if with_agent:
            node = LocalNode(
                cp, args.node_name or socket.gethostname().lower(), keep_pods=args.keep_pods,
                insecure_registries=tuple(args.insecure_registry), allowed_registries=tuple(args.allowed_registry),
                pod_cidr=args.pod_cidr, bridge=args.bridge,
            )
            with steps.step(f"node agent {node.node_name}: network, runtime, images"):
                await node.start()
        _announce(args, f"peapod is up at {cp.url}" + (f" with node {node.node_name}" if node else ""),
                  url=cp.url, kubeconfig=str(cp.data_dir / "kubeconfig"))
        _announce(args, f"  export KUBECONFIG={cp.data_dir / 'kubeconfig'}")
        _announce(args, f"  join nodes: peapod agent --server {cp.url} --token-file {cp.data_dir / 'node-token'} "
                        "--node-name NAME --data-dir DIR")
        await stop.wait()
    finally:
        _announce(args, "peapod: stopping")
        if node is not None:
            await node.stop()
        await cp.stop()


def control_plane_from_args(args: argparse.Namespace) -> ControlPlane:
    """The control plane ``peapod up``/``server`` flags describe (flags are checked here, before any I/O)."""
    import ipaddress

    from peapod.controlplane.controllers.nodeipam import CidrSet

    try:
        CidrSet(args.cluster_cidr, args.node_cidr_mask_size)
    except ValueError as e:
        raise CliError(f"--cluster-cidr {args.cluster_cidr} / --node-cidr-mask-size {args.node_cidr_mask_size}: {e}") \
            from None
    if getattr(args, "pod_cidr", None):
        try:
            ipaddress.ip_network(args.pod_cidr, strict=False)
        except ValueError as e:
            raise CliError(f"--pod-cidr: {e}") from None
    lease, renew, retry = args.leader_elect_lease_duration, args.leader_elect_renew_deadline, \
        args.leader_elect_retry_period
    if not 0 < retry < renew < lease:
        raise CliError("leader election needs 0 < --leader-elect-retry-period < --leader-elect-renew-deadline "
                       "< --leader-elect-lease-duration")
    if args.node_monitor_grace_period <= 0:
        raise CliError("--node-monitor-grace-period must be positive")
    if args.default_not_ready_toleration_seconds < 0 or args.default_unreachable_toleration_seconds < 0:
        raise CliError("toleration seconds must not be negative")
    if args.audit_log_maxsize < 0 or args.audit_log_maxbackup < 0:
        raise CliError("--audit-log-maxsize and --audit-log-maxbackup must not be negative")
    return ControlPlane(
        data_dir=args.data_dir.resolve(), bind=args.bind, port=args.port, store_spec=args.store,
        advertise=args.advertise_address, pod_security=getattr(args, "pod_security", "baseline"),
        controller_options=ControllerOptions(
            cluster_cidr=args.cluster_cidr, node_cidr_mask_size=args.node_cidr_mask_size,
            node_monitor_grace_period=args.node_monitor_grace_period,
        ),
        leader_elect_lease_duration=lease, leader_elect_renew_deadline=renew, leader_elect_retry_period=retry,
        default_not_ready_toleration_seconds=args.default_not_ready_toleration_seconds,
        default_unreachable_toleration_seconds=args.default_unreachable_toleration_seconds,
        audit_log=args.audit_log.resolve() if args.audit_log else None,
        audit_log_maxsize=args.audit_log_maxsize, audit_log_maxbackup=args.audit_log_maxbackup,
    )


def _announce(args: argparse.Namespace, message: str, **fields: Any) -> None:
    """A line for the user: printed as is in text mode, a log record in JSON mode."""
    if getattr(args, "log_format", "text") == "json":
        log.info(message.strip(), extra=fields)
    else:
        print(message, file=sys.stderr, flush=True)


def run_up(args: argparse.Namespace, *, with_agent: bool) -> int:
    setup_logging(args.log_level, getattr(args, "log_format", "text"))
    steps = Steps("log" if getattr(args, "log_format", "text") == "json" else None)
    with steps.step("prerequisites: root, runc, conmon, CNI plugins, cgroups" if with_agent else "prerequisites"):
        problems = missing_prerequisites(need_node=with_agent)
        if problems:
            raise CliError("; ".join(problems))
    lock = DataDirLock(args.data_dir)
    with steps.step(f"data dir {args.data_dir} and port {args.port}"):
        try:
            lock.acquire()
        except DataDirBusyError as e:
            raise CliError(str(e)) from None
        except PermissionError:
            raise CliError(f"cannot write {args.data_dir}: run as root or pass a --data-dir you own") from None
        problem = port_problem(args.bind, args.port)
        if problem:
            lock.release()
            raise CliError(problem)
    try:
        asyncio.run(_serve(args, with_agent, steps))
    finally:
        lock.release()
    return 0
