"""PNG figures of one suite run: each a ratio against the peer measured in the same run where there is
one, beside the absolute numbers. Every function returns the files it wrote (none when its data is
missing), so a partial run still renders what it has."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from goals import _get

COLORS = {"peapod": "#2a7f62", "peapod from the fresh node": "#7fbf9f", "podman": "#8a5cc2", "floor": "#9a9a9a",
          "sqlite": "#2a7f62", "etcd": "#d08c2b"}
Figure = tuple[str, str]  # (file name, caption)


def _bars(ax: Any, groups: list[str], series: dict[str, list[float | None]], unit: str, log: bool = False) -> None:
    """Grouped bars with their values written on top."""
    n = max(1, len(series))
    width = 0.8 / n
    for i, (name, vals) in enumerate(series.items()):
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        ys = [v if v is not None and not math.isnan(v) else 0 for v in vals]
        bars = ax.bar(xs, ys, width, label=name, color=COLORS.get(name))
        for b, v in zip(bars, vals, strict=True):
            if v is not None and not math.isnan(v):
                ax.annotate(f"{v:.3g}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center",
                            va="bottom", fontsize=7, xytext=(0, 1), textcoords="offset points")
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    ax.set_ylabel(unit)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def _goal_line(ax: Any, y: float, label: str) -> None:
    ax.axhline(y, color="#c0392b", linestyle="--", linewidth=1)
    ax.annotate(label, (1.0, y), xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=7,
                color="#c0392b")


def _save(fig: Any, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def pod_start(b: dict[str, Any], out: Path) -> list[Figure]:
    lat = _get(b, "podstart", "result", "latency") or {}
    if not lat:
        return []
    systems = [s for s in ("peapod", "podman", "floor") if any(_get(lat, c, s) for c in lat)]
    groups, series = [], {s: [] for s in systems}
    for c in ("1c", "3c"):
        for p in ("p50", "p90", "p99"):
            groups.append(f"{c[0]}c {p}")
            for s in systems:
                series[s].append(_get(lat, c, s, "start", p))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    _bars(a1, groups, series, "ms")
    a1.set_title("pod start: create -> Running (absolute)", fontsize=10)
    ratio_groups, ratios, over = [], [], []
    for c in ("1c", "3c"):
        for p in ("p50", "p90", "p99"):
            pp, pm, fl = (_get(lat, c, s, "start", p) for s in ("peapod", "podman", "floor"))
            ratio_groups.append(f"{c[0]}c {p}")
            ratios.append(pp / pm if pp is not None and pm else None)
            over.append(pp - fl if pp is not None and fl is not None else None)
    if any(r is not None for r in ratios):
        _bars(a2, ratio_groups, {"peapod": ratios}, "peapod / podman")
        _goal_line(a2, 0.5, "goal p50 <= 0.5 x podman")
        a2.set_title("ratio to podman kube play (same run)", fontsize=10)
    else:
        _bars(a2, ratio_groups, {"peapod": over}, "ms over the floor")
        _goal_line(a2, 40, "goal p50 <= floor + 40 ms")
        a2.set_title("peapod minus the netns + CNI + runc floor", fontsize=10)
    figs = [(_save(fig, out, "pod-start.png"),
             "Pod start latency (create to Running seen through the API) against `podman kube play` and the "
             "bare netns + CNI + `runc run` floor")]
    if any(o is not None for o in over):
        fig, ax = plt.subplots(figsize=(7, 3.6))
        parts = {}
        for c in ("1c", "3c"):
            for k in ("netns", "cni", "runc"):
                parts.setdefault(k, []).append(_get(lat, c, "floor", k, "p50"))
            parts.setdefault("peapod above the floor", []).append(
                (_get(lat, c, "peapod", "start", "p50") or 0) - (_get(lat, c, "floor", "start", "p50") or 0))
        bottom = [0.0, 0.0]
        colors = {"netns": "#bbbbbb", "cni": "#8fb3d9", "runc": "#6c8ebf", "peapod above the floor": "#2a7f62"}
        for k, vals in parts.items():
            ys = [v or 0 for v in vals]
            ax.bar(["1 container", "3 containers"], ys, bottom=bottom, label=k, color=colors[k])
            bottom = [x + y for x, y in zip(bottom, ys, strict=True)]
        for i, total in enumerate(bottom):
            ax.annotate(f"{total:.0f} ms", (i, total), ha="center", va="bottom", fontsize=8)
        ax.set_ylabel("ms (p50)")
        ax.set_title("where a peapod pod start goes: the floor's parts and peapod's own cost", fontsize=10)
        ax.legend(fontsize=8)
        figs.append((_save(fig, out, "pod-start-floor.png"),
                     "peapod's pod start p50 split into the floor's parts (ip netns add, CNI ADD, runc run) "
                     "and what peapod adds above them"))
    return figs


def burst(b: dict[str, Any], out: Path) -> list[Figure]:
    res = _get(b, "podstart", "result", "burst") or {}
    sizes = sorted({int(k) for side in res.values() for k in side})
    if not sizes:
        return []
    pp = [_get(res, "peapod", str(n), "all_running_s") for n in sizes]
    pm = [_get(res, "podman", str(n), "all_running_s") for n in sizes]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    _bars(a1, [str(n) for n in sizes], {"peapod": pp, "podman": pm}, "s to all Running")
    if 110 in sizes:
        _goal_line(a1, 20, "goal: 110 pods <= 20 s")
    a1.set_title("burst: N pods at once (podman: N parallel kube plays)", fontsize=10)
    ratios = [x / y if x is not None and y else None for x, y in zip(pp, pm, strict=True)]
    pd = [_get(res, "peapod", str(n), "all_deleted_s") for n in sizes]
    md = [_get(res, "podman", str(n), "all_deleted_s") for n in sizes]
    dratio = [x / y if x is not None and y else None for x, y in zip(pd, md, strict=True)]
    _bars(a2, [str(n) for n in sizes], {"start": ratios, "delete": dratio}, "peapod / podman", log=True)
    a2.set_title("ratio to podman (same run; lower is better; log scale)", fontsize=10)
    return [(_save(fig, out, "burst.png"), "Bursts of pods created at once, to all Running, and their deletion")]


def delete(b: dict[str, Any], out: Path) -> list[Figure]:
    lat = _get(b, "podstart", "result", "latency") or {}
    if not lat:
        return []
    groups, series = [], {"peapod": [], "peapod teardown": [], "podman": [], "floor": []}
    for c in ("1c", "3c"):
        groups.append(f"{c[0]} container(s)")
        series["peapod"].append(_get(lat, c, "peapod", "delete", "p50"))
        series["peapod teardown"].append(_get(lat, c, "peapod", "teardown", "p50"))
        series["podman"].append(_get(lat, c, "podman", "delete", "p50"))
        series["floor"].append(_get(lat, c, "floor", "delete", "p50"))
    series = {k: v for k, v in series.items() if any(x is not None for x in v)}
    fig, (ax, a2) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [3, 2]})
    _bars(ax, groups, series, "ms (p50, log scale)", log=True)
    ax.set_title("delete (grace 0) -> gone from the API; teardown: conmons exited and\nsandbox removed; "
                 "podman: kube down; floor: runc delete + CNI DEL + netns del", fontsize=9)
    pm = series.get("podman") or [None, None]
    ratios = {k: [x / y if x is not None and y else None for x, y in zip(series[k], pm, strict=True)]
              for k in ("peapod", "peapod teardown") if k in series}
    if any(v is not None for vals in ratios.values() for v in vals):
        _bars(a2, groups, ratios, "peapod / podman kube down", log=True)
        a2.set_title("ratio to podman (same run; log scale)", fontsize=9)
    else:
        a2.axis("off")
    return [(_save(fig, out, "delete.png"), "Pod deletion latency, grace period 0")]


def density(b: dict[str, Any], out: Path) -> list[Figure]:
    d = _get(b, "podstart", "result", "density") or {}
    sizes = sorted({int(k) for side in d.values() for k in side})
    if not sizes:
        return []
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    base = [_get(d, "peapod", str(n), "baseline", "pss_mb") for n in sizes]
    xs = [0, *sizes]
    start = _get(d, "peapod", str(sizes[0]), "at_start", "pss_mb")  # before the node's first pod
    ys = [start if start is not None else (base[0] if base and base[0] is not None else None),
          *[_get(d, "peapod", str(n), "total", "pss_mb") for n in sizes]]
    own = [0.0, *[_get(d, "peapod", str(n), "containers_own", "pss_mb") for n in sizes]]
    a1.plot(xs, ys, marker="o", color=COLORS["peapod"], label="peapod tree (PSS)")
    a1.plot(xs, own, marker="s", color="#aaaaaa", label="containers' own processes (PSS)")
    pm = [_get(d, "podman", str(n), "total", "pss_mb") for n in sizes]
    if any(v is not None for v in pm):
        a1.plot(sizes, pm, marker="^", color=COLORS["podman"], label="podman conmons + infra + apps (PSS)")
    for x, y in zip(xs, ys, strict=True):
        if y is not None:
            a1.annotate(f"{y:.0f}", (x, y), fontsize=7, xytext=(0, 3), textcoords="offset points")
    if any(v is not None for v in base):  # the tree at 0 pods just before each burst: what earlier pods left
        a1.scatter(sizes, [v if v is not None else math.nan for v in base], marker="x", color=COLORS["peapod"],
                   label="peapod tree at 0 pods just before that burst")
    a1.set_xlabel("idle pods")
    a1.set_ylabel("MB")
    a1.set_title("memory of the node's process tree", fontsize=10)
    a1.legend(fontsize=7)
    a1.grid(alpha=0.3)
    groups, series = [], {"peapod": [], "podman": []}
    vs_start = any(_get(d, "peapod", str(n), "per_pod_overhead_vs_start_pss_mb") is not None for n in sizes)
    if vs_start:
        series["peapod from the fresh node"] = []
    for n in sizes:
        for k in ("pss_mb", "rss_mb"):
            groups.append(f"{n} pods {k[:3].upper()}")
            series["peapod"].append(_get(d, "peapod", str(n), f"per_pod_overhead_{k}"))
            series["podman"].append(_get(d, "podman", str(n), f"per_pod_overhead_{k}"))
            if vs_start:
                series["peapod from the fresh node"].append(
                    _get(d, "peapod", str(n), f"per_pod_overhead_vs_start_{k}"))
    _bars(a2, groups, series, "MB per pod")
    _goal_line(a2, 2, "goal <= 2 MB")
    a2.set_title("per-pod overhead beyond the containers' own processes", fontsize=10)
    return [(_save(fig, out, "density.png"),
             "Memory with idle pods: the whole tree, and the per-pod overhead against podman's (conmon, infra)")]


def controlplane(b: dict[str, Any], out: Path) -> list[Figure]:
    stores = {k: v for k, v in (_get(b, "controlplane", "result", "stores") or {}).items()
              if isinstance(v, dict) and "skipped" not in v}
    if not stores:
        return []
    panels: list[tuple[str, str, Callable[[dict[str, Any]], float | None], float | None]] = [
        ("idle RSS", "MB", lambda f: _get(f, "idle", "rss_mb"), 100),
        ("idle CPU", "%", lambda f: _get(f, "idle", "cpu_percent"), 1),
        ("cold start to /readyz", "s", lambda f: _get(f, "cold_start", "cold_start_median_s"), 1),
        ("mutating p99 (mixed load)", "ms", lambda f: _get(f, "load", "mutating_p99_ms"), 100),
        ("GET p99 (mixed load)", "ms", lambda f: _get(f, "load", "get_p99_ms"), 20),
        ("LIST all pods (median)", "ms", lambda f: _get(f, "list", "list_median_ms"), 300),
        ("watch lag p99", "ms", lambda f: _get(f, "watch", "lag_p99_ms"), 100),
        ("etcd's own idle RSS", "MB", lambda f: _get(f, "idle", "etcd_rss_mb"), None),
    ]
    fig, axes = plt.subplots(2, 4, figsize=(13, 6))
    for ax, (title, unit, get, limit) in zip(axes.flat, panels, strict=True):
        vals = [get(f) for f in stores.values()]
        bars = ax.bar(list(stores), [v or 0 for v in vals], color=[COLORS.get(s, "#777") for s in stores])
        for bar, v in zip(bars, vals, strict=True):
            if v is not None:
                ax.annotate(f"{v:.3g}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                            va="bottom", fontsize=8)
        if limit is not None:
            _goal_line(ax, limit, f"goal <= {limit:g}")
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(unit)
        ax.grid(axis="y", alpha=0.3)
    return [(_save(fig, out, "controlplane.png"), "Control plane on SQLite and on etcd (one member, loopback)")]


def scheduler(b: dict[str, Any], out: Path) -> list[Figure]:
    core = _get(b, "scheduler", "result") or []
    api = _get(b, "deployment", "result", "scheduler") or {}
    if not core and not api:
        return []
    names = [r["scenario"] for r in core]
    vals = [r["pods_per_second"] for r in core]
    if api.get("api_pods_per_s") is not None:
        names += [f"plain, through the API\n({api.get('nodes')} nodes)"]
        vals += [api["api_pods_per_s"]]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    bars = ax.bar(names, vals, color=COLORS["peapod"])
    for bar, v in zip(bars, vals, strict=True):
        ax.annotate(f"{v:.0f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                    fontsize=8)
    n = core[0]["nodes"] if core else api.get("nodes")
    ax.set_title(f"scheduling throughput on {n} simulated nodes (pods/s)", fontsize=10)
    ax.set_ylabel("pods/s")
    ax.grid(axis="y", alpha=0.3)
    return [(_save(fig, out, "scheduler.png"), "Scheduler throughput: pure core per scenario, and end to end "
             "through the API")]


def deployment(b: dict[str, Any], out: Path) -> list[Figure]:
    d = _get(b, "deployment", "result", "deployment") or {}
    keys = [("create_to_all_bound_s", "all bound"), ("create_to_all_running_s", "all Running"),
            ("create_to_available_s", "available"), ("rolling_update_s", "rolling update"),
            ("delete_to_no_pods_s", "delete")]
    vals = [d.get(k) for k, _ in keys]
    if not any(v is not None for v in vals):
        return []
    fig, ax = plt.subplots(figsize=(8, 3.8))
    _bars(ax, [label for _, label in keys], {"peapod": vals}, "s")
    ax.set_title(f"Deployment of {d.get('replicas')} replicas on one node", fontsize=10)
    return [(_save(fig, out, "deployment.png"), "A Deployment created to available, rolled to a new image, deleted")]


def generic(b: dict[str, Any], out: Path) -> list[Figure]:
    """Scripts following the convention's ``summary`` rows: absolute values and ratios to peers."""
    figs = []
    for name, bench in b.items():
        rows = _get(bench, "result", "summary") if isinstance(_get(bench, "result"), dict) else None
        rows = [r for r in rows or [] if isinstance(r, dict) and isinstance(r.get("value"), int | float)]
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(9, 0.5 + 0.45 * len(rows)))
        labels = [f"{r['measure']} ({r.get('unit', '')})" for r in rows]
        vals = [r["value"] for r in rows]
        ax.barh(labels, vals, color=COLORS["peapod"], label="peapod")
        for i, r in enumerate(rows):
            text = f"{r['value']:.3g}"
            for peer, pv in (r.get("peers") or {}).items():
                if pv:
                    text += f"  ({r['value'] / pv:.2f} x {peer})"
            ax.annotate(text, (r["value"], i), va="center", fontsize=7, xytext=(3, 0), textcoords="offset points")
        ax.invert_yaxis()
        ax.set_title(bench.get("title", name), fontsize=10)
        figs.append((_save(fig, out, f"{name}.png"), bench.get("title", name)))
    return figs


KNOWN_PLOTS = {"podstart": (pod_start, burst, delete, density), "controlplane": (controlplane,),
               "scheduler": (scheduler,), "deployment": (deployment,)}


def render_all(benchmarks: dict[str, Any], out: Path) -> dict[str, list[Figure]]:
    """Figures per benchmark name; a figure that fails to render is reported, not fatal."""
    out.mkdir(parents=True, exist_ok=True)
    figs: dict[str, list[Figure]] = {}
    for name, fns in KNOWN_PLOTS.items():
        for fn in fns:
            try:
                figs.setdefault(name, []).extend(fn(benchmarks, out))
            except Exception as e:
                figs.setdefault(name, []).append(("", f"figure {fn.__name__} failed: {e!r}"))
    others = {k: v for k, v in benchmarks.items() if k not in KNOWN_PLOTS}
    for fname, caption in generic(others, out):
        figs.setdefault(fname.removesuffix(".png"), []).append((fname, caption))
    return figs
