"""The ``peapod`` command."""

from __future__ import annotations

import argparse
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
    kc = sub.add_parser("kubeconfig", help="print the admin kubeconfig of a data dir")
    kc.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    sub.add_parser("version", help="print the version")
    _add_images_parser(sub)
    _add_build_parsers(sub)
    return parser


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
            path = args.data_dir / "kubeconfig"
            if not path.exists():
                raise CliError(
                    f"no kubeconfig in {args.data_dir}: start `peapod up --data-dir {args.data_dir}` first"
                )
            sys.stdout.write(path.read_text())
            return 0
        if args.command == "version":
            from peapod import __version__

            print(f"peapod {__version__}")
            return 0
    except CliError as e:
        print(f"peapod: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    # Run the imported module's main, so CliError raised by subcommands is the class caught there.
    from peapod.cli.main import main as _main

    sys.exit(_main())
