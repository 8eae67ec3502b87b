"""`make bench-smoke` in the test suite: every benchmark script runs with tiny sizes and the runner
writes its results, figures and summary, so the scripts cannot rot. Nothing about speed is asserted.

The runner's own failure handling (a crashing, silent or hanging script) is checked on small fake
scripts first, so that a green smoke run means the scripts ran, not that failures went unnoticed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"


def _load(name: str) -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # the bench modules import one another by their plain names
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _script(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "fake_bench.py"
    p.write_text("import json, sys, time\nargs = sys.argv[1:]\nout = args[args.index('--json') + 1]\n" + body)
    return p


def test_runner_reports_a_script_that_ran(tmp_path: Path) -> None:
    suite = _load("suite")
    path = _script(tmp_path, "print('| a | b |')\njson.dump({'summary': [{'measure': 'x', 'value': 1}]}, "
                             "open(out, 'w'))\n")
    o = suite.run_script(path, ["--smoke"], tmp_path / "r.json", 30, tmp_path / "logs", echo=False)
    assert (o.status, o.result, o.table) == ("ok", {"summary": [{"measure": "x", "value": 1}]}, "| a | b |")


@pytest.mark.parametrize("body, reason", [
    ("raise SystemExit('boom')\n", "exit code 1"),
    ("json.dump({}, open(out, 'w'))\nraise RuntimeError('after writing')\n", "exit code 1"),
    ("pass\n", "no JSON written"),
])
def test_runner_fails_a_crashed_or_silent_script(tmp_path: Path, body: str, reason: str) -> None:
    suite = _load("suite")
    o = suite.run_script(_script(tmp_path, body), [], tmp_path / "r.json", 30, tmp_path / "logs", echo=False)
    assert (o.status, o.reason) == ("failed", reason)


def test_runner_interrupts_a_hanging_script(tmp_path: Path) -> None:
    suite = _load("suite")
    o = suite.run_script(_script(tmp_path, "time.sleep(600)\n"), [], tmp_path / "r.json", 1, tmp_path / "logs",
                         echo=False)
    assert o.status == "timeout" and o.returncode is not None


def test_goals_met_and_missed_from_results() -> None:
    goals = _load("goals")
    lat = {c: {"peapod": {"start": {"p50": p}}, "podman": {"start": {"p50": 300.0}},
               "floor": {"start": {"p50": 50.0}}} for c, p in (("1c", 100.0), ("3c", 200.0))}
    benchmarks = {"podstart": {"result": {"latency": lat, "burst": {"peapod": {"110": {"all_running_s": 25.0}}}}},
                  "controlplane": {"result": {"system": "up", "stores": {"sqlite": {"idle": {"rss_mb": 90.0,
                                                                                           "cpu_percent": 0.4}}}}}}
    got = {g["key"]: g["met"] for g in goals.evaluate(benchmarks)}
    assert got["start_ratio_1c"] is True and got["start_ratio_3c"] is False  # 0.33 and 0.67 x podman
    assert got["start_floor_1c"] is False  # +50 ms over the floor
    assert got["burst"] is False and got["idle_rss"] is True and got["idle_cpu"] is True
    assert got["cold_start"] is None  # not measured is not "met"
    missed = {g["key"]: g["profile_recipe"] for g in goals.evaluate(benchmarks) if g["met"] is False}
    assert missed["burst"] == "burst" and set(missed.values()) <= set(goals.RECIPES)


@pytest.mark.e2e
@pytest.mark.timeout(420)
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (runc, CNI, real pods)")
def test_bench_smoke_runs_every_benchmark(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    res, docs = tmp_path / "results", tmp_path / "docs"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--smoke", "--no-install", "--results-dir", str(res),
         "--docs-dir", str(docs), "--log-dir", str(tmp_path / "logs")],
        cwd=REPO, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-6000:]
    [path] = list(res.glob("*-smoke.json"))
    results = json.loads(path.read_text())
    statuses = {k: b["status"] for k, b in results["benchmarks"].items()}
    for name in ("podstart", "controlplane", "scheduler", "deployment"):
        assert statuses[name] == "ok", (name, results["benchmarks"][name])
    for name, b in results["benchmarks"].items():
        assert b["status"] == "ok" or b.get("reason", "").endswith("is not there"), (name, b)
    m = results["machine"]
    assert m["cores"] >= 1 and m["memory_gib"] > 0 and m["kernel"] and m["versions"]["runc"]
    assert results["goals"] and all(g["value"] is not None for g in results["goals"]
                                    if g["source"] in ("podstart", "controlplane"))
    for png in ("pod-start.png", "burst.png", "delete.png", "density.png", "controlplane.png", "scheduler.png",
                "deployment.png"):
        assert (docs / png).stat().st_size > 1000, png
    summary = (docs / "README.md").read_text()
    assert "## Goals" in summary and "![" in summary and "smoke run" in summary
