"""What ``peapod up`` needs on the machine, each missing piece reported as one line with its fix.

The checks read the machine through :class:`Host`, so unit tests give them a fake one.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CNI_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
# The node runtime runs these by their Debian paths: (path, apt package).
NODE_BINARIES = (
    ("/usr/bin/runc", "runc"),
    ("/usr/bin/conmon", "conmon"),
    ("/usr/bin/catatonit", "catatonit"),
    ("/usr/bin/unshare", "util-linux"),
    ("/usr/bin/nsenter", "util-linux"),
)
CGROUP_ROOT = "/sys/fs/cgroup"


def _port_free(host: str, port: int) -> str | None:
    """None when ``host:port`` can be listened on, else the OS error's name (``EADDRINUSE``...)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return "EADDRNOTAVAIL"
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the API server listens
        try:
            s.bind(addr)
        except OSError as e:
            return errno.errorcode.get(e.errno or 0, str(e))
    return None


@dataclass
class Host:
    """The parts of the machine the checks look at."""

    euid: Callable[[], int] = os.geteuid
    exists: Callable[[str], bool] = os.path.exists
    is_dir: Callable[[str], bool] = os.path.isdir
    which: Callable[[str], str | None] = shutil.which
    bind_error: Callable[[str, int], str | None] = _port_free


def missing_prerequisites(*, need_node: bool, host: Host | None = None) -> list[str]:
    """One line per missing piece, each with its fix (empty: all there)."""
    if not need_node:
        return []
    h = host or Host()
    problems: list[str] = []
    if h.euid() != 0:
        problems.append(
            "running pods needs root: run `sudo peapod up ...` (or `peapod server` for the control plane only)"
        )
    missing_pkgs: dict[str, list[str]] = {}
    for path, package in NODE_BINARIES:
        if not h.exists(path):
            missing_pkgs.setdefault(package, []).append(Path(path).name)
    if h.which("ip") is None and not h.exists("/usr/sbin/ip"):
        missing_pkgs.setdefault("iproute2", []).append("ip")
    if missing_pkgs:  # one line, one command that installs them all
        names = ", ".join(n for ns in missing_pkgs.values() for n in ns)
        problems.append(f"{names} not found: install with `apt-get install {' '.join(missing_pkgs)}` "
                        "(or `make install`)")
    plugin_dir = next((d for d in CNI_DIRS if h.exists(f"{d}/bridge")), None)
    missing_cni = [p for p in CNI_PLUGINS if plugin_dir is None or not h.exists(f"{plugin_dir}/{p}")]
    if missing_cni:
        problems.append(
            f"CNI plugins ({', '.join(missing_cni)}) not found in {' or '.join(CNI_DIRS)}: "
            "install with `apt-get install containernetworking-plugins`"
        )
    if not h.is_dir(CGROUP_ROOT) or not (
        h.exists(f"{CGROUP_ROOT}/cgroup.controllers") or h.is_dir(f"{CGROUP_ROOT}/memory")
    ):
        problems.append(
            f"cgroups are not mounted at {CGROUP_ROOT}: mount them with "
            f"`mount -t cgroup2 cgroup2 {CGROUP_ROOT}` (or boot with systemd)"
        )
    return problems


def port_problem(bind: str, port: int, *, host: Host | None = None) -> str | None:
    """Why the API server could not listen on ``bind:port``, with the fix (None: it can)."""
    err = (host or Host()).bind_error(bind, port)
    if err is None:
        return None
    if err == "EADDRINUSE":
        return f"port {port} on {bind} is already in use: stop what listens there or pass another --port"
    if err == "EACCES":
        return f"no permission to listen on port {port}: run as root or pass a --port above 1023"
    if err == "EADDRNOTAVAIL":
        return f"{bind} is not an address of this machine: pass one of its addresses to --bind"
    return f"cannot listen on {bind}:{port} ({err}): pass another --bind or --port"
