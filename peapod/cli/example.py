"""``peapod run-example DIR`` (what ``make run`` does): the whole workflow on one machine.

1. checks the machine (the same one-line errors as ``peapod up``);
2. starts ``peapod up`` on the data dir (a child process in its own session, log in ``DATA/peapod.log``);
3. loads the base image ``localhost/peapod/busybox:latest`` (made here from Debian's busybox-static,
   nothing is downloaded) into the node's image store through the agent's image socket;
4. builds ``DIR/Containerfile`` with ``peapod build`` into the same store, as ``localhost/peapod/<DIR name>:latest``;
5. applies the manifests ``DIR/*.yaml`` (server-side apply) and waits until every Deployment is available;
6. asks the app over HTTP at a pod IP, prints how to use it, and runs until Ctrl-C (or SIGTERM);
7. then deletes what it applied, waits until the pods are gone, and stops ``peapod up``.
A second Ctrl-C skips the waiting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from peapod.cli.datadir import DataDirBusyError, DataDirLock
from peapod.cli.main import DEFAULT_DATA_DIR, CliError
from peapod.cli.prereq import missing_prerequisites, port_problem

if TYPE_CHECKING:
    from peapod.cli.progress import Step, Steps

BASE_IMAGE = "localhost/peapod/busybox:latest"
FIELD_MANAGER = "peapod-run-example"
HTTP_PATH_ANNOTATION = "example.peapod.dev/http-path"
Obj = dict[str, Any]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("example", nargs="?", default="examples/webapp", metavar="DIR",
                   help="the example: a Containerfile (optional) and Kubernetes manifests *.yaml")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="state directory")
    p.add_argument("--port", type=int, default=6443, help="HTTPS port of the API server")
    p.add_argument("--bridge", default="peapod0", help="name of the pods' bridge")
    p.add_argument("--pod-cidr", default="10.77.0.0/16", help="addresses for the node's pods")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for each step (default 300)")


# -- the example ------------------------------------------------------------------------------------

@dataclass
class Example:
    path: Path
    image: str
    containerfile: Path | None
    objects: list[Obj]

    @property
    def deployments(self) -> list[Obj]:
        return [o for o in self.objects if o.get("kind") == "Deployment"]


def load_example(path: Path) -> Example:
    """The example in ``path``: its manifests (every document of ``*.yaml``/``*.yml``) and Containerfile."""
    if not path.is_dir():
        raise CliError(f"{path}: no such example directory")
    objects: list[Obj] = []
    for f in sorted([*path.glob("*.yaml"), *path.glob("*.yml")]):
        try:
            docs = [d for d in yaml.safe_load_all(f.read_text()) if d]
        except yaml.YAMLError as e:
            raise CliError(f"{f}: not valid YAML: {e}".replace("\n", " ")) from None
        for d in docs:
            if not isinstance(d, dict) or not d.get("kind") or not d.get("apiVersion"):
                raise CliError(f"{f}: every document needs apiVersion and kind")
            objects.append(d)
    if not objects:
        raise CliError(f"{path}: no Kubernetes manifests (*.yaml) to deploy")
    cf = next((path / n for n in ("Containerfile", "Dockerfile") if (path / n).is_file()), None)
    return Example(path=path, image=f"localhost/peapod/{path.resolve().name}:latest", containerfile=cf,
                   objects=objects)


def selector_string(deployment: Obj) -> str:
    labels = deployment.get("spec", {}).get("selector", {}).get("matchLabels", {})
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def availability(deployment: Obj) -> tuple[int, int]:
    """(available replicas of the current revision, desired replicas) of a Deployment as read back."""
    spec, status = deployment.get("spec", {}), deployment.get("status", {})
    want = int(spec.get("replicas", 1))
    if status.get("observedGeneration", 0) < deployment.get("metadata", {}).get("generation", 0):
        return 0, want
    return min(int(status.get("availableReplicas", 0)), int(status.get("updatedReplicas", 0))), want


def pod_summary(pods: list[Obj]) -> str:
    """``webapp-abc: Running 2/2 ready`` or the reason a container waits (``ErrImageNeverPull``)."""
    parts = []
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        st = pod.get("status", {})
        statuses = st.get("containerStatuses") or []
        ready = sum(1 for c in statuses if c.get("ready"))
        waiting = [c["state"]["waiting"].get("reason", "") for c in statuses
                   if (c.get("state") or {}).get("waiting")]
        reason = next((w for w in waiting if w and w not in ("ContainerCreating", "PodInitializing")), "")
        what = reason or st.get("phase", "Pending")
        parts.append(f"{pod['metadata']['name']}: {what} {ready}/{len(pod['spec']['containers'])} ready")
    return "; ".join(parts) or "no pods yet"


def http_target(deployment: Obj, pod_ip: str) -> str:
    """The URL the app answers on at ``pod_ip``: its first container port and the example's path."""
    path = deployment.get("metadata", {}).get("annotations", {}).get(HTTP_PATH_ANNOTATION, "/")
    port = 80
    for c in deployment["spec"]["template"]["spec"]["containers"]:
        if c.get("ports"):
            port = int(c["ports"][0]["containerPort"])
            break
    return f"http://{pod_ip}:{port}{path}"


