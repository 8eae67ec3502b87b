"""``peapod cluster up`` / ``peapod cluster down``: a multi-node cluster on this machine (see
:mod:`peapod.cluster`). ``up`` returns once every node is Ready; its processes run on in the background."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_CLUSTER_DIR = Path("/var/lib/peapod-cluster")

# `peapod server` flags passed through as given (failure timing, for tests and experiments).
SERVER_PASSTHROUGH: tuple[tuple[str, type], ...] = (
    ("--node-monitor-grace-period", float),
    ("--default-not-ready-toleration-seconds", int),
    ("--default-unreachable-toleration-seconds", int),
    ("--leader-elect-lease-duration", float),
    ("--leader-elect-renew-deadline", float),
    ("--leader-elect-retry-period", float),
)


def add_cluster_parser(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("cluster", help="a multi-node cluster on this machine: hosts in network namespaces")
    verbs = c.add_subparsers(dest="cluster_command", required=True, metavar="{up,down}")
    up = verbs.add_parser("up", help="start etcd, servers and one agent per host; return when all nodes are Ready")
    up.add_argument("--nodes", type=int, default=3, help="number of hosts, one node each (default 3)")
    up.add_argument("--data-dir", type=Path, default=DEFAULT_CLUSTER_DIR, help="state directory of the cluster")
    up.add_argument("--servers", type=int, default=2, help="API servers (default 2)")
    up.add_argument("--etcd-members", type=int, default=3, help="etcd members (default 3)")
    up.add_argument("--network", choices=["host-gw", "vxlan", "none"], default="host-gw",
                    help="how pods reach pods of other nodes (default host-gw)")
    up.add_argument("--insecure-registry", action="append", default=[], metavar="127.0.0.1:PORT",
                    help="a registry on this machine's loopback, reachable from every host under that name; "
                         "the agents pull only from these (repeatable)")
    up.add_argument("--subnet", default=None, metavar="CIDR", help="the hosts' addresses (default: a free /24)")
    up.add_argument("--cluster-cidr", default=None, metavar="CIDR", help="the pods' addresses (default: a free /16)")
    for flag, kind in SERVER_PASSTHROUGH:
        up.add_argument(flag, type=kind, default=None, metavar="SECONDS", help=f"passed to `peapod server` {flag}")
    up.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                    help="give up (and remove what was made) after this long (default 120)")
    up.add_argument("--retain", action="store_true", help="when up fails, keep what it made (to read its logs)")
    down = verbs.add_parser("down", help="stop and remove everything a cluster made")
    down.add_argument("--data-dir", type=Path, default=DEFAULT_CLUSTER_DIR, help="state directory of the cluster")


def server_args(args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    for flag, _ in SERVER_PASSTHROUGH:
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if value is not None:
            out += [flag, str(value)]
    return out


def run_cluster(args: argparse.Namespace) -> int:
    from peapod.cli.main import CliError
    from peapod.cli.progress import Steps
    from peapod.cluster import ClusterError
    from peapod.cluster.lifecycle import UpOptions, down, up

    steps = Steps()
    try:
        if args.cluster_command == "up":
            st = up(UpOptions(
                data_dir=args.data_dir, nodes=args.nodes, servers=args.servers, etcd_members=args.etcd_members,
                network=args.network, registries=list(args.insecure_registry), subnet=args.subnet,
                cluster_cidr=args.cluster_cidr, server_args=server_args(args), timeout=args.timeout,
                retain=args.retain,
            ), steps)
            steps.info(f"  nodes {', '.join(h.node_name for h in st.hosts)} on {st.subnet}; pods in {st.cluster_cidr}"
                       f"; stop it with: peapod cluster down --data-dir {args.data_dir}")
            print(f"export KUBECONFIG={st.kubeconfig}", flush=True)
            return 0
        removed = down(args.data_dir, steps)
        steps.info(f"peapod cluster down: {len(removed)} item(s) removed")
        return 0
    except ClusterError as e:
        raise CliError(str(e)) from None
