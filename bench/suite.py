"""The benchmark suite: which scripts `bench/run.py` runs, with which sizes, and how one is run.

A benchmark is a script in bench/ that follows one convention (see bench/README.md):

- ``python bench/NAME.py [--smoke] --json PATH`` runs it; ``--smoke`` means tiny sizes (seconds, not
  minutes), no flag means the full sizes; it writes one JSON document to PATH and exits 0, or exits
  non-zero when it could not measure (a crash fails `make bench-smoke`);
- stdout is a human report (its markdown table lines, ``| ... |``, are copied into the summary);
- optionally the JSON document has a top-level ``"summary"`` list of rows
  ``{"measure": str, "value": float, "unit": str, "peers": {"podman": float}, "goal": "<= 20",
  "met": bool}`` (only ``measure`` and ``value`` required): the runner tabulates and plots those
  rows, ratios against the peers, and lists rows with ``met`` among the goals.

Scripts named in :data:`KNOWN` get their own sizes, plots and goals; any other ``bench/*_bench.py``
is picked up as well and run with ``--smoke`` / no flag. A known script that is absent is skipped.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Entry:
    name: str
    script: str
    title: str
    full: tuple[str, ...] = ()
    smoke: tuple[str, ...] = ("--smoke",)
    root: bool = False
    optional: bool = False
    timeout_full: float = 3600.0
    timeout_smoke: float = 150.0

    @property
    def path(self) -> Path:
        return BENCH_DIR / self.script


# Sizes: full as issue 8 asks; smoke small enough that the whole suite runs in about two minutes.
# ``{systems}`` is filled in with the systems podstart can compare here (podman only when installed).
KNOWN: tuple[Entry, ...] = (
    Entry("podstart", "podstart.py", "Pods: start, burst, delete, density vs podman and the runc + CNI floor",
          full=("--pods", "30", "--bursts", "10,50,110", "--density", "50,110", "--podman-burst", "parallel",
                "--systems", "{systems}"),
          smoke=("--smoke", "--pods", "2", "--bursts", "3", "--density", "3", "--settle", "1",
                 "--podman-burst", "parallel", "--systems", "{systems}"),
          root=True, timeout_full=5400.0),
    Entry("controlplane", "controlplane.py", "Control plane on SQLite and etcd",
          full=("--stores", "sqlite,etcd"), smoke=("--smoke", "--stores", "sqlite,etcd", "--cold-runs", "1")),
    Entry("scheduler", "scheduler_bench.py", "Scheduler core on simulated nodes", full=()),
    Entry("deployment", "deployment_bench.py", "Deployment of 100 replicas; scheduler through the API",
          full=(), smoke=("--smoke",), timeout_full=3600.0),
    Entry("probes", "probes_bench.py", "Probe machinery: 110 pods x 2 HTTP probes/s", root=True),
    Entry("probes_agent", "probes_agent_bench.py", "A real node probing 110 pods",
          root=True),
    Entry("cluster", "cluster_bench.py", "Multi-node cluster", root=True, optional=True),
    Entry("scale", "scale_bench.py", "Simulated nodes at scale", optional=True, timeout_full=5400.0),
)

NOT_BENCHMARKS = {"run.py", "suite.py", "goals.py", "plots.py", "summary.py", "machine.py"}


def discover(bench_dir: Path = BENCH_DIR) -> list[Entry]:
    """The known entries (absent optional ones included, to be reported as skipped), then any other
    ``*_bench.py`` found in ``bench_dir``."""
    entries = list(KNOWN)
    known = {e.script for e in KNOWN}
    for path in sorted(bench_dir.glob("*_bench.py")):
        if path.name not in known and path.name not in NOT_BENCHMARKS:
            entries.append(Entry(path.stem.removesuffix("_bench"), path.name, path.stem, root=False))
    return entries


@dataclass
class Outcome:
    status: str  # ok | failed | timeout | skipped
    seconds: float = 0.0
    args: list[str] = field(default_factory=list)
    result: Any = None
    table: str = ""
    stdout_tail: list[str] = field(default_factory=list)
    stderr_tail: list[str] = field(default_factory=list)
    reason: str = ""
    returncode: int | None = None
    loadavg: list[float] = field(default_factory=list)
    others_cpu_share: float | None = None  # share of the machine's CPU used by other processes meanwhile

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in ("", None, [])}


def _tee(stream: Any, sink: list[str], prefix: str, echo: bool) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        sink.append(line)
        if echo:
            print(f"{prefix}{line}", file=sys.stderr, flush=True)


def run_script(path: Path, args: list[str], json_path: Path, timeout: float, log_dir: Path,
               echo: bool = True, wrap: list[str] | None = None) -> Outcome:
    """Run one benchmark script in its own session; on timeout SIGINT its process group (the scripts
    clean up on KeyboardInterrupt), then SIGKILL it after a minute."""
    cmd = [*(wrap or []), sys.executable, str(path), *args, "--json", str(json_path)]
    busy0, kids0 = _busy_seconds(), _children_cpu()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, cwd=str(BENCH_DIR.parent))
    out: list[str] = []
    err: list[str] = []
    threads = [threading.Thread(target=_tee, args=(proc.stdout, out, "", False), daemon=True),
               threading.Thread(target=_tee, args=(proc.stderr, err, f"  [{path.stem}] ", echo), daemon=True)]
    for t in threads:
        t.start()
    status = "ok"
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        status = "timeout"
        _signal_group(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
    for t in threads:
        t.join(10)
    seconds = time.perf_counter() - t0
    # What the rest of the machine used meanwhile: all busy CPU time minus this script's tree (reaped
    # descendants count in RUSAGE_CHILDREN). Exact when scripts run one at a time, as in full runs.
    others = (_busy_seconds() - busy0) - (_children_cpu() - kids0)
    share = round(max(0.0, others) / (seconds * (os.cpu_count() or 1)), 3) if seconds > 0 else None
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / f"{path.stem}.stdout").write_text("\n".join(out) + "\n")
    (log_dir / f"{path.stem}.stderr").write_text("\n".join(err) + "\n")
    o = Outcome(status, round(seconds, 1), args, returncode=proc.returncode,
                table="\n".join(line for line in out if line.startswith("|")),
                stdout_tail=out[-15:], stderr_tail=err[-30:], loadavg=[round(x, 2) for x in os.getloadavg()],
                others_cpu_share=share)
    if status == "ok" and proc.returncode != 0:
        o.status, o.reason = "failed", f"exit code {proc.returncode}"
    if json_path.exists():
        try:
            o.result = json.loads(json_path.read_text())
        except json.JSONDecodeError as e:
            o.status, o.reason = "failed", f"unreadable JSON: {e}"
    elif o.status == "ok":
        o.status, o.reason = "failed", "no JSON written"
    if status == "timeout":
        o.reason = f"timed out after {timeout:.0f} s"
    return o


def _busy_seconds() -> float:
    """CPU seconds all cores have spent busy since boot (/proc/stat)."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def args_for(entry: Entry, smoke: bool, context: dict[str, str]) -> list[str]:
    return [a.format(**context) for a in (entry.smoke if smoke else entry.full)]


def should_skip(entry: Entry, only: set[str] | None, is_root: bool) -> str:
    """Why ``entry`` is not run here ('' when it is)."""
    if only is not None and entry.name not in only:
        return "not selected (--only)"
    if not entry.path.exists():
        return f"bench/{entry.script} is not there"
    if entry.root and not is_root:
        return "needs root"
    return ""


