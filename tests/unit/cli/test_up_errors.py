"""`peapod up` as a user runs it, when something is in the way: a one-line error with the fix, exit
code 1, never a traceback, and nothing started (the real command; root, like `peapod up` itself)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from peapod.cli.datadir import DataDirLock
from peapod.testing.cluster import free_port, peapod_executable

pytestmark = [pytest.mark.e2e]
needs_root = pytest.mark.skipif(subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0",
                                reason="needs root")


def up(data: Path, port: int, *, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    # A bridge and pod CIDR of its own: should `up` wrongly start, it never touches another cluster's.
    return subprocess.run([*prefix, *peapod_executable(), "up", "--data-dir", str(data), "--port", str(port),
                           "--bridge", "ppterr0", "--pod-cidr", "10.254.254.0/24"],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def error_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    *steps, last = r.stderr.strip().splitlines()
    assert last.startswith("peapod: ") and all(s.startswith("ok ") for s in steps), r.stderr
    return last


@needs_root
def test_port_busy(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        line = error_line(up(tmp_path / "data", port))
    assert line == (f"peapod: port {port} on 127.0.0.1 is already in use: stop what listens there or "
                    "pass another --port")
    assert not (tmp_path / "data" / "kubeconfig").exists() and not (tmp_path / "data" / "node").exists()


@needs_root
def test_data_dir_of_a_running_peapod(tmp_path: Path) -> None:
    data = tmp_path / "data"
    lock = DataDirLock(data)  # what a running peapod holds
    lock.acquire()
    try:
        line = error_line(up(data, free_port()))
    finally:
        lock.release()
    assert line == (f"peapod: data dir {data} is in use by another peapod (pid {os.getpid()}); "
                    "stop it or pass another --data-dir")
    assert not (data / "kubeconfig").exists()


def _reachable_by_others(path: Path) -> bool:
    """Whether a user other than the owner can reach and read ``path`` (every parent searchable)."""
    path = path.resolve()
    if not path.stat().st_mode & 0o004:
        return False
    return all(p.stat().st_mode & 0o001 for p in path.parents)


def _code_reachable() -> bool:
    import peapod

    return all(_reachable_by_others(Path(p)) for p in (peapod_executable()[0], peapod.__file__))


@needs_root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_not_root(tmp_path: Path) -> None:
    if not _code_reachable():  # e.g. a clone inside a 0700 `mktemp -d` directory
        pytest.skip("peapod's code is not readable by an unprivileged user from where it is installed")
    tmp_path.chmod(0o777)
    line = error_line(up(tmp_path / "data", free_port(),
                         prefix=("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--")))
    assert line.startswith("peapod: running pods needs root: run `sudo peapod up ...`")
