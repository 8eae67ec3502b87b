"""Issue 8's goals (and the README's control-plane goals), read off the suite's results; met or missed.

Each goal names the profile that explains a miss: a :class:`Recipe` re-runs the part of a benchmark
that missed under py-spy (``native``: the script records peapod itself with ``--py-spy DIR``;
``wrap``: ``py-spy record --subprocesses`` around the whole script), so the figures themselves are
measured without a profiler attached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Recipe:
    script: str
    args: tuple[str, ...]
    mode: str  # native | wrap
    produces: str = ""  # native: the file the script writes into its --py-spy DIR


RECIPES: dict[str, Recipe] = {
    "pod_start": Recipe("podstart.py", ("--systems", "peapod", "--pods", "10", "--bursts", "", "--density", "",
                                        "--py-spy-format", "flamegraph"), "native", "latency.svg"),
    "burst": Recipe("podstart.py", ("--systems", "peapod", "--pods", "0", "--bursts", "110", "--density", "",
                                    "--py-spy-format", "flamegraph"), "native", "burst110.svg"),
    "idle": Recipe("controlplane.py", ("--stores", "sqlite", "--only", "idle"), "native",
                   "controlplane-sqlite-idle.svg"),
    "idle_etcd": Recipe("controlplane.py", ("--stores", "etcd", "--only", "idle"), "native",
                        "controlplane-etcd-idle.svg"),
    "cold": Recipe("controlplane.py", ("--stores", "sqlite", "--only", "cold", "--cold-runs", "3"), "wrap"),
    "cold_etcd": Recipe("controlplane.py", ("--stores", "etcd", "--only", "cold", "--cold-runs", "3"), "wrap"),
    "load": Recipe("controlplane.py", ("--stores", "sqlite", "--only", "load"), "native",
                   "controlplane-sqlite-load.svg"),
    "load_etcd": Recipe("controlplane.py", ("--stores", "etcd", "--only", "load"), "native",
                        "controlplane-etcd-load.svg"),
    "list": Recipe("controlplane.py", ("--stores", "sqlite", "--only", "list"), "native",
                   "controlplane-sqlite-list.svg"),
    "watch": Recipe("controlplane.py", ("--stores", "sqlite", "--only", "watch"), "native",
                    "controlplane-sqlite-watch.svg"),
}


def _get(d: Any, *path: str | int) -> Any:
    for k in path:
        if isinstance(d, dict):
            d = d.get(k if isinstance(k, str) else str(k))
        elif isinstance(d, list) and isinstance(k, int) and -len(d) <= k < len(d):
            d = d[k]
        else:
            return None
    return d


def goal(key: str, label: str, value: float | None, limit: float, unit: str, *, source: str,
         profile: str = "", note: str = "", shown: str = "") -> dict[str, Any]:
    met = None if value is None else value <= limit
    return {"key": key, "goal": label, "value": value, "shown": shown, "limit": limit, "unit": unit,
            "target": f"<= {limit:g} {unit}".strip(), "met": met, "source": source,
            "profile_recipe": profile if met is False else "", "note": note}


def evaluate(benchmarks: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every goal with its number (None when that benchmark did not run or lacks the figure)."""
    out: list[dict[str, Any]] = []
    ps = _get(benchmarks, "podstart", "result") or {}
    for c in ("1c", "3c"):
        n = c[0]
        pp = _get(ps, "latency", c, "peapod", "start", "p50")
        pm = _get(ps, "latency", c, "podman", "start", "p50")
        fl = _get(ps, "latency", c, "floor", "start", "p50")
        ratio = pp / pm if pp is not None and pm else None
        out.append(goal(f"start_ratio_{c}", f"pod start p50, {n} container(s): peapod / podman kube play", ratio,
                        0.5, "x", source="podstart", profile="pod_start",
                        shown="" if ratio is None else f"{ratio:.2f} ({pp:.0f} / {pm:.0f} ms)"))
        over = pp - fl if pp is not None and fl is not None else None
        out.append(goal(f"start_floor_{c}", f"pod start p50, {n} container(s): peapod - (netns + CNI + runc) floor",
                        over, 40, "ms", source="podstart", profile="pod_start",
                        shown="" if over is None else f"+{over:.0f} ms ({pp:.0f} vs {fl:.0f} ms)"))
    bursts = _get(ps, "burst", "peapod") or {}
    if bursts:
        n = max(int(k) for k in bursts)
        v = _get(bursts, str(n), "all_running_s")
        out.append(goal("burst", f"burst of {n} pods to all Running (goal is for 110)", v, 20, "s",
                        source="podstart", profile="burst",
                        shown="" if v is None else f"{v:.1f} s"))
    dens = _get(ps, "density", "peapod") or {}
    if dens:
        n = max(int(k) for k in dens)
        pss = _get(dens, str(n), "per_pod_overhead_pss_mb")
        rss = _get(dens, str(n), "per_pod_overhead_rss_mb")
        out.append(goal("per_pod_overhead", f"per-pod overhead at {n} pods (PSS; RSS beside it)", pss, 2, "MB",
                        source="podstart", note="memory: py-spy samples CPU, so the summary shows the "
                        "per-process breakdown instead of a profile",
                        shown="" if pss is None else f"{pss:.2f} MB PSS ({rss:.2f} MB RSS)"))
        pss0 = _get(dens, str(n), "per_pod_overhead_vs_start_pss_mb")
        if pss0 is not None:
            rss0 = _get(dens, str(n), "per_pod_overhead_vs_start_rss_mb")
            out.append(goal("per_pod_overhead_vs_start", f"per-pod overhead at {n} pods counted from the node "
                            "before its first pod (includes memory kept from earlier, deleted pods)", pss0, 2, "MB",
                            source="podstart", note="memory: see the per-process breakdown",
                            shown=f"{pss0:.2f} MB PSS ({rss0:.2f} MB RSS)"))
    for store in ("sqlite", "etcd"):
        cp = _get(benchmarks, "controlplane", "result", "stores", store) or {}
        if not cp or "skipped" in cp:
            continue
        sfx = "" if store == "sqlite" else "_etcd"
        system = _get(benchmarks, "controlplane", "result", "system") or "up"
        rss = _get(cp, "idle", "rss_mb")
        out.append(goal(f"idle_rss{sfx}", f"idle RSS, `peapod {system}` on {store}", rss, 100, "MB",
                        source="controlplane",
                        note="memory: no py-spy profile" + ("; etcd's own RSS is separate" if sfx else ""),
                        shown="" if rss is None else f"{rss:.1f} MB"
                        + (f" (+ etcd {cp['idle']['etcd_rss_mb']:.0f} MB)" if sfx and
                           _get(cp, "idle", "etcd_rss_mb") else "")))
        cpu = _get(cp, "idle", "cpu_percent")
        out.append(goal(f"idle_cpu{sfx}", f"idle CPU, `peapod {system}` on {store}", cpu, 1, "%",
                        source="controlplane", profile=f"idle{sfx}",
                        shown="" if cpu is None else f"{cpu:.2f} %"))
        cold = _get(cp, "cold_start", "cold_start_median_s")
        out.append(goal(f"cold_start{sfx}", f"cold start to /readyz on {store} (median)", cold, 1, "s",
                        source="controlplane", profile=f"cold{sfx}",
                        shown="" if cold is None else f"{cold:.2f} s"))
        for key, label, path, limit, prof in (
                ("mutating_p99", "mutating p99 under mixed load", ("load", "mutating_p99_ms"), 100, "load"),
                ("get_p99", "GET p99 under mixed load", ("load", "get_p99_ms"), 20, "load"),
                ("list", "LIST of all pods (median)", ("list", "list_median_ms"), 300, "list"),
                ("watch_lag", "watch fan-out lag p99", ("watch", "lag_p99_ms"), 100, "watch")):
            v = _get(cp, *path)
            recipe = f"{prof}{sfx}" if f"{prof}{sfx}" in RECIPES else prof
            g = goal(f"{key}{sfx}", f"{label} on {store} (README goal)", v, limit, "ms", source="controlplane",
                     profile=recipe if store == "sqlite" or recipe.endswith(sfx) else "",
                     shown="" if v is None else f"{v:.1f} ms")
            out.append(g)
    for b in benchmarks.values():  # rows with a goal from scripts following the convention
        for row in (_get(b, "result", "summary") or []) if isinstance(_get(b, "result"), dict) else []:
            if isinstance(row, dict) and "met" in row:
                out.append({"key": f"custom_{row.get('measure')}", "goal": row.get("measure"),
                            "value": row.get("value"), "shown": f"{row.get('value')} {row.get('unit', '')}",
                            "target": row.get("goal", ""), "met": row.get("met"), "source": b.get("name", ""),
                            "profile_recipe": "", "note": ""})
    return out
