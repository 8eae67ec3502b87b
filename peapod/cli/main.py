"""The ``peapod`` command."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_DATA_DIR = Path("/var/lib/peapod")


class CliError(Exception):
    """A problem the user can fix: printed as one line, exit code 1, no traceback."""


def _add_server_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="state directory")
    p.add_argument("--port", type=int, default=6443, help="HTTPS port of the API server")
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on (default: loopback)")
    p.add_argument(
        "--store", default=None,
        help="store: sqlite (default, DATA/state.db), sqlite:///PATH, or etcd://H1:2379,H2:2379",
    )
    p.add_argument("--advertise-address", default=None, help="address put in kubeconfig/certificates")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", default="text", choices=["text", "json"],
                   help="log lines as text or as JSON objects (one per line)")
    p.add_argument(
        "--pod-security", default="baseline", choices=["privileged", "baseline", "restricted"],
        help="Pod Security level enforced in namespaces without a pod-security.kubernetes.io/enforce label",
    )
    p.add_argument("--audit-log", type=Path, default=None, metavar="PATH",
                   help="write an audit.k8s.io/v1 Event (level Metadata) per mutating request to PATH")
    p.add_argument("--audit-log-maxsize", type=float, default=100.0, metavar="MB",
                   help="rotate the audit log when it reaches this many megabytes (0: never)")
    p.add_argument("--audit-log-maxbackup", type=int, default=10, metavar="N",
                   help="rotated audit log files to keep")
    p.add_argument("--cluster-cidr", default="10.42.0.0/16",
                   help="pod addresses of the cluster; each joining node gets a block of it (default 10.42.0.0/16)")
    p.add_argument("--node-cidr-mask-size", type=int, default=24,
                   help="prefix length of each node's block of --cluster-cidr (default 24)")
    p.add_argument("--node-monitor-grace-period", type=float, default=40.0, metavar="SECONDS",
                   help="a node silent this long is marked NotReady/Unknown (default 40)")
    p.add_argument("--default-not-ready-toleration-seconds", type=int, default=300, metavar="SECONDS",
                   help="tolerationSeconds of the not-ready NoExecute toleration added to pods (default 300)")
    p.add_argument("--default-unreachable-toleration-seconds", type=int, default=300, metavar="SECONDS",
                   help="tolerationSeconds of the unreachable NoExecute toleration added to pods (default 300)")
    p.add_argument("--leader-elect-lease-duration", type=float, default=15.0, metavar="SECONDS",
                   help="how long a dead leader's lease blocks the other servers (default 15)")
    p.add_argument("--leader-elect-renew-deadline", type=float, default=10.0, metavar="SECONDS",
                   help="a leader that cannot renew within this stops leading (default 10)")
    p.add_argument("--leader-elect-retry-period", type=float, default=2.0, metavar="SECONDS",
                   help="interval of lease renewals and acquisition attempts (default 2)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="peapod", description="A Kubernetes-compatible pod engine.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run a single-node cluster in the foreground")
    _add_server_flags(up)
    up.add_argument("--node-name", default=None, help="name of the local node (default: the hostname)")
    up.add_argument("--keep-pods", action="store_true", help="leave pods running when peapod stops")
    up.add_argument("--pod-cidr", default="10.77.0.0/16", help="addresses for this node's pods")
    up.add_argument("--bridge", default="peapod0", help="name of the pods' bridge (one per data dir on a host)")
    up.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                    help="registry reachable over plain HTTP (loopback ones always are); repeatable")
    up.add_argument("--allowed-registry", action="append", default=[], metavar="HOST[:PORT]",
                    help="pull only from these registries (default: any); repeatable")
    down = sub.add_parser("down", help="remove everything the pods of a data dir hold (after a crash)")
    down.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    down.add_argument("--bridge", default=None, help="the bridge `peapod up` used (default: the recorded one)")
    server = sub.add_parser("server", help="run the control plane only")
    _add_server_flags(server)
    _add_agent_parser(sub)
    from peapod.cli.cluster import add_cluster_parser

    add_cluster_parser(sub)
    kc = sub.add_parser("kubeconfig", help="print the admin kubeconfig of a data dir, or merge it into kubectl's")
    kc.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    kc.add_argument("--merge", action="store_true",
                    help="merge into ~/.kube/config (or $KUBECONFIG's first file) instead of printing")
    kc.add_argument("--context", dest="context_name", default=None, metavar="NAME",
                    help="name of the context, cluster and user (default: peapod)")
    kc.add_argument("--set-current", action="store_true", help="make it the current context")
    kc.add_argument("--kubeconfig", default=None, metavar="FILE", help="the file to merge into")
    comp = sub.add_parser("completion", help="print a shell completion script")
    comp.add_argument("shell", choices=["bash", "zsh", "tcsh"])
    ex = sub.add_parser("run-example", help="start a cluster, build and deploy an example, run until Ctrl-C")
    from peapod.cli.example import add_arguments as _example_arguments

    _example_arguments(ex)
    sub.add_parser("version", help="print the version")
    _add_images_parser(sub)
    _add_build_parsers(sub)
    return parser


def _add_agent_parser(sub: argparse._SubParsersAction) -> None:
    """``peapod agent``: a node that joins a control plane with a join token."""
    a = sub.add_parser("agent", help="run a node agent that joins a `peapod server`")
    a.add_argument("--server", required=True, metavar="URL", help="API server, e.g. https://10.0.0.1:6443")
    a.add_argument("--token-file", type=Path, default=None, metavar="FILE",
                   help="the server's DATA/node-token (needed only until the node has its credentials)")
    a.add_argument("--node-name", required=True, help="name of this node")
    a.add_argument("--data-dir", type=Path, default=Path("/var/lib/peapod-agent"), help="state directory")
    a.add_argument("--node-ip", default=None,
                   help="this node's address (InternalIP); default: the address that reaches the server")
    a.add_argument("--bind", default=None, help="address of the agent's HTTPS endpoint (default: --node-ip)")
    a.add_argument("--port", type=int, default=10250, help="port of the agent's HTTPS endpoint (default 10250)")
    a.add_argument("--network", choices=["none", "host-gw", "vxlan"], default="none",
                   help="how pods reach pods of other nodes (default: none, pods reach their own node only)")
    a.add_argument("--bridge", default="peapod0", help="name of the pods' bridge (one per data dir on a host)")
    a.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                   help="registry reachable over plain HTTP (loopback ones always are); repeatable")
    a.add_argument("--allowed-registry", action="append", default=[], metavar="HOST[:PORT]",
                   help="pull only from these registries (default: any); repeatable")
    a.add_argument("--keep-pods", action="store_true", help="leave pods running when the agent stops")
    a.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    a.add_argument("--log-format", default="text", choices=["text", "json"],
                   help="log lines as text or as JSON objects (one per line)")


def _add_build_parsers(sub: argparse._SubParsersAction) -> None:
    """``peapod build`` (a Containerfile into the node's image store) and ``peapod push``."""
    b = sub.add_parser("build", help="build an image from a Containerfile into the node's image store")
    b.add_argument("context", metavar="DIR", help="the build context")
    b.add_argument("-t", "--tag", action="append", default=[], metavar="NAME[:TAG]", help="name the image")
    b.add_argument("-f", "--file", default=None, metavar="FILE",
                   help="the Containerfile (default: DIR/Containerfile or DIR/Dockerfile)")
    b.add_argument("--build-arg", action="append", default=[], metavar="KEY[=VALUE]", help="set a build ARG")
    b.add_argument("--network", choices=["none", "host"], default="none",
                   help="network of RUN steps: none (loopback only, the default) or host")
    b.add_argument("--no-cache", action="store_true", help="run every step again")
    b.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                   help="registry reachable over plain HTTP for FROM pulls (loopback ones always are)")
    b.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="state directory")
    p = sub.add_parser("push", help="push an image of the node's store to a registry")
    p.add_argument("image", metavar="NAME[:TAG]")
    p.add_argument("dest", nargs="?", default=None, metavar="DEST", help="target reference (default: NAME[:TAG])")
    p.add_argument("--creds", metavar="USER[:PASSWORD]", help="registry credentials (asks for the password)")
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                   help="registry reachable over plain HTTP (loopback ones always are); repeatable")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="state directory")


