"""Pod start, burst, deletion and density: peapod vs podman vs a bare runc + CNI floor, in one run.

Usage (root): .venv/bin/python bench/podstart.py [--smoke] [--pods N] [--bursts 10,50,110]
              [--density 50,110] [--podman-burst multidoc|parallel] [--systems peapod,podman,floor]
              [--json OUT] [--py-spy DIR]

Prints the machine, a markdown table and (with --json) every figure. Nothing is asserted: numbers only.

What is measured (busybox ``sleep 3600`` containers, image cached, one loopback registry):

1. Pod start, 1 and 3 containers, ``--pods`` runs per series (30; ``--smoke``: 3), one warm-up run
   each first, the three systems interleaved run by run so load from elsewhere hits them alike:

   - peapod (``peapod up``): from the POST of the pod (aiohttp, admin token) to the pod seen with
     phase Running and every container running, on a watch opened before the POST (the event's
     arrival time; no polling).
   - podman: wall time of ``podman kube play FILE`` (same spec, image pulled beforehand from the
     same registry with ``--tls-verify=false``); ``podman kube down FILE`` between runs.
   - floor: ``ip netns add`` + CNI ADD (``loopback`` for lo, then ``bridge`` + ``host-local`` through
     :class:`peapod.node.network.cni.CniNetwork`, no portmap) + ``runc run -d`` per container, one
     after another as kubelet starts them, of a ``runc spec`` bundle (no seccomp filter, runc's
     default cgroup) over a shared read-only busybox rootfs
     (:func:`peapod.testing.rootfs.build_busybox_rootfs`); no conmon, no overlay mount.

   Percentiles are nearest-rank over the runs (with 30 runs p99 is the slowest run).
2. Burst: N pods created at once (peapod: N concurrent POSTs on up to 64 connections; time until the
   last is seen Running on the watch). podman: one ``podman kube play`` of an N-document file
   (``--podman-burst multidoc``, default) or N concurrent ``podman kube play`` processes of one-pod
   files (``parallel``: at N=110 on 2 cores single plays took over 180 s, lock contention); time
   until all have returned (kube play returns once the containers are started).
3. Deletion: peapod DELETE with ``gracePeriodSeconds=0`` until the DELETED watch event (the object
   is gone from the API), plus the time until the pod's conmons have exited (pidfd) and its sandbox
   dir is gone (polled every 10 ms) ("teardown"); podman: ``podman kube down FILE``; floor:
   ``runc kill``/``runc delete`` + CNI DEL + ``ip netns del``.
4. Density, after the bursts of the sizes in ``--density`` (and ``--settle`` s, 5, over which peapod's
   CPU time, its own plus its reaped children's, gives an idle CPU %, as before the burst): RSS and PSS
   (``/proc/PID/smaps_rollup``) summed over peapod's process tree: the peapod process, its
   descendants, and every process whose command line names its data dir (conmons) with their
   descendants. The containers' own processes are the conmons' children and their descendants.
   Per-pod overhead = (total - total at 0 pods just before the burst - containers' own) / N.
   podman: conmon of every container (infra included) plus the infra container's process
   (catatonit), i.e. the tree under the conmons minus the app containers' processes, over N.

Machine setup done here, idempotently (and said in the output):
``/etc/containers/containers.conf`` must have ``[containers] default_ulimits`` with ``nofile`` and
``nproc`` at most the hard limits this process has (here RLIMIT_NOFILE is 20000 and CAP_SYS_RESOURCE
is absent, so podman's defaults of 1048576 open files and 4194304 processes make runc fail with
EPERM; podman itself caps nproc at kernel.pid_max), and ``[engine] runtime = "runc"`` (crun refuses
this hybrid cgroup layout). The file is written only when absent or lacking those keys; existing
keys and comments are kept. ``CONTAINERS_CONF`` is removed from podman's environment so that the
file is the one read. podman and runc come from Debian.

Traffic goes only to loopback (API server, registry) and nothing is sent to pod addresses. Cleanup,
by the names and PIDs this run created: peapod is stopped by its PID, then what ``peapod down`` does
on its data dir except removing the shared ``peapod0`` bridge (whatever it still finds is listed as a
leftover); podman pods ``ppbench-*`` made here, then the busybox image it pulled, the
``podman-pause`` image and kube play's network if they were not there before, and any ``podmanN``
bridge left after the last container; floor containers (their own ``runc --root``), network
namespaces ``ppbench-<pid>-*``, the ``ppbench0`` bridge, the registry and temp dirs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from peapod.node.agent import cleanup_data_dir
from peapod.node.network.cni import CniConfig, CniNetwork
from peapod.testing.cluster import PeapodCluster
from peapod.testing.images import busybox_image, push_image
from peapod.testing.registry import LoopbackRegistry
from peapod.testing.rootfs import build_busybox_rootfs

CONTAINERS_CONF = Path("/etc/containers/containers.conf")
NAMESPACE = "default"
LABEL = "ppbench"
FLOOR_BRIDGE = "ppbench0"
FLOOR_SUBNET = "10.79.0.0/24"  # not peapod's 10.77/16 nor podman's 10.88/16
TIMEOUT = 180.0
BURST_TIMEOUT = 900.0  # 110 concurrent `podman kube play` on 2 cores take minutes


# ---- small helpers --------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def summary_ms(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {"n": len(ms), "p50": pct(ms, 50), "p90": pct(ms, 90), "p99": pct(ms, 99),
            "min": min(ms) if ms else float("nan"), "max": max(ms) if ms else float("nan")}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


async def run(*args: str, env: dict[str, str] | None = None, check: bool = True,
              timeout: float = TIMEOUT, capture: bool = True) -> tuple[int, str, str, float]:
    """Run a command; returns (returncode, stdout, stderr, wall seconds). ``capture=False`` gives it
    /dev/null instead of pipes (``runc run -d`` hands its stdio to the container)."""
    pipe = asyncio.subprocess.PIPE if capture else asyncio.subprocess.DEVNULL
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=pipe, stderr=pipe, env=env)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    elapsed = time.perf_counter() - t0
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {err.decode(errors='replace')}")
    out, err = out or b"", err or b""
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"), elapsed


def first_line(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.splitlines()[0].strip()
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def machine() -> dict[str, Any]:
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {"cores": os.cpu_count(), "cpu": model, "memory_gib": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
            "podman": first_line("podman", "--version"), "runc": first_line("runc", "--version"),
            "conmon": first_line("conmon", "--version")}


def podman_bridges() -> set[str]:
    """netavark's bridges (podman0 for the default network, podman1... for others)."""
    return {n for n in os.listdir("/sys/class/net") if re.fullmatch(r"podman\d+", n)}