def usage_lines(*, kubeconfig: Path, data_dir: Path, deployment: str, url: str) -> list[str]:
    port = url.split(":")[2].split("/")[0]
    path = "/" + url.split("/", 3)[3] if url.count("/") >= 3 else "/"
    return [
        "",
        "Use it:",
        f"  export KUBECONFIG={kubeconfig}",
        "  kubectl get pods -o wide",
        f"  curl {url}",
        f"  kubectl port-forward deployment/{deployment} {port}:{port} &   # then:",
        f"  curl http://127.0.0.1:{port}{path}",
        f"  peapod kubeconfig --merge --data-dir {data_dir}   # or add a `peapod` context to ~/.kube/config",
        "",
        "Press Ctrl-C to stop: the example's pods are removed and peapod stops.",
    ]


# -- child processes -------------------------------------------------------------------------------

def peapod_command(*args: str) -> list[str]:
    """The peapod CLI of this very interpreter (and PYTHONPATH), whatever the PATH holds."""
    return [sys.executable, "-m", "peapod.cli.main", *args]


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when this process dies, so nothing outlives a killed parent."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class PeapodUp:
    """``peapod up`` as a child in its own session: the terminal's Ctrl-C reaches only us, and we stop
    it after removing the example."""

    data_dir: Path
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "peapod.log"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(peapod_command("up", *self.args), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_die_with_parent)

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def last_line(self) -> str:
        lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()] \
            if self.log_path.exists() else []
        return lines[-1].strip() if lines else ""

    def stop(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def _readyz(port: int) -> bool:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # only asks whether it answers; the API calls verify the cluster CA
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", context=ctx, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


# -- the run ---------------------------------------------------------------------------------------

@dataclass
class Run:
    args: argparse.Namespace
    steps: Steps
    example: Example
    data_dir: Path
    up: PeapodUp | None = None
    client: Any = None
    applied: list[tuple[Any, Obj]] = field(default_factory=list)
    hurry: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def timeout(self) -> float:
        return float(self.args.timeout)

    async def _until(self, what: str, check: Any, step: Step, timeout: float | None = None) -> None:
        """Poll ``check()`` (returning True when done) every half second; fail on timeout or peapod's exit."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            if self.up is not None and self.up.exited() is not None:
                raise CliError(f"peapod up exited ({self.up.last_line() or 'no output'}); "
                               f"its log: {self.up.log_path}")
            if await check(step):
                return
            if time.monotonic() > deadline:
                raise CliError(f"{what} took longer than {timeout or self.timeout:.0f}s ({step.detail or 'no detail'})")
            await asyncio.sleep(0.5)

    async def start_cluster(self) -> None:
        a = self.args
        self.up = PeapodUp(self.data_dir, ["--data-dir", str(self.data_dir), "--port", str(a.port),
                                           "--bridge", a.bridge, "--pod-cidr", a.pod_cidr])
        sock = self.data_dir / "node" / "images.sock"
        with self.steps.step(f"starting peapod up on port {a.port} (log: {self.up.log_path})") as step:
            self.up.start()

            async def ready(step: Step) -> bool:
                from peapod.cli.images import socket_answers

                step.update(self.up.last_line() if self.up else "")
                return (await asyncio.to_thread(_readyz, a.port) and (self.data_dir / "kubeconfig").exists()
                        and sock.exists() and await asyncio.to_thread(socket_answers, sock))

            await self._until("starting peapod", ready, step, timeout=min(self.timeout, 120))
        from peapod.client.rest import ApiClient

        self.client = ApiClient.from_kubeconfig(self.data_dir / "kubeconfig", user_agent=FIELD_MANAGER)

    async def load_base_image(self) -> None:
        from peapod.cli.images import SocketBackend
        from peapod.testing.images import busybox_image, write_oci_layout

        backend = SocketBackend(self.data_dir / "node" / "images.sock")
        with self.steps.step(f"base image {BASE_IMAGE} from Debian's busybox-static") as step:
            have = await asyncio.to_thread(backend.list)
            if any(BASE_IMAGE in i.get("repo_tags", []) for i in have):
                step.update("already in the node's image store")
                return
            tmp = self.data_dir / "tmp-example"
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                await asyncio.to_thread(write_oci_layout, tmp / "base", {BASE_IMAGE: busybox_image()})
                await asyncio.to_thread(backend.load, tmp / "base", None)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)

    async def build(self) -> None:
        ex = self.example
        if ex.containerfile is None:
            return
        log_path = self.data_dir / "build.log"
        output: list[bytes] = []
        with self.steps.step(f"building {ex.image} from {ex.containerfile} (peapod build)") as step:
            proc = await asyncio.create_subprocess_exec(
                *peapod_command("build", "-t", ex.image, "-f", str(ex.containerfile), "--data-dir",
                                str(self.data_dir), str(ex.path)),
                stdin=subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent)
            last = ""
            try:
                assert proc.stdout is not None
                while line := await proc.stdout.readline():
                    output.append(line)
                    text = line.decode(errors="replace").strip()
                    if text:
                        last = text
                    if text.startswith(("STEP ", "---> Using cache", "COMMIT")):
                        step.update(text[:100])
                code = await proc.wait()
            except asyncio.CancelledError:
                if proc.returncode is None:  # as Ctrl-C would: the build removes its RUN containers
                    proc.send_signal(signal.SIGINT)
                    try:
                        await asyncio.wait_for(proc.wait(), 60)
                    except TimeoutError:
                        proc.kill()
                        await proc.wait()
                raise
            finally:
                await asyncio.to_thread(log_path.write_bytes, b"".join(output))
            if code != 0:
                raise CliError(f"peapod build failed: {last.removeprefix('peapod: ')} (full output: {log_path})")

    async def deploy(self) -> None:
        from peapod.api.resources import REGISTRY

        with self.steps.step(f"applying {len(self.example.objects)} object(s) from {self.example.path}"):
            for obj in self.example.objects:
                group, _, version = obj["apiVersion"].rpartition("/")
                info = REGISTRY.by_kind(group, version, obj["kind"])
                if info is None:
                    raise CliError(f"{obj['apiVersion']} {obj['kind']} is not served by peapod")
                ns = (obj["metadata"].get("namespace") or "default") if info.namespaced else None
                got = await self.client.patch(info, obj["metadata"]["name"], obj, ns, patch_type="apply",
                                              field_manager=FIELD_MANAGER, force=True)
                self.applied.append((info, got))

    async def _deployments(self) -> list[Obj]:
        from peapod.api.resources import REGISTRY

        info = REGISTRY.by_kind("apps", "v1", "Deployment")
        out = []
        for i, obj in self.applied:
            if i is info:
                out.append(await self.client.get(info, obj["metadata"]["name"], obj["metadata"]["namespace"]))
        return out

    async def _pods(self, deployment: Obj) -> list[Obj]:
        from peapod.api.resources import REGISTRY

        pods = await self.client.list(REGISTRY.by_kind("", "v1", "Pod"), deployment["metadata"]["namespace"],
                                      label_selector=selector_string(deployment))
        return list(pods.get("items", []))

    async def wait_available(self) -> list[str]:
        """Wait until every Deployment is available; the URLs its ready pods answer on."""
        deps = self.example.deployments
        if not deps:
            return []
        names = ", ".join(f"deployment/{d['metadata']['name']}" for d in deps)
        urls: list[str] = []
        with self.steps.step(f"waiting for {names} to be available") as step:
            async def available(step: Step) -> bool:
                done = want = 0
                summary = []
                for dep in await self._deployments():
                    d, w = availability(dep)
                    done, want = done + d, want + w
                    summary.append(pod_summary(await self._pods(dep)))
                step.update("; ".join(summary), completed=done, total=want)
                return done >= want

            await self._until(f"waiting for {names}", available, step)
            for dep in await self._deployments():
                for pod in await self._pods(dep):
                    ip = pod.get("status", {}).get("podIP")
                    ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                                for c in pod.get("status", {}).get("conditions", []))
                    if ip and ready and not pod["metadata"].get("deletionTimestamp"):
                        urls.append(http_target(dep, ip))
        return urls

    async def ask(self, url: str) -> str:
        import aiohttp

        body = ""
        with self.steps.step(f"asking the app: GET {url}") as step:
            async def answers(step: Step) -> bool:
                nonlocal body
                try:
                    async with aiohttp.ClientSession() as s, \
                            s.get(url, timeout=aiohttp.ClientTimeout(total=5)) as r:
                        body = await r.text()
                        step.update(f"HTTP {r.status}")
                        return r.status == 200
                except (aiohttp.ClientError, TimeoutError) as e:
                    step.update(f"{type(e).__name__}: {e}")
                    return False

            await self._until(f"GET {url}", answers, step, timeout=min(self.timeout, 60))
        return body

    async def remove(self) -> None:
        if not self.applied or self.client is None:
            return
        with self.steps.step("removing the example (deleting its objects, waiting for the pods to go)") as step:
            deps = [obj for _, obj in self.applied if obj.get("kind") == "Deployment"]
            for info, obj in reversed(self.applied):
                with contextlib.suppress(Exception):
                    await self.client.delete(info, obj["metadata"]["name"], obj["metadata"].get("namespace"),
                                             propagation_policy="Background")

            async def gone(step: Step) -> bool:
                if self.hurry.is_set():
                    step.update("skipped: peapod up removes the containers as it stops")
                    return True
                left = [p for d in deps for p in await self._pods(d)]
                step.update(f"{len(left)} pod(s) left")
                return not left

            await self._until("removing the example", gone, step, timeout=min(self.timeout, 120))

    async def stop_cluster(self) -> None:
        if self.client is not None:
            await self.client.close()
        if self.up is None or self.up.proc is None:
            return
        with self.steps.step("stopping peapod up"):
            code = await asyncio.to_thread(self.up.stop, 60.0)
            if code not in (0, None, -signal.SIGTERM):
                raise CliError(f"peapod up exited with {code} ({self.up.last_line()}); its log: {self.up.log_path}")


def _preflight(args: argparse.Namespace, steps: Steps, data_dir: Path) -> None:
    with steps.step("prerequisites: root, runc, conmon, CNI plugins, cgroups, data dir, port"):
        problems = missing_prerequisites(need_node=True)
        if problems:
            raise CliError("; ".join(problems))
        lock = DataDirLock(data_dir)
        try:
            lock.acquire()
        except DataDirBusyError as e:
            raise CliError(str(e)) from None
        except PermissionError:
            raise CliError(f"cannot write {data_dir}: run as root or pass a --data-dir you own") from None
        lock.release()
        problem = port_problem("127.0.0.1", args.port)
        if problem:
            raise CliError(problem)


async def _main(run: Run) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    interrupts = 0

    def on_signal() -> None:
        nonlocal interrupts
        interrupts += 1
        stop.set()
        if interrupts > 1:
            run.hurry.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)

    async def bring_up() -> list[str]:
        await run.start_cluster()
        await run.load_base_image()
        await run.build()
        await run.deploy()
        urls = await run.wait_available()
        if urls:
            body = await run.ask(urls[0])
            for line in body.strip().splitlines()[:10]:
                run.steps.info(f"    | {line}")
        return urls

    async def peapod_exit() -> None:
        while run.up is None or run.up.exited() is None:  # noqa: ASYNC110 (a child process has no event)
            await asyncio.sleep(0.5)

    task = asyncio.create_task(bring_up())
    stopper = asyncio.create_task(stop.wait())
    error: BaseException | None = None
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()
            run.steps.info("interrupted: cleaning up")
        with contextlib.suppress(asyncio.CancelledError):
            urls = await task
            deps = run.example.deployments
            lines = usage_lines(kubeconfig=run.data_dir / "kubeconfig", data_dir=run.data_dir,
                                deployment=deps[0]["metadata"]["name"] if deps else run.example.path.name,
                                url=urls[0] if urls else "http://POD_IP:PORT/")
            run.steps.info(f"{run.example.path.name} is available: {len(urls)} pod(s) ready")
            for line in lines:
                run.steps.info(line)
            exited = asyncio.create_task(peapod_exit())
            await asyncio.wait({stopper, exited}, return_when=asyncio.FIRST_COMPLETED)
            exited.cancel()
            if not stop.is_set():
                raise CliError(f"peapod up exited ({run.up.last_line() if run.up else ''}); "
                               f"its log: {run.data_dir / 'peapod.log'}")
            run.steps.info("stopping")
    except BaseException as e:  # clean up first, then report
        error = e
    finally:
        stopper.cancel()
        for cleanup in (run.remove, run.stop_cluster):
            try:
                await cleanup()
            except CliError as e:
                error = error or e
            except Exception as e:
                error = error or CliError(f"cleaning up: {type(e).__name__}: {e}")
    if error is not None:
        raise error
    return 0


def run_example(args: argparse.Namespace) -> int:
    from peapod.cli.progress import Steps

    steps = Steps()
    data_dir = Path(args.data_dir).absolute()
    example = load_example(Path(args.example).absolute())
    _preflight(args, steps, data_dir)
    return asyncio.run(_main(Run(args=args, steps=steps, example=example, data_dir=data_dir)))


__all__ = ["Example", "add_arguments", "availability", "http_target", "load_example", "pod_summary",
           "run_example", "selector_string", "usage_lines"]
