"""Acceptance of the newcomer's path: `make run` in a fresh clone of this repository.

It installs what is missing (a no-op here: the apt packages are there, and `VENV=` points at this
test's own environment, which `make run` then uses as it is), starts a single-node cluster on SQLite,
builds the example web app with `peapod build` (its RUN step writes the page's "built by" line),
deploys it, and runs until Ctrl-C. The test asks the app over HTTP at a pod IP, then sends Ctrl-C to
the whole process group, as a terminal does, and checks that nothing is left: no process, mount (the
pods' network namespaces are bind mounts in the data dir), bridge, runc container or cgroup.

The clone runs its own code (PYTHONPATH) with this environment's dependencies. Changes not yet
committed in the working tree are copied over, so the test checks what the next commit holds; in
CI's clean clone there are none.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from peapod.node.agent import cgroup_parent_for
from peapod.testing.cluster import STARTED_BRIDGES, free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(600),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (make run starts pods)"),
    pytest.mark.skipif(shutil.which("make") is None or shutil.which("git") is None, reason="needs make and git"),
]
REPO = Path(__file__).resolve().parents[2]


def git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=120).stdout


def clone_with_working_tree(dest: Path) -> Path:
    git("clone", "-q", str(REPO), str(dest), cwd=dest.parent)
    for rel in filter(None, git("ls-files", "-z", "--modified", "--others", "--exclude-standard").split("\0")):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    for rel in filter(None, git("ls-files", "-z", "--deleted").split("\0")):
        (dest / rel).unlink(missing_ok=True)
    return dest


class Output:
    """The merged output of a process, collected by a thread, waited on by pattern."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float, proc: subprocess.Popen[str]) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        with self._cond:
            while True:
                for line in self.lines:
                    if m := rx.search(line):
                        return m
                if proc.poll() is not None and not self._thread.is_alive():
                    raise AssertionError(f"make run exited ({proc.returncode}) before {pattern!r}:\n{self.text()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {pattern!r} after {timeout}s:\n{self.text()}")
                self._cond.wait(min(left, 1.0))


def processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            found.append(f"{entry.name}: {cmd}")
    return found


def cgroups_named(name: str) -> list[str]:
    found = []
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        if root.count("/") > 5:
            dirs.clear()
        elif name in dirs:
            found.append(os.path.join(root, name))
    return found


def test_make_run_in_a_fresh_clone(tmp_path: Path) -> None:
    repo = clone_with_working_tree(tmp_path / "peapod")
    data = tmp_path / "data"
    rng = random.SystemRandom()
    bridge = f"ppt{rng.randrange(16**6):06x}"
    cidr = f"10.{rng.randrange(100, 250)}.{rng.randrange(256)}.0/24"
    STARTED_BRIDGES.add(bridge)  # the session's leftover check looks for it too
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.Popen(
        ["make", "run", f"VENV={sys.prefix}", f"DATA_DIR={data}", f"PORT={free_port()}",
         f"RUN_ARGS=--bridge {bridge} --pod-cidr {cidr} --timeout 240"],
        cwd=repo, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # its own process group, for the Ctrl-C below
    )
    out = Output(proc)
    try:
        url = out.wait_for(r"^\s*curl (http://10\.\S+/cgi-bin/hello)$", 400, proc).group(1)
        out.wait_for(r"Press Ctrl-C to stop", 10, proc)
        text = out.text()
        assert "pip install" not in text and "installing:" not in text, text  # nothing to install here
        assert "STEP 4/9: RUN chmod" in text and "ok building localhost/peapod/webapp:latest" in text, text
        assert f"export KUBECONFIG={data}/kubeconfig" in text and "kubectl get pods -o wide" in text, text
        # the app answers at a pod IP: the page the RUN step stamped, with what the sidecar wrote
        # into the shared volume after checking the web server over the pod's localhost
        deadline = time.monotonic() + 30
        while True:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = r.read().decode()
            assert r.status == 200, body
            assert "Hello from peapod!" in body and "image:   built by peapod build at" in body, body
            if re.search(r"sidecar: check \d+ at .*: web server on localhost:8080 is up", body):
                break
            assert time.monotonic() < deadline, body
            time.sleep(1)
        peapods = [p.split(":")[0] for p in processes_mentioning(str(data))
                   if "-m peapod.cli.main up " in p or "/bin/peapod run-example " in p]
        assert len(peapods) == 2 and all(f"PYTHONPATH={repo}".encode() in Path(f"/proc/{pid}/environ").read_bytes()
                               for pid in peapods), "the clone's code runs"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
        try:
            proc.wait(180)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            raise AssertionError(f"make run did not stop on Ctrl-C:\n{out.text()}") from None
    text = out.text()
    assert "ok removing the example" in text and "ok stopping peapod up" in text, text
    assert "Error" not in text and "Traceback" not in text, text  # run-example itself ended with 0

    # nothing left behind
    assert processes_mentioning(str(tmp_path)) == []
    assert [ln for ln in Path("/proc/mounts").read_text().splitlines() if str(tmp_path) in ln] == []
    assert subprocess.run(["ip", "link", "show", bridge], capture_output=True).returncode != 0, "bridge left"
    runc = subprocess.run(["runc", "--root", str(data / "node" / "runtime" / "runc"), "list", "-q"],
                          capture_output=True, text=True)
    assert runc.stdout.split() == [], runc.stdout
    assert cgroups_named(cgroup_parent_for(data / "node")) == []
