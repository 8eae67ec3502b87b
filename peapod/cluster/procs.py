"""Background processes of a cluster: started in their own session with a log file, then known only by
PID and start time (they outlive ``peapod cluster up``). Stopped by PID, never by name.

A process that died but was not reaped (a zombie: the machine's init may not reap orphans) counts as gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from peapod.cluster.state import Proc


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks), or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[19])


def _state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat[stat.rindex(")") + 2:].split()[0]


def alive(proc: Proc | None) -> bool:
    """The recorded process still runs (same PID and start time, not a zombie)."""
    if proc is None:
        return False
    return start_time(proc.pid) == proc.start_time and _state(proc.pid) not in (None, "Z", "X")


def spawn(argv: Sequence[str], log: Path, *, env: dict[str, str] | None = None) -> Proc:
    """Start ``argv`` in a new session (a ^C in the terminal does not reach it), output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        p = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, env=env,
        )
    st = start_time(p.pid)
    # Popen objects would reap the child on garbage collection; the process is ours to track by PID.
    p.returncode = 0  # tell Popen not to wait for it
    return Proc(pid=p.pid, start_time=st or 0, argv=list(argv), log=str(log))


def signal_proc(proc: Proc | None, sig: int) -> bool:
    if not alive(proc):
        return False
    assert proc is not None
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)
    _reap(proc.pid)
    return True


def wait_gone(procs: Sequence[Proc | None], timeout: float) -> list[Proc]:
    """Wait until none of ``procs`` is alive; returns the ones still alive at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in procs if p is not None and alive(p)]
        for p in left:
            _reap(p.pid)
        left = [p for p in left if alive(p)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def stop(procs: Sequence[Proc | None], *, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """``sig`` to every live one, then SIGKILL after ``timeout``; returns when all are gone."""
    for p in procs:
        signal_proc(p, sig)
    left = wait_gone(procs, timeout)
    for p in left:
        signal_proc(p, signal.SIGKILL)
    wait_gone(left, 10.0)


def kill(proc: Proc | None) -> None:
    """SIGKILL, as a crash would."""
    stop([proc], timeout=0, sig=signal.SIGKILL)


def _reap(pid: int) -> None:
    """Collect the exit status when the process is our own child (else its parent or init does)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
