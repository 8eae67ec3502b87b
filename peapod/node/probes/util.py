"""Port resolution and Go-style error text, so events read like kubelet's."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any


class ProbeError(Exception):
    """The probe could not be run at all (kubelet's "probe errored": bad port, no handler...)."""


def join_host_port(host: str, port: int) -> str:
    """Go's net.JoinHostPort."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def resolve_port(port: Any, container: Mapping[str, Any]) -> int:
    """kubelet's ResolveContainerPort: a number, a container port name, or a number in a string."""
    if isinstance(port, bool) or port is None:
        raise ProbeError(f"intOrString had no kind: {port!r}")
    if isinstance(port, int):
        value = port
    else:
        name = str(port)
        for p in container.get("ports") or ():
            if p.get("name") == name:
                value = int(p.get("containerPort") or 0)
                break
        else:
            try:
                value = int(name, 10)
            except ValueError:
                raise ProbeError(f'strconv.Atoi: parsing "{name}": invalid syntax') from None
    if 0 < value < 65536:
        return value
    raise ProbeError(f"invalid port number: {value}")


def errno_text(e: OSError) -> str:
    """Go's syscall.Errno text ("connection refused")."""
    if e.errno:
        text = os.strerror(e.errno)
        return text[:1].lower() + text[1:]
    return str(e) or type(e).__name__


def dial_error(host: str, port: int, e: BaseException) -> str:
    """Go's dial error: "dial tcp 10.0.0.5:8080: connect: connection refused"."""
    addr = join_host_port(host, port)
    if isinstance(e, TimeoutError):
        return f"dial tcp {addr}: i/o timeout"
    if isinstance(e, socket.gaierror):
        return f"dial tcp: lookup {host}: {e.strerror or 'no such host'}"
    if isinstance(e, OSError):
        return f"dial tcp {addr}: connect: {errno_text(e)}"
    return f"dial tcp {addr}: {e}"


def go_quote(s: str) -> str:
    """Roughly Go's %q for plain text."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'
