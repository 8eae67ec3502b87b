"""The per-container termination-message file (kubelet: <pod_dir>/containers/<name>/<8 hex>, mode 0666)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from peapod.node.runtime.types import Mount

from .types import CONTAINERS_DIR

DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
MAX_TERMINATION_MESSAGE = 4096  # bytes read back per container


def create_termination_log(pod_dir: Path, container_name: str) -> Path:
    """A fresh empty file for one run of the container (a new file per restart, like kubelet)."""
    d = Path(pod_dir) / CONTAINERS_DIR / container_name
    d.mkdir(parents=True, exist_ok=True, mode=0o750)
    while True:
        p = d / f"{secrets.randbits(32):08x}"
        try:
            fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        os.fchmod(fd, 0o666)  # whatever the umask: the container's user writes it
        os.close(fd)
        return p


def termination_mount(container: Mapping[str, Any], host_file: Path) -> Mount | None:
    """The bind mount of ``host_file`` at the container's terminationMessagePath (None if it has none).

    The runtime's ContainerConfig.termination_log_path/termination_message_path do the same; use one.
    """
    dest = container.get("terminationMessagePath", DEFAULT_TERMINATION_MESSAGE_PATH)
    if not dest:
        return None
    return Mount(destination=dest, source=str(host_file), type="bind")


def read_termination_message(host_file: Path, limit: int = MAX_TERMINATION_MESSAGE) -> str:
    """The first ``limit`` bytes the container wrote (kubelet reads at most 4096)."""
    try:
        with open(host_file, "rb") as f:
            return f.read(limit).decode(errors="replace")
    except FileNotFoundError:
        return ""
