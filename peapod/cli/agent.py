"""``peapod agent``: a node of a multi-node cluster.

Joins with the server's join token (:mod:`peapod.cli.join`: CA pinned by the token, then the node's
own client and serving certificates), registers its Node with ``InternalIP = --node-ip``, waits for
the control plane's node IPAM to set ``spec.podCIDR``, then runs the node agent with that pod CIDR
(and, with ``--network host-gw|vxlan``, the cross-node pod network). Ctrl-C/SIGTERM stops it, and its
pods unless ``--keep-pods``.

Layout of ``--data-dir``: ``tls/`` (credentials), ``node/`` (the agent's state, as ``peapod up``'s
``DATA/node``, so ``peapod down --data-dir`` cleans up after a crash), ``lock``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from peapod.api.errors import ApiError
from peapod.api.resources import resource
from peapod.cli.datadir import DataDirBusyError, DataDirLock
from peapod.cli.join import JoinError, NodeCredentials, join, usable
from peapod.cli.logging_setup import setup_logging
from peapod.cli.main import CliError
from peapod.cli.prereq import missing_prerequisites
from peapod.cli.up import APISERVER_CLIENT_CN  # the only client the agent's endpoint accepts
from peapod.client.rest import ApiClient
from peapod.clock import Clock, RealClock

log = logging.getLogger("peapod")

NODES = resource("", "v1", "nodes")


def source_address(server: str) -> str:
    """The local address this host uses to reach ``server`` (a UDP connect sends nothing)."""
    parts = urlsplit(server)
    host, port = parts.hostname or "127.0.0.1", parts.port or 443
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((host, port))
        except OSError as e:
            raise CliError(f"cannot find a route to {host}: {e}; pass --node-ip") from None
        return str(s.getsockname()[0])


async def ensure_credentials(args: argparse.Namespace, node_ip: str) -> NodeCredentials:
    creds = NodeCredentials.in_dir(args.data_dir / "tls")
    if usable(creds, args.node_name, node_ip):
        log.info("using the node credentials kept in %s", creds.ca.parent)
        return creds
    if args.token is None:
        raise CliError(f"no valid node credentials in {creds.ca.parent}: pass --token-file (the server's "
                       "DATA/node-token) to join")
    try:
        await join(args.server, args.token, args.node_name, [node_ip], creds)
    except JoinError as e:
        raise CliError(str(e)) from None
    log.info("joined %s as node %s", args.server, args.node_name)
    return creds


async def register_and_wait_for_cidr(client: ApiClient, node_name: str, *, clock: Clock,
                                     stop: asyncio.Event) -> str | None:
    """Create the Node (or find it), then wait until the control plane gave it a pod CIDR.
    Returns None when asked to stop first."""
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node_name, "labels": {"kubernetes.io/hostname": node_name,
                                                       "kubernetes.io/os": "linux"}}}
    try:
        try:
            got = await client.create(NODES, node)
        except ApiError as e:
            if e.code != 409:
                raise CliError(f"cannot register node {node_name}: {e.message}") from None
            got = await client.get(NODES, node_name)
    except (aiohttp.ClientError, OSError) as e:
        raise CliError(f"cannot reach the API server as node {node_name}: {e} (if the cluster was made anew, "
                       "remove DATA/tls and join again with --token-file)") from None
    waited = 0.0
    while not stop.is_set():
        cidr = (got.get("spec") or {}).get("podCIDR")
        if cidr:
            return str(cidr)
        if waited and waited % 10 < 0.5:
            log.info("node %s: waiting for the control plane to allocate a pod CIDR", node_name)
        await clock.sleep(0.5)
        waited += 0.5
        got = await client.get(NODES, node_name)
    return None


async def _run(args: argparse.Namespace) -> None:
    from peapod.node.agent import Agent, AgentConfig
    from peapod.node.images import RegistryConfig

    clock = RealClock()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    node_ip = args.node_ip or source_address(args.server)
    creds = await ensure_credentials(args, node_ip)
    client = ApiClient(args.server, ssl_context=creds.client_ssl(), user_agent="peapod-agent")
    agent: Any = None
    network: Any = None
    try:
        pod_cidr = await register_and_wait_for_cidr(client, args.node_name, clock=clock, stop=stop)
        if pod_cidr is None:
            return
        node_dir = args.data_dir / "node"
        node_dir.mkdir(parents=True, exist_ok=True)
        (node_dir / "bridge").write_text(args.bridge + "\n")  # for `peapod down`
        cfg = AgentConfig.for_data_dir(
            node_name=args.node_name, data_dir=node_dir, client=client, pod_cidr=pod_cidr, bridge=args.bridge,
            node_ips=[node_ip], bind=args.bind or node_ip, port=args.port,
            tls_cert=creds.serving_cert, tls_key=creds.serving_key, client_ca=creds.ca,
            allowed_client_names=(APISERVER_CLIENT_CN,), keep_pods=args.keep_pods, clock=clock,
            registry_config=RegistryConfig(insecure_registries=tuple(args.insecure_registry),
                                           allowed_registries=tuple(args.allowed_registry)),
        )
        agent = Agent(cfg)
        try:
            await agent.start()
        except OSError as e:
            raise CliError(f"cannot start the node agent on {args.bind or node_ip}:{args.port}: {e}") from None
        if args.network != "none":
            from peapod.node.network.crossnode import CrossNodeNetwork

            try:
                network = CrossNodeNetwork(client, node_name=args.node_name, node_ip=node_ip, mode=args.network,
                                           clock=clock)
                await network.start()
            except (ValueError, OSError) as e:
                raise CliError(f"cross-node network ({args.network}): {e}") from None
        _announce(args, f"peapod agent: node {args.node_name} ({node_ip}, pods {pod_cidr}) joined {args.server}")
        await stop.wait()
    finally:
        _announce(args, "peapod agent: stopping")
        if network is not None:
            await network.stop()
        if agent is not None:
            await agent.stop(stop_pods=not args.keep_pods)
        await client.close()


def _announce(args: argparse.Namespace, message: str) -> None:
    import sys

    if args.log_format == "json":
        log.info(message)
    else:
        print(message, file=sys.stderr, flush=True)


def run_agent(args: argparse.Namespace) -> int:
    setup_logging(args.log_level, args.log_format)
    args.data_dir = Path(args.data_dir).resolve()
    args.token = None
    if args.token_file is not None:
        try:
            args.token = Path(args.token_file).read_text()
        except OSError as e:
            raise CliError(f"cannot read --token-file {args.token_file}: {e.strerror}") from None
    if args.node_ip:
        try:
            ipaddress.ip_address(args.node_ip)
        except ValueError:
            raise CliError(f"--node-ip {args.node_ip!r} is not an IP address") from None
    if urlsplit(args.server).scheme != "https":
        raise CliError(f"--server {args.server!r}: an https:// URL is required")
    problems = missing_prerequisites(need_node=True)
    if problems:
        raise CliError("; ".join(problems))
    lock = DataDirLock(args.data_dir)
    try:
        lock.acquire()
    except DataDirBusyError as e:
        raise CliError(str(e)) from None
    except PermissionError:
        raise CliError(f"cannot write {args.data_dir}: run as root or pass a --data-dir you own") from None
    try:
        asyncio.run(_run(args))
    finally:
        lock.release()
    return 0