def _add_images_parser(sub: argparse._SubParsersAction) -> None:
    """``peapod images {ls,pull,load,rm,prune}``: through the running agent's socket, else directly."""
    images = sub.add_parser("images", help="list, pull, load and remove the node's images")
    images.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="state directory")
    verbs = images.add_subparsers(dest="images_command", required=True, metavar="{ls,pull,load,rm,prune}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help="state directory")
    ls = verbs.add_parser("ls", aliases=["list"], parents=[common], help="list images")
    ls.add_argument("-q", "--quiet", action="store_true", help="only image ids")
    ls.add_argument("--no-trunc", action="store_true", help="full image ids")
    ls.add_argument("-o", "--output", choices=["table", "json"], default="table")
    pull = verbs.add_parser("pull", parents=[common], help="pull an image from a registry")
    pull.add_argument("ref", metavar="IMAGE")
    pull.add_argument("--creds", metavar="USER[:PASSWORD]", help="registry credentials (asks for the password)")
    pull.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                      help="registry reachable over plain HTTP (loopback ones always are); repeatable")
    load = verbs.add_parser("load", parents=[common], help="import a docker-archive tar or an OCI layout")
    load.add_argument("path", metavar="FILE|DIR")
    load.add_argument("--name", default=None, help="name for images the archive does not name")
    rm = verbs.add_parser("rm", aliases=["rmi"], parents=[common], help="untag or remove images")
    rm.add_argument("refs", nargs="+", metavar="IMAGE")
    verbs.add_parser("prune", parents=[common], help="remove every image no container uses")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in ("up", "server"):
            from peapod.cli.up import run_up

            return run_up(args, with_agent=args.command == "up")
        if args.command == "cluster":
            from peapod.cli.cluster import run_cluster

            return run_cluster(args)
        if args.command == "agent":
            from peapod.cli.agent import run_agent

            return run_agent(args)
        if args.command == "down":
            from peapod.cli.down import run_down

            return run_down(args)
        if args.command == "images":
            from peapod.cli.images import run_images

            return run_images(args)
        if args.command in ("build", "push"):
            from peapod.cli.build import run_build, run_push

            return run_build(args) if args.command == "build" else run_push(args)
        if args.command == "kubeconfig":
            from peapod.cli.kubeconfig import run_kubeconfig

            return run_kubeconfig(args)
        if args.command == "completion":
            from peapod.cli.completion import run_completion

            return run_completion(args, build_parser())
        if args.command == "run-example":
            from peapod.cli.example import run_example

            return run_example(args)
        if args.command == "version":
            from peapod import __version__

            print(f"peapod {__version__}")
            return 0
    except CliError as e:
        print(f"peapod: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # never a traceback for the user, unless asked for
        if os.environ.get("PEAPOD_TRACEBACK"):
            raise
        print(f"peapod: unexpected {type(e).__name__}: {e} (PEAPOD_TRACEBACK=1 shows where)", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    # Run the imported module's main, so CliError raised by subcommands is the class caught there.
    from peapod.cli.main import main as _main

    sys.exit(_main())
