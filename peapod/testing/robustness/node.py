"""What runs on the node for a data dir: runc's containers and conmon processes (read from the system)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from peapod.testing.robustness.checker import NodeContainer


def runtime_dir(data_dir: Path) -> Path:
    return data_dir / "node" / "runtime"


def _cmdline(pid: int) -> list[str]:
    try:
        return [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return []


def conmons(data_dir: Path) -> dict[int, str]:
    """pid -> container id of every conmon running for ``data_dir``'s runtime."""
    root = str(runtime_dir(data_dir))
    out: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        args = _cmdline(int(entry))
        if not args or not args[0].endswith("conmon") or not any(root in a for a in args):
            continue
        if "-c" in args[:-1]:
            out[int(entry)] = args[args.index("-c") + 1]
    return out


def containers(data_dir: Path) -> list[NodeContainer]:
    """runc's view of the containers under ``data_dir`` (``runc list``), with whether their conmon lives."""
    root = runtime_dir(data_dir) / "runc"
    if not root.is_dir():
        return []
    p = subprocess.run(["runc", "--root", str(root), "list", "--format", "json"],
                       capture_output=True, text=True, timeout=30)
    listed = json.loads(p.stdout or "null") or []
    alive = set(conmons(data_dir).values())
    return [NodeContainer(c["id"], c["status"], c["id"] in alive) for c in listed]


def container_pids(data_dir: Path, container_id: str) -> tuple[int | None, int | None]:
    """(conmon pid, container main pid) of a container, each None unless it is alive and really its own."""
    rec = runtime_dir(data_dir) / "containers" / container_id

    def read(name: str) -> int | None:
        try:
            pid = int((rec / name).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if Path(f"/proc/{pid}").exists() else None

    conmon = read("conmon.pid")
    if conmon is not None and container_id not in _cmdline(conmon):
        conmon = None
    return conmon, read("ctr.pid")
