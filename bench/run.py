"""Run the whole benchmark suite: peapod against podman and the runc + CNI floor, in one run, with plots.

    sudo .venv/bin/python bench/run.py [--smoke] [--only podstart,controlplane,...] [--no-profile]
                                       [--results-dir bench/results] [--docs-dir docs/bench]
    .venv/bin/python bench/run.py --render bench/results/DATE.json   # plots + summary again

(`make bench`, `make bench-smoke`.) Runs every script of bench/suite.py one after another, each in its
own process (a crash or hang of one does not stop the others; a hang is interrupted after its timeout),
then writes

- ``bench/results/<date>.json`` (``<date>-smoke.json`` for --smoke): the machine (cores, memory, kernel,
  CPU model), the versions of peapod, podman, runc, conmon, etcd, each script's JSON and table, the goals;
- ``docs/bench/*.png`` and ``docs/bench/README.md``: the figures and the summary (--smoke writes both
  under $TMPDIR/peapod-bench-smoke/ instead, so tiny-size numbers never replace the real ones);
- for each goal missed, a py-spy flame graph of the part that missed, measured in a separate run after
  the figures (``docs/bench/profiles/*.svg``; default on for full runs, off with --smoke).

podman is installed from Debian (apt-get) when missing and we are root (--no-install: don't).
Exit status 1 when any benchmark failed or timed out; absent optional scripts are skipped.
Nothing about speed is asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import goals
import machine
import suite

REPO = Path(__file__).resolve().parent.parent
BUSY = 0.15  # share of the cores busy before the run above which the summary says it was not quiet


def log(msg: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def ensure_podman(install: bool) -> str:
    """podman from Debian, when missing; returns what happened."""
    if shutil.which("podman"):
        return "present"
    if not install or os.geteuid() != 0:
        return "missing (not installed: " + ("--no-install" if not install else "not root") + ")"
    log("podman is missing: apt-get install podman")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-qq", "podman"]
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            return f"missing (apt-get install podman failed: {done.stderr.strip()[-300:]})"
    return "installed from Debian by this run" if shutil.which("podman") else "missing after apt-get"


def py_spy() -> str:
    return shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))


def record_profiles(goal_list: list[dict[str, Any]], docs_dir: Path, work: Path,
                    log_dir: Path | None = None) -> dict[str, dict[str, str]]:
    """One py-spy run per recipe needed by a missed goal; {goal key: {"svg": path} or {"error": why}}."""
    wanted = sorted({g["profile_recipe"] for g in goal_list if g.get("profile_recipe")})
    done: dict[str, dict[str, str]] = {}
    prof_dir = docs_dir / "profiles"
    for key in wanted:
        recipe = goals.RECIPES[key]
        path = suite.BENCH_DIR / recipe.script
        dest = prof_dir / f"{key}.svg"
        prof_dir.mkdir(parents=True, exist_ok=True)
        log(f"profiling {key}: {recipe.script} {' '.join(recipe.args)}")
        spy_dir = work / f"spy-{key}"
        if recipe.mode == "native":
            o = suite.run_script(path, [*recipe.args, "--py-spy", str(spy_dir)], work / f"prof-{key}.json",
                                 3600, (log_dir or work) / "profiles" / key)
            made = spy_dir / recipe.produces
            if made.exists():
                shutil.move(str(made), dest)
        else:
            wrap = [py_spy(), "record", "--subprocesses", "--nonblocking", "--rate", "250", "--output", str(dest),
                    "--"]
            o = suite.run_script(path, list(recipe.args), work / f"prof-{key}.json", 1800,
                                 (log_dir or work) / "profiles" / key, wrap=wrap)
        done[key] = {"svg": str(dest)} if dest.exists() else {"error": f"{o.status} {o.reason}".strip()}
        if o.table:
            done[key]["table_under_profiler"] = o.table
    return {g["key"]: done[g["profile_recipe"]] for g in goal_list if g.get("profile_recipe") in done}


def run_suite(args: argparse.Namespace) -> dict[str, Any]:
    started = dt.datetime.now().astimezone()
    desc = machine.describe()
    quiet = {"busy_before": machine.cpu_busy_fraction(2.0), "loadavg_before": [round(x, 2) for x in os.getloadavg()]}
    podman = ensure_podman(not args.no_install)
    desc["podman_setup"] = podman
    if podman.startswith("installed"):
        desc["versions"]["podman"] = machine.describe()["versions"]["podman"]
    systems = "peapod,podman,floor" if shutil.which("podman") else "peapod,floor"
    is_root = os.geteuid() == 0
    only = set(args.only) if args.only else None
    entries = suite.discover()
    benchmarks: dict[str, Any] = {e.name: {"script": e.script, "title": e.title} for e in entries}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="peapod-bench-") as tmp:
        work = Path(tmp)

        def one(entry: suite.Entry) -> None:
            argv = suite.args_for(entry, args.smoke, {"systems": systems})
            log(f"{entry.name}: bench/{entry.script} {' '.join(argv)}")
            o = suite.run_script(entry.path, argv, work / f"{entry.name}.json",
                                 entry.timeout_smoke if args.smoke else entry.timeout_full, args.log_dir)
            log(f"{entry.name}: {o.status} in {o.seconds:.0f} s" + (f" ({o.reason})" if o.reason else ""))
            benchmarks[entry.name].update(o.as_json())

        todo = []
        for entry in entries:
            why = suite.should_skip(entry, only, is_root)
            if why:
                log(f"{entry.name}: skipped ({why})")
                benchmarks[entry.name].update(status="skipped", reason=why)
            else:
                todo.append(entry)
        # Full runs: one at a time, the figures must not share the cores. Smoke runs may overlap
        # (--jobs): their numbers mean nothing and most of their time is waiting.
        jobs = max(1, args.jobs if args.jobs is not None else (3 if args.smoke else 1))
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(one, todo))
        goal_list = goals.evaluate(benchmarks)
        profile = args.profile if args.profile is not None else not args.smoke
        profiles = record_profiles(goal_list, args.docs_dir, work, args.log_dir) if profile else {}
    quiet["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    shares = {k: b["others_cpu_share"] for k, b in benchmarks.items() if b.get("others_cpu_share") is not None}
    busy = sorted(k for k, v in shares.items() if v > BUSY)
    if quiet["busy_before"] > BUSY or busy:
        quiet["note"] = ("the machine was not quiet: " + (f"{100 * quiet['busy_before']:.0f} % of its CPU was busy "
                         "before the run" if quiet["busy_before"] > BUSY else "")
                         + ("; " if quiet["busy_before"] > BUSY and busy else "")
                         + (f"other processes used over {100 * BUSY:.0f} % of the CPU during {', '.join(busy)}"
                            if busy else "") + "; those figures may be off by tens of percent")
    return {"date": started.date().isoformat(), "started": started.isoformat(timespec="seconds"),
            "mode": "smoke" if args.smoke else "full", "seconds": round(time.perf_counter() - t0, 1),
            "machine": desc, "quiet": quiet, "benchmarks": benchmarks, "goals": goal_list, "profiles": profiles}


def render(results: dict[str, Any], docs_dir: Path) -> Path:
    import summary

    docs_dir.mkdir(parents=True, exist_ok=True)
    try:
        import plots
    except ImportError as e:  # the numbers still count without the pictures
        log(f"no figures: {e} (.venv/bin/pip install matplotlib)")
        figures: dict[str, list[tuple[str, str]]] = {}
    else:
        figures = plots.render_all(results["benchmarks"], docs_dir)
    out = docs_dir / "README.md"
    out.write_text(summary.render(results, figures, docs_dir))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks every script runs (about 2 min)")
    p.add_argument("--only", type=lambda s: [x for x in s.split(",") if x], default=None,
                   help="run only these benchmarks (names as in bench/suite.py)")
    p.add_argument("--results-dir", type=Path, default=None,
                   help="default bench/results (--smoke: $TMPDIR/peapod-bench-smoke/results)")
    p.add_argument("--docs-dir", type=Path, default=None,
                   help="default docs/bench (--smoke: $TMPDIR/peapod-bench-smoke/docs)")
    p.add_argument("--log-dir", type=Path, default=None, help="each script's stdout/stderr (default: a temp dir)")
    prof = p.add_mutually_exclusive_group()
    prof.add_argument("--profile", dest="profile", action="store_true", default=None,
                      help="py-spy profiles of missed goals (default for full runs)")
    prof.add_argument("--no-profile", dest="profile", action="store_false")
    p.add_argument("--jobs", type=int, default=None,
                   help="benchmarks run at once (default 1; --smoke: 3, as their figures do not count)")
    p.add_argument("--no-install", action="store_true", help="do not apt-get install podman when missing")
    p.add_argument("--render", type=Path, default=None, help="only render plots and summary from a results file")
    args = p.parse_args(argv)
    # A smoke run's numbers mean nothing: they never replace the real ones in the tree.
    scratch = Path(tempfile.gettempdir()) / "peapod-bench-smoke"
    args.results_dir = args.results_dir or (scratch / "results" if args.smoke else REPO / "bench" / "results")
    args.docs_dir = args.docs_dir or (scratch / "docs" if args.smoke else REPO / "docs" / "bench")
    if args.render:
        results = json.loads(args.render.read_text())
        log(f"wrote {render(results, args.docs_dir)}")
        return 0
    if args.log_dir is None:
        args.log_dir = Path(tempfile.mkdtemp(prefix="peapod-bench-logs-"))
    results = run_suite(args)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    dest = args.results_dir / f"{results['date']}{'-smoke' if args.smoke else ''}.json"
    results["results_file"] = os.path.relpath(dest, REPO) if dest.is_relative_to(REPO) else str(dest)
    results["logs"] = str(args.log_dir)
    dest.write_text(json.dumps(results, indent=2))
    log(f"wrote {dest}")
    log(f"wrote {render(results, args.docs_dir)} (logs in {args.log_dir})")
    bad = {k: b["status"] for k, b in results["benchmarks"].items() if b["status"] not in ("ok", "skipped")}
    for g in results["goals"]:
        log(f"goal {'met   ' if g['met'] else 'MISSED' if g['met'] is False else 'n/a   '} {g['goal']}: "
            f"{g.get('shown') or '-'} (target {g['target']})")
    if bad:
        log(f"benchmarks that did not complete: {bad}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