def pod_manifest(name: str, image: str, containers: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": LABEL}},
            "spec": {"terminationGracePeriodSeconds": 0,
                     "containers": [{"name": f"c{i}", "image": image, "imagePullPolicy": "IfNotPresent",
                                     "command": ["sleep", "3600"]} for i in range(containers)]}}


def all_running(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    statuses = status.get("containerStatuses") or []
    return (len(statuses) == len(pod["spec"]["containers"])
            and all("running" in (c.get("state") or {}) for c in statuses))


# ---- containers.conf --------------------------------------------------------------------------------


def wanted_ulimits() -> dict[str, str]:
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    if nproc == resource.RLIM_INFINITY or nproc > pid_max:
        nproc = pid_max  # podman lowers its own (and so conmon's) nproc to pid_max
    if nofile == resource.RLIM_INFINITY:
        nofile = 1048576
    return {"nofile": f"nofile={nofile}:{nofile}", "nproc": f"nproc={nproc}:{nproc}"}


def _set_key(text: str, section: str, key: str, value: str) -> str:
    """Set ``key = value`` (one line) in ``[section]`` of a TOML text, keeping everything else."""
    header = re.search(rf"^\[{re.escape(section)}\][ \t]*(#.*)?$", text, re.M)
    if header is None:
        sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        return f"{text}{sep}[{section}]\n{key} = {value}\n"
    start = header.end()
    nxt = re.search(r"^\[", text[start:], re.M)
    end = start + nxt.start() if nxt else len(text)
    body = text[start:end]
    line = re.search(rf"^[ \t]*{re.escape(key)}[ \t]*=.*$", body, re.M)
    if line is not None:
        body = body[:line.start()] + f"{key} = {value}" + body[line.end():]
    else:
        body = f"\n{key} = {value}" + body
    return text[:start] + body + text[end:]


def ensure_containers_conf(path: Path = CONTAINERS_CONF) -> str:
    """Make podman usable here (see the module docstring); returns what was done."""
    text = path.read_text() if path.exists() else ""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SystemExit(f"{path} is not valid TOML ({e}); fix it by hand") from None
    wanted = wanted_ulimits()
    have = list((data.get("containers") or {}).get("default_ulimits") or [])
    kinds = {u.split("=", 1)[0].strip() for u in have}
    missing = [v for k, v in wanted.items() if k not in kinds]
    changes = []
    if missing:
        text = _set_key(text, "containers", "default_ulimits", json.dumps(have + missing))
        changes.append(f"[containers] default_ulimits += {missing}")
    if (data.get("engine") or {}).get("runtime") != "runc":
        text = _set_key(text, "engine", "runtime", '"runc"')
        changes.append('[engine] runtime = "runc"')
    if not changes:
        return f"{path}: already has default_ulimits (nofile, nproc) and runtime=runc; unchanged"
    check = tomllib.loads(text)
    assert check["engine"]["runtime"] == "runc" and len(check["containers"]["default_ulimits"]) >= 2
    existed = path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return f"{path}: {'updated' if existed else 'created'} ({'; '.join(changes)})"


# ---- processes and memory ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    comm: str
    cmdline: bytes


def proc_table() -> dict[int, Proc]:
    out: dict[int, Proc] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            cmd = Path(f"/proc/{d}/cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            continue
        rest = stat[stat.rindex(")") + 2:].split()
        out[int(d)] = Proc(int(d), int(rest[1]), stat[stat.index("(") + 1:stat.rindex(")")], cmd)
    return out


def descendants(table: dict[int, Proc], roots: Iterable[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for p in table.values():
        children.setdefault(p.ppid, []).append(p.pid)
    seen: set[int] = set()
    todo = [r for r in roots if r in table]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(children.get(pid, ()))
    return seen


def cpu_seconds(pid: int) -> float:
    """CPU time of a process plus its reaped children (peapod reaps the runc/CNI/unshare it runs)."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK")


def mem_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in kB from smaps_rollup; (0, 0) if the process is gone."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return rss, pss


def mem_sum(pids: Iterable[int]) -> dict[str, float]:
    rss = pss = 0
    for pid in pids:
        r, p = mem_kb(pid)
        rss += r
        pss += p
    return {"rss_mb": rss / 1024, "pss_mb": pss / 1024}


def comm_counts(table: dict[int, Proc], pids: Iterable[int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for pid in pids:
        if pid in table:
            out[table[pid].comm] = out.get(table[pid].comm, 0) + 1
    return dict(sorted(out.items()))


def mem_by_comm(table: dict[int, Proc], pids: Iterable[int]) -> dict[str, dict[str, float]]:
    """RSS and PSS (MB) per command name: where a tree's memory goes (peapod, conmon, sleep...)."""
    out: dict[str, dict[str, float]] = {}
    for pid in pids:
        if pid in table:
            rss, pss = mem_kb(pid)
            fig = out.setdefault(table[pid].comm, {"rss_mb": 0.0, "pss_mb": 0.0})
            fig["rss_mb"] += rss / 1024
            fig["pss_mb"] += pss / 1024
    return dict(sorted(out.items()))


def tree_snapshot(tree: set[int], own: set[int], table: dict[int, Proc]) -> dict[str, Any]:
    total = mem_sum(tree)
    mine = mem_sum(own)
    return {"total": total, "containers_own": mine, "processes": comm_counts(table, tree),
            "by_comm": mem_by_comm(table, tree)}


async def wait_pids_exit(pids: Iterable[int], timeout: float) -> None:
    """Wait (pidfd, no polling) until every process in ``pids`` has exited."""
    loop = asyncio.get_running_loop()
    waits = []
    fds = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        fut: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, lambda f=fut: f.done() or f.set_result(None))
        fds.append(fd)
        waits.append(fut)
    try:
        if waits:
            await asyncio.wait_for(asyncio.gather(*waits), timeout)
    finally:
        for fd in fds:
            loop.remove_reader(fd)
            os.close(fd)


# ---- peapod -----------------------------------------------------------------------------------------


@dataclass
class Waiter:
    running: asyncio.Future[float]
    gone: asyncio.Future[float]


class Peapod:
    """A `peapod up` cluster driven over its API, with one watch that timestamps every pod event."""

    def __init__(self, cluster: PeapodCluster) -> None:
        self.cluster = cluster
        self.base = cluster.url
        ctx = ssl.create_default_context(cafile=str(cluster.data_dir / "tls" / "ca.crt"))
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx, limit=64),
            headers={"Authorization": f"Bearer {cluster.admin_token()}"},
        )
        self.waiters: dict[str, Waiter] = {}
        self.uids: dict[str, str] = {}
        self._watch: asyncio.Task[None] | None = None
        self._watching = asyncio.Event()
        self.created: set[str] = set()

    @property
    def data_dir(self) -> Path:
        return self.cluster.data_dir

    @property
    def pid(self) -> int:
        assert self.cluster.proc is not None
        return self.cluster.proc.pid

    async def start(self) -> None:
        async with self.session.get(f"{self.base}/api/v1/namespaces/{NAMESPACE}/pods") as r:
            rv = (await r.json())["metadata"]["resourceVersion"]
        self._watch = asyncio.create_task(self._watch_loop(rv))
        await asyncio.wait_for(self._watching.wait(), 30)

    async def _watch_loop(self, rv: str) -> None:
        url = f"{self.base}/api/v1/namespaces/{NAMESPACE}/pods"
        while True:
            params = {"watch": "true", "resourceVersion": rv, "labelSelector": f"app={LABEL}",
                      "allowWatchBookmarks": "true"}
            async with self.session.get(url, params=params,
                                        timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as r:
                r.raise_for_status()
                self._watching.set()
                async for line in r.content:
                    now = time.perf_counter()
                    if not line.strip():
                        continue
                    ev = json.loads(line)
                    obj = ev["object"]
                    if ev["type"] == "ERROR":
                        raise RuntimeError(f"watch error: {obj}")
                    rv = obj["metadata"].get("resourceVersion", rv)
                    if ev["type"] == "BOOKMARK":
                        continue
                    w = self.waiters.get(obj["metadata"]["name"])
                    if w is None:
                        continue
                    if ev["type"] == "DELETED":
                        if not w.gone.done():
                            w.gone.set_result(now)
                    elif all_running(obj) and not w.running.done():
                        w.running.set_result(now)

    def expect(self, name: str) -> Waiter:
        loop = asyncio.get_running_loop()
        w = Waiter(loop.create_future(), loop.create_future())
        self.waiters[name] = w
        return w

    async def create(self, manifest: dict[str, Any]) -> None:
        name = manifest["metadata"]["name"]
        self.created.add(name)
        async with self.session.post(f"{self.base}/api/v1/namespaces/{NAMESPACE}/pods",
                                     json=manifest) as r:
            body = await r.json()
            if r.status >= 300:
                raise RuntimeError(f"create {name}: {r.status} {body}")
        self.uids[name] = body["metadata"]["uid"]

    async def delete(self, name: str) -> None:
        async with self.session.delete(f"{self.base}/api/v1/namespaces/{NAMESPACE}/pods/{name}",
                                       json={"gracePeriodSeconds": 0}) as r:
            await r.read()
            if r.status >= 300 and r.status != 404:
                raise RuntimeError(f"delete {name}: {r.status}")
        self.created.discard(name)

    async def describe(self, name: str) -> str:
        async with self.session.get(f"{self.base}/api/v1/namespaces/{NAMESPACE}/pods/{name}") as r:
            return (await r.text())[:3000]

    async def wait(self, fut: asyncio.Future[float], name: str, what: str) -> float:
        try:
            return await asyncio.wait_for(asyncio.shield(fut), TIMEOUT)
        except TimeoutError:
            raise RuntimeError(f"peapod pod {name} not {what} after {TIMEOUT}s: {await self.describe(name)}\n"
                               f"{self.cluster.log_tail(10)}") from None

    def tree(self) -> tuple[dict[int, Proc], set[int], set[int], set[int]]:
        """(table, whole tree, conmons, containers' own processes)."""
        table = proc_table()
        marker = str(self.data_dir).encode()
        roots = {self.pid} | {p.pid for p in table.values() if marker in p.cmdline}
        tree = descendants(table, roots)
        conmons = {pid for pid in tree if table[pid].comm == "conmon"}
        own = descendants(table, [p.pid for p in table.values() if p.ppid in conmons])
        return table, tree, conmons, own

    def sandbox_dir(self, name: str) -> Path:
        return self.data_dir / "node" / "sandboxes" / self.uids.get(name, "-")

    async def wait_teardown(self, names: list[str], conmons: set[int]) -> None:
        """Until the given conmons have exited and the pods' sandbox dirs are gone."""
        await wait_pids_exit(conmons, TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while any(self.sandbox_dir(n).exists() for n in names):
            if time.monotonic() > deadline:
                raise RuntimeError(f"peapod sandboxes of {names[:3]}... still there after {TIMEOUT}s")
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch
        await self.session.close()


async def peapod_one(pp: Peapod, name: str, image: str, containers: int) -> dict[str, float]:
    w = pp.expect(name)
    t0 = time.perf_counter()
    await pp.create(pod_manifest(name, image, containers))
    t_running = await pp.wait(w.running, name, "Running")
    _, _, conmons, _ = pp.tree()
    t1 = time.perf_counter()
    await pp.delete(name)
    t_gone = await pp.wait(w.gone, name, "deleted")
    await pp.wait_teardown([name], conmons)
    t_down = time.perf_counter()
    pp.waiters.pop(name, None)
    return {"start": t_running - t0, "delete": t_gone - t1, "teardown": t_down - t1}


async def peapod_burst(pp: Peapod, n: int, image: str, density: bool, settle: float) -> dict[str, Any]:
    names = [f"burst{n}-{i}" for i in range(n)]
    out: dict[str, Any] = {"pods": n}
    if density:
        cpu0 = cpu_seconds(pp.pid)
        await asyncio.sleep(settle)
        out["idle_cpu_percent_before"] = 100 * (cpu_seconds(pp.pid) - cpu0) / settle
        table, tree, _, own = pp.tree()
        out["memory_before"] = tree_snapshot(tree, own, table)
    waiters = {name: pp.expect(name) for name in names}
    t0 = time.perf_counter()

    async def create(name: str) -> float:
        await pp.create(pod_manifest(name, image, 1))
        return time.perf_counter()

    posted = await asyncio.gather(*(create(name) for name in names))
    running = [await pp.wait(waiters[name].running, name, "Running") for name in names]
    out["all_posted_s"] = max(posted) - t0
    out["all_running_s"] = max(running) - t0
    out["per_pod_start"] = summary_ms([t - t0 for t in running])
    table, tree, conmons, own = pp.tree()
    if density:
        await asyncio.sleep(1.0)  # let the last status writes and probes settle
        cpu0 = cpu_seconds(pp.pid)
        await asyncio.sleep(settle)
        out["idle_cpu_percent_after"] = 100 * (cpu_seconds(pp.pid) - cpu0) / settle
        table, tree, conmons, own = pp.tree()
        out["memory_after"] = tree_snapshot(tree, own, table)
    t1 = time.perf_counter()
    await asyncio.gather(*(pp.delete(name) for name in names))
    gone = [await pp.wait(waiters[name].gone, name, "deleted") for name in names]
    out["all_deleted_s"] = max(gone) - t1
    await pp.wait_teardown(names, conmons)
    out["all_torn_down_s"] = time.perf_counter() - t1
    for name in names:
        pp.waiters.pop(name, None)
    return out


# ---- podman -----------------------------------------------------------------------------------------


class Podman:
    def __init__(self, workdir: Path, image: str) -> None:
        self.dir = workdir / "podman"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.image = image
        self.env = {k: v for k, v in os.environ.items() if k != "CONTAINERS_CONF"}
        self.created: set[str] = set()
        self.pause_images_before: set[str] = set()
        self.image_was_present = False
        self.bridges_before = podman_bridges()
        self.networks_before: set[str] = set()

    async def podman(self, *args: str, check: bool = True,
                     timeout: float = TIMEOUT) -> tuple[int, str, str, float]:
        return await run("podman", *args, env=self.env, check=check, timeout=timeout)

    async def networks(self) -> set[str]:
        _, out, _, _ = await self.podman("network", "ls", "--format", "{{.Name}}")
        return set(out.split())

    async def images(self) -> set[str]:
        _, out, _, _ = await self.podman("images", "--format", "{{.Repository}}:{{.Tag}}")
        return set(out.split())

    async def prepare(self) -> None:
        before = await self.images()
        self.pause_images_before = {i for i in before if "podman-pause" in i}
        self.image_was_present = self.image in before
        self.networks_before = await self.networks()
        await self.podman("pull", "--tls-verify=false", "--quiet", self.image)

    def write(self, name: str, docs: list[dict[str, Any]]) -> Path:
        path = self.dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        return path

    async def play(self, path: Path, names: list[str], timeout: float = TIMEOUT) -> float:
        self.created.update(names)
        rc, _, err, elapsed = await self.podman("kube", "play", "--tls-verify=false", str(path), check=False,
                                                timeout=timeout)
        if rc != 0:
            raise RuntimeError(f"podman kube play {path.name} failed ({rc}): {err.strip()[-2000:]}")
        return elapsed

    async def down(self, path: Path, names: list[str]) -> float:
        _, _, _, elapsed = await self.podman("kube", "down", str(path))
        self.created.difference_update(names)
        return elapsed

    async def rm_pods(self, names: list[str]) -> float:
        if not names:
            return 0.0
        _, _, _, elapsed = await self.podman("pod", "rm", "--force", "--ignore", "--time", "0", *names,
                                             timeout=BURST_TIMEOUT)
        self.created.difference_update(names)
        return elapsed

    async def running_pods(self, names: list[str]) -> int:
        _, out, _, _ = await self.podman("pod", "ps", "--format", "{{.Name}} {{.Status}}")
        want = set(names)
        return sum(1 for line in out.splitlines() if line.split()[:1] and line.split()[0] in want
                   and line.split()[1] == "Running")

    async def tree(self, names: list[str]) -> tuple[dict[int, Proc], set[int], set[int]]:
        """(table, conmons + everything under them, app containers' own processes)."""
        _, out, _, _ = await self.podman("pod", "inspect", *names)
        pods = json.loads(out)
        pods = pods if isinstance(pods, list) else [pods]
        ids = [c["Id"] for p in pods for c in p.get("Containers") or []]
        _, out, _, _ = await self.podman("container", "inspect", *ids)
        table = proc_table()
        conmons = []
        apps = []
        for c in json.loads(out):
            conmons.append(c["State"]["ConmonPid"])
            if not c.get("IsInfra"):
                apps.append(c["State"]["Pid"])
        return table, descendants(table, conmons), descendants(table, apps)

    async def cleanup(self) -> list[str]:
        done = []
        if self.created:
            await self.rm_pods(sorted(self.created))
            done.append("podman pods")
        after = await self.images()
        if not self.image_was_present and self.image in after:
            await self.podman("rmi", "--force", self.image, check=False)
            done.append(f"image {self.image}")
        for img in sorted(i for i in after if "podman-pause" in i and i not in self.pause_images_before):
            await self.podman("rmi", img, check=False)
            done.append(f"image {img}")
        for net in sorted(await self.networks() - self.networks_before):  # kube play's own network
            await self.podman("network", "rm", net, check=False)
            done.append(f"network {net}")
        _, out, _, _ = await self.podman("ps", "-a", "-q", check=False)
        if not out.strip():  # netavark removes its bridge with the last container; make sure
            for br in sorted(podman_bridges() - self.bridges_before):
                await run("ip", "link", "del", br, check=False)
                done.append(f"bridge {br}")
        return done


async def podman_one(pm: Podman, name: str, containers: int) -> dict[str, float]:
    path = pm.write(name, [pod_manifest(name, pm.image, containers)])
    start = await pm.play(path, [name])
    delete = await pm.down(path, [name])
    return {"start": start, "delete": delete}


async def podman_burst(pm: Podman, n: int, mode: str, density: bool) -> dict[str, Any]:
    names = [f"ppbench-burst{n}-{i}" for i in range(n)]
    out: dict[str, Any] = {"pods": n, "mode": mode}
    t0 = time.perf_counter()
    if mode == "multidoc":
        path = pm.write(f"burst{n}", [pod_manifest(name, pm.image, 1) for name in names])
        results = await asyncio.gather(pm.play(path, names, BURST_TIMEOUT), return_exceptions=True)
    else:
        paths = [pm.write(name, [pod_manifest(name, pm.image, 1)]) for name in names]
        t0 = time.perf_counter()
        plays = (pm.play(p, [name], BURST_TIMEOUT) for p, name in zip(paths, names, strict=True))
        results = await asyncio.gather(*plays, return_exceptions=True)
    out["all_running_s"] = time.perf_counter() - t0
    errors = [repr(r)[:300] for r in results if isinstance(r, BaseException)]
    if errors:
        out["failed_plays"] = len(errors)
        out["first_error"] = errors[0]
    out["running_after"] = await pm.running_pods(names)
    if density:
        table, tree, own = await pm.tree(names)
        out["memory_after"] = tree_snapshot(tree, own, table)
    out["all_deleted_s"] = await pm.rm_pods(names)
    return out


# ---- floor: netns + CNI + runc ----------------------------------------------------------------------


class Floor:
    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "floor"
        self.rootfs = build_busybox_rootfs(self.dir / "rootfs")
        self.runc_root = self.dir / "runc"
        self.runc_root.mkdir(parents=True)
        self.cni = CniNetwork(CniConfig(data_dir=str(self.dir / "cni"), bridge=FLOOR_BRIDGE,
                                        subnet=FLOOR_SUBNET, network_name="ppbench", portmap=False,
                                        default_route=False))
        spec_dir = self.dir / "spec"
        spec_dir.mkdir()
        subprocess.run(["runc", "spec"], cwd=spec_dir, check=True)
        self.base_spec = json.loads((spec_dir / "config.json").read_text())
        self.netns: set[str] = set()
        self.containers: set[str] = set()

    def bundle(self, cid: str, netns: str) -> Path:
        spec = json.loads(json.dumps(self.base_spec))
        spec["process"]["args"] = ["sleep", "3600"]
        spec["process"]["terminal"] = False
        spec["root"] = {"path": str(self.rootfs), "readonly": True}
        spec["hostname"] = cid
        spec["linux"]["namespaces"] = [
            ns if ns["type"] != "network" else {"type": "network", "path": netns}
            for ns in spec["linux"]["namespaces"]
        ]
        d = self.dir / "bundles" / cid
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(spec))
        return d

    async def start(self, name: str, containers: int) -> tuple[dict[str, float], list[str]]:
        t0 = time.perf_counter()
        self.netns.add(name)
        await run("ip", "netns", "add", name)
        t1 = time.perf_counter()
        await self.cni.setup(name, f"/run/netns/{name}")
        t2 = time.perf_counter()
        ids = []
        for i in range(containers):
            cid = f"{name}-c{i}"
            self.containers.add(cid)
            ids.append(cid)
            await run("runc", "--root", str(self.runc_root), "run", "-d", "-b",
                      str(self.bundle(cid, f"/run/netns/{name}")), cid, capture=False)
        t3 = time.perf_counter()
        return {"start": t3 - t0, "netns": t1 - t0, "cni": t2 - t1, "runc": t3 - t2}, ids

    async def stop(self, name: str, ids: list[str]) -> float:
        t0 = time.perf_counter()
        for cid in ids:
            await run("runc", "--root", str(self.runc_root), "delete", "--force", cid, check=False)
            self.containers.discard(cid)
        await self.cni.teardown(name, f"/run/netns/{name}")
        await run("ip", "netns", "del", name, check=False)
        self.netns.discard(name)
        return time.perf_counter() - t0

    async def cleanup(self) -> list[str]:
        done = []
        for cid in sorted(self.containers):
            await run("runc", "--root", str(self.runc_root), "delete", "--force", cid, check=False)
            done.append(f"runc {cid}")
        for ns in sorted(self.netns):
            with contextlib.suppress(Exception):
                await self.cni.teardown(ns, f"/run/netns/{ns}")
            await run("ip", "netns", "del", ns, check=False)
            done.append(f"netns {ns}")
        self.cni.remove_bridge()
        return done


async def floor_one(fl: Floor, name: str, containers: int) -> dict[str, float]:
    times, ids = await fl.start(name, containers)
    times["delete"] = await fl.stop(name, ids)
    return times


# ---- the run ----------------------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    out: dict[str, Any] = field(default_factory=dict)
    registry: LoopbackRegistry | None = None
    cluster: PeapodCluster | None = None
    peapod: Peapod | None = None
    podman: Podman | None = None
    floor: Floor | None = None
    image: str = ""

    @contextlib.asynccontextmanager
    async def profile(self, name: str) -> AsyncIterator[None]:
        """py-spy record of peapod while the block runs (``--py-spy DIR``), collapsed stacks."""
        if not self.args.py_spy or self.peapod is None:
            yield
            return
        self.args.py_spy.mkdir(parents=True, exist_ok=True)
        fmt = self.args.py_spy_format
        dest = self.args.py_spy / f"{name}.{'svg' if fmt == 'flamegraph' else 'txt'}"
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        proc = await asyncio.create_subprocess_exec(
            exe, "record", "--nonblocking", "--pid", str(self.peapod.pid), "--rate", "250", "--format", fmt,
            "--output", str(dest), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await asyncio.sleep(1.0)  # let it attach
        try:
            yield
        finally:
            proc.send_signal(signal.SIGINT)
            await proc.wait()
            self.out.setdefault("profiles", []).append(str(dest))

    async def setup(self) -> None:
        a = self.args
        log("starting the loopback registry")
        self.registry = await asyncio.to_thread(LoopbackRegistry().start)
        self.image = self.registry.ref("busybox", "1")
        await push_image(self.image, busybox_image())
        if "podman" in a.systems:
            self.out["containers_conf"] = ensure_containers_conf()
            log(self.out["containers_conf"])
            self.podman = Podman(self.workdir, self.image)
            await self.podman.prepare()
        if "floor" in a.systems:
            self.floor = await asyncio.to_thread(Floor, self.workdir)
        if "peapod" in a.systems:
            log("starting peapod up")
            self.cluster = PeapodCluster(self.workdir / "peapod", command="up")
            await asyncio.to_thread(self.cluster.start, 60)
            self.peapod = Peapod(self.cluster)
            await self.peapod.start()

    async def warm_up(self) -> None:
        """One untimed pod per system and size: pulls into peapod, builds podman's pause image."""
        for c in (1, 3):
            if self.peapod:
                await peapod_one(self.peapod, f"warm-{c}", self.image, c)
            if self.podman:
                await podman_one(self.podman, f"ppbench-warm-{c}", c)
            if self.floor:
                await floor_one(self.floor, f"ppbench-{os.getpid()}-warm{c}", c)

    async def latency(self) -> None:
        n = self.args.pods
        res: dict[str, Any] = {}
        async with self.profile("latency"):
            for c in (1, 3):
                samples: dict[str, list[dict[str, float]]] = {"peapod": [], "podman": [], "floor": []}
                log(f"pod start, {c} container(s), {n} runs per system")
                for i in range(n):
                    if self.floor:
                        name = f"ppbench-{os.getpid()}-{c}-{i}"
                        samples["floor"].append(await floor_one(self.floor, name, c))
                    if self.peapod:
                        samples["peapod"].append(await peapod_one(self.peapod, f"seq{c}-{i}", self.image, c))
                    if self.podman:
                        samples["podman"].append(await podman_one(self.podman, f"ppbench-seq{c}-{i}", c))
                series: dict[str, Any] = {}
                for system, runs in samples.items():
                    if runs:
                        series[system] = {k: summary_ms([r[k] for r in runs]) for k in runs[0]}
                res[f"{c}c"] = series
        self.out["latency"] = res

    async def bursts(self) -> None:
        a = self.args
        sizes = sorted(set(a.bursts) | set(a.density))
        res: dict[str, Any] = {"peapod": {}, "podman": {}}
        self.out["burst"] = res
        try:
            for n in sizes:
                density = n in a.density
                if self.peapod:
                    log(f"peapod burst of {n}")
                    async with self.profile(f"burst{n}"):
                        res["peapod"][str(n)] = await peapod_burst(self.peapod, n, self.image, density,
                                                                   a.settle)
                if self.podman:
                    log(f"podman burst of {n} ({a.podman_burst})")
                    res["podman"][str(n)] = await podman_burst(self.podman, n, a.podman_burst, density)
        finally:
            self.out["density"] = density_figures(res, a.density, self.out.get("memory_at_start"))

    async def cleanup(self) -> None:
        done: list[str] = []
        leftovers: list[str] = []
        if self.peapod is not None:
            with contextlib.suppress(Exception):
                await asyncio.gather(*(self.peapod.delete(n) for n in sorted(self.peapod.created)))
            await self.peapod.close()
        if self.cluster is not None:
            code = await asyncio.to_thread(self.cluster.stop, 60)
            done.append(f"peapod (exit {code})")
            # What `peapod down` does, minus removing the node bridge: peapod0 is shared by every
            # `peapod up` on this machine, and other clusters may be using it.
            node_dir = self.cluster.data_dir / "node"
            if node_dir.is_dir():
                leftovers += await cleanup_data_dir(node_dir, bridge=None)
            marker = str(self.cluster.data_dir).encode()
            for p in proc_table().values():
                if marker in p.cmdline:
                    leftovers.append(f"process {p.pid} {p.comm}")
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p.pid, signal.SIGKILL)
        if self.podman is not None:
            with contextlib.suppress(Exception):
                done += await self.podman.cleanup()
        if self.floor is not None:
            done += await self.floor.cleanup()
        if self.registry is not None:
            await asyncio.to_thread(self.registry.stop)
            done.append("registry")
        self.out["cleanup"] = {"done": done, "peapod_leftovers": leftovers}


def density_figures(res: dict[str, Any], sizes: list[int], at_start: dict[str, Any] | None = None) -> dict[str, Any]:
    """Per-pod overhead = (tree with N pods - tree just before the burst - containers' own) / N; for peapod
    also against the tree when the node had never run a pod (``*_vs_start``), which counts what the
    process kept from earlier pods (its heap does not shrink back after they are deleted)."""
    out: dict[str, Any] = {"peapod": {}, "podman": {}}
    for n in sizes:
        p = res["peapod"].get(str(n))
        if p and "memory_after" in p:
            before, after = p["memory_before"], p["memory_after"]
            fig = {"baseline": before["total"], "total": after["total"],
                   "containers_own": after["containers_own"],
                   "idle_cpu_percent": [p["idle_cpu_percent_before"], p["idle_cpu_percent_after"]]}
            for k in ("rss_mb", "pss_mb"):
                fig[f"per_pod_overhead_{k}"] = (after["total"][k] - before["total"][k]
                                                 - after["containers_own"][k]) / n
                if at_start:
                    fig[f"per_pod_overhead_vs_start_{k}"] = (after["total"][k] - at_start["total"][k]
                                                             - after["containers_own"][k]) / n
            if at_start:
                fig["at_start"] = at_start["total"]
            out["peapod"][str(n)] = fig
        q = res["podman"].get(str(n))
        if q and "memory_after" in q:
            after = q["memory_after"]
            fig = {"total": after["total"], "containers_own": after["containers_own"]}
            for k in ("rss_mb", "pss_mb"):
                fig[f"per_pod_overhead_{k}"] = (after["total"][k] - after["containers_own"][k]) / n
            out["podman"][str(n)] = fig
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ppbench-") as d:
        b = Bench(args, Path(d))
        b.out["machine"] = machine()
        b.out["config"] = {"pods_per_series": args.pods, "bursts": args.bursts, "density": args.density,
                           "podman_burst": args.podman_burst, "systems": args.systems}
        try:
            await b.setup()
            if b.peapod is not None:  # the node's tree before it ever ran a pod: the true "0 pods"
                await asyncio.sleep(2.0)
                table, tree, _, own = b.peapod.tree()
                b.out["memory_at_start"] = tree_snapshot(tree, own, table)
            await b.warm_up()
            for phase in (b.latency, b.bursts):
                try:
                    await phase()
                except Exception as e:  # keep what was measured; say what failed
                    log(f"{phase.__name__} failed: {e!r}")
                    b.out.setdefault("errors", []).append(f"{phase.__name__}: {e!r}"[:2000])
                if args.json:
                    args.json.write_text(json.dumps(b.out, indent=2))
        finally:
            await b.cleanup()
        b.out["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        return b.out


# ---- report -----------------------------------------------------------------------------------------


def _trip(s: dict[str, float] | None) -> str:
    return "-" if not s else f"{s['p50']:.0f} / {s['p90']:.0f} / {s['p99']:.0f}"


def report(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [f"machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, kernel {m['kernel']}, "
             f"load {m['loadavg_at_start']} -> {m.get('loadavg_at_end')}; {m['podman']}; {m['runc']}",
             f"containers.conf: {r.get('containers_conf', 'not touched (no podman)')}",
             f"pod start runs per series: {r['config']['pods_per_series']}; podman burst: "
             f"{r['config']['podman_burst']} "
             + ("(N concurrent `podman kube play` of one-pod files)"
                if r["config"]["podman_burst"] == "parallel"
                else "(one `podman kube play` of an N-document file)"),
             "", "| measure | peapod | podman | floor | goal |", "|---|---|---|---|---|"]
    lat = r.get("latency", {})
    for c in ("1c", "3c"):
        s = lat.get(c, {})

        def get(system: str, k: str = "start", s: dict[str, Any] = s) -> dict[str, float] | None:
            return (s.get(system) or {}).get(k)

        lines.append(f"| pod start, {c[0]} container(s), p50 / p90 / p99 (ms) | {_trip(get('peapod'))} | "
                     f"{_trip(get('podman'))} | {_trip(get('floor'))} | |")
        pp, pm, fl = get("peapod"), get("podman"), get("floor")
        if pp and pm:
            lines.append(f"| peapod p50 / podman p50, {c[0]}c | {pp['p50'] / pm['p50']:.2f} | | | <= 0.5 |")
        if pp and fl:
            diff = pp["p50"] - fl["p50"]
            lines.append(f"| peapod p50 - floor p50, {c[0]}c (ms) | {diff:.0f} | | | <= 40 |")
        if fl:
            parts = ", ".join(f"{k} {get('floor', k)['p50']:.0f}" for k in ("netns", "cni", "runc"))
            lines.append(f"| floor parts p50, {c[0]}c (ms) | | | {parts} | |")
        lines.append(f"| delete p50 / p90 / p99, {c[0]}c (ms) | {_trip(get('peapod', 'delete'))} | "
                     f"{_trip(get('podman', 'delete'))} | {_trip(get('floor', 'delete'))} | |")
        if get("peapod", "teardown"):
            lines.append(f"| peapod delete to conmons exited + sandbox gone, {c[0]}c (ms) | "
                         f"{_trip(get('peapod', 'teardown'))} | | | |")
    burst = r.get("burst", {})
    for n in sorted({int(k) for side in burst.values() for k in side}):
        pp, pm = burst.get("peapod", {}).get(str(n)), burst.get("podman", {}).get(str(n))
        goal = "<= 20 (110)" if n == 110 else ""
        pp_s = f"{pp['all_running_s']:.2f} (posted {pp['all_posted_s']:.2f})" if pp else "-"
        pm_s = f"{pm['all_running_s']:.2f} ({pm['running_after']} running)" if pm else "-"
        if pm and pm.get("failed_plays"):
            pm_s += f", {pm['failed_plays']} plays failed"
        lines.append(f"| burst {n}: all Running (s) | {pp_s} | {pm_s} | | {goal} |")
        pp_d = f"{pp['all_deleted_s']:.2f} (torn down {pp['all_torn_down_s']:.2f})" if pp else "-"
        pm_d = f"{pm['all_deleted_s']:.2f}" if pm else "-"
        lines.append(f"| burst {n}: delete all, gone (s) | {pp_d} | {pm_d} | | |")
    dens = r.get("density", {})
    for n in sorted({int(k) for side in dens.values() for k in side}):
        pp, pm = dens.get("peapod", {}).get(str(n)), dens.get("podman", {}).get(str(n))
        for k, label in (("pss_mb", "PSS"), ("rss_mb", "RSS")):
            a = f"{pp[f'per_pod_overhead_{k}']:.2f}" if pp else "-"
            b = f"{pm[f'per_pod_overhead_{k}']:.2f}" if pm else "-"
            lines.append(f"| per-pod overhead at {n} pods, {label} (MB) | {a} | {b} | | <= 2 |")
        if pp and "per_pod_overhead_vs_start_pss_mb" in pp:
            lines.append(f"| per-pod overhead at {n} pods counted from the node before its first pod, PSS / RSS (MB) | "
                         f"{pp['per_pod_overhead_vs_start_pss_mb']:.2f} / {pp['per_pod_overhead_vs_start_rss_mb']:.2f} "
                         "| | | <= 2 |")
        if pp:
            c0, c1 = pp["idle_cpu_percent"]
            lines.append(f"| peapod idle CPU (process + reaped children) at 0 -> {n} pods (%) | "
                         f"{c0:.1f} -> {c1:.1f} | | | |")
            lines.append(f"| peapod tree PSS at 0 -> {n} pods, containers' own (MB) | "
                         f"{pp['baseline']['pss_mb']:.1f} -> {pp['total']['pss_mb']:.1f}, "
                         f"{pp['containers_own']['pss_mb']:.1f} | | | |")
        if pm:
            lines.append(f"| podman tree PSS at {n} pods, containers' own (MB) | | "
                         f"{pm['total']['pss_mb']:.1f}, {pm['containers_own']['pss_mb']:.1f} | | |")
    cl = r.get("cleanup", {})
    lines += ["", f"cleanup: {', '.join(cl.get('done', []))}"]
    for err in r.get("errors", []):
        lines.append(f"error: {err[:500]}")
    if cl.get("peapod_leftovers"):
        lines.append(f"peapod leftovers after stop (product bug): {cl['peapod_leftovers']}")
    return "\n".join(lines)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="3 pods per series, bursts of 5, density at 5")
    p.add_argument("--pods", type=int, default=None, help="pod start runs per series (default 30)")
    p.add_argument("--bursts", type=_ints, default=None, help="burst sizes (default 10,50,110)")
    p.add_argument("--density", type=_ints, default=None, help="pod counts for memory (default 50,110)")
    p.add_argument("--podman-burst", choices=("parallel", "multidoc"), default="multidoc")
    p.add_argument("--systems", type=lambda s: [x for x in s.split(",") if x],
                   default=["peapod", "podman", "floor"])
    p.add_argument("--settle", type=float, default=5.0,
                   help="seconds of idle CPU measured before each memory reading")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--py-spy", type=Path, default=None, help="write py-spy profiles of peapod to DIR")
    p.add_argument("--py-spy-format", choices=("raw", "flamegraph"), default="raw",
                   help="raw: collapsed stacks (NAME.txt); flamegraph: SVG (NAME.svg)")
    args = p.parse_args(argv)
    if args.pods is None:
        args.pods = 3 if args.smoke else 30
    if args.bursts is None:
        args.bursts = [5] if args.smoke else [10, 50, 110]
    if args.density is None:
        args.density = [5] if args.smoke else [50, 110]
    if os.geteuid() != 0:
        raise SystemExit("needs root (runc, CNI, podman)")
    r = asyncio.run(main_async(args))
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
    print(report(r))


if __name__ == "__main__":
    main()
