"""``peapod build`` and ``peapod push`` as a user runs them: the real executable, RUN steps in runc,
the result in the node's image store (directly, and through a running agent's socket, where a pod
runs it), the layer cache, and a push to Debian's docker-registry on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from peapod.node.images import OciImageService
from peapod.testing.cluster import PeapodCluster, peapod_executable
from peapod.testing.images import busybox_image, write_oci_layout
from peapod.testing.registry import LoopbackRegistry

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (runc, overlayfs)"),
]
BASE = "docker.io/library/busybox:base"
CONTAINERFILE = """\
# an example app
ARG BASE=busybox:base
FROM $BASE
ARG GREETING=hello
ENV APP_HOME=/srv/app \\
    MODE=prod
COPY --chown=1000:1000 app/ $APP_HOME/
COPY *.txt /etc/notes/
RUN echo built > /built && \\
    echo "app:x:1001:1001::/home/app:/bin/sh" >> /etc/passwd && echo "app:x:1001:" >> /etc/group && \\
    rm /etc/hostname && echo "greeting=$GREETING"
WORKDIR $APP_HOME
USER app
EXPOSE 8080/tcp
LABEL org.example.name="demo app"
STOPSIGNAL SIGINT
CMD ["sh", "-c", "cat /built; id -u; pwd; echo $MODE; cat main.txt"]
"""


def peapod(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*peapod_executable(), *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"rc={r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout


def one_line_error(r: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert r.returncode == 1, f"rc={r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    err = r.stderr.strip()
    assert err.startswith("peapod: ") and "\n" not in err and "Traceback" not in r.stderr, r.stderr
    for f in fragments:
        assert f in err, err
    return err


def make_context(path: Path) -> Path:
    (path / "app").mkdir(parents=True)
    (path / "app" / "main.txt").write_text("main\n")
    (path / "a.txt").write_text("a\n")
    (path / "b.txt").write_text("b\n")
    (path / "Containerfile").write_text(CONTAINERFILE)
    return path


def load_base(data: Path, tmp: Path) -> None:
    write_oci_layout(tmp / "base-layout", {BASE: busybox_image()})
    ok(peapod("images", "load", str(tmp / "base-layout"), "--data-dir", str(data)))


def image_id(out: str) -> str:
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", last), out
    return last


def stored(data: Path, image: str) -> tuple[dict, dict]:
    """(index record, config JSON) of ``image`` in the node store, read without writing."""
    root = data / "node" / "images"
    for rec in json.loads((root / "images.json").read_text())["images"]:
        if image in rec["repo_tags"] or rec["id"] == image:
            cfg = json.loads((root / "content" / "blobs" / "sha256" / rec["id"].split(":")[1]).read_bytes())
            return rec, cfg
    raise AssertionError(f"{image} not in the node store")


def test_build_cache_push_and_errors(tmp_path: Path) -> None:
    data = tmp_path / "data"
    load_base(data, tmp_path)
    ctx = make_context(tmp_path / "ctx")
    out = ok(peapod("build", "-t", "demo:v1", "--build-arg", "GREETING=hi", str(ctx), "--data-dir", str(data)))
    steps = [ln for ln in out.splitlines() if ln.startswith("STEP ")]
    assert len(steps) == 13 and steps[0] == "STEP 1/13: ARG BASE=busybox:base", out
    assert "STEP 7/13: RUN echo built > /built" in out and "greeting=hi" in out
    assert "Successfully tagged demo:v1" in out and "Using cache" not in out
    first = image_id(out)

    rec, cfg = stored(data, "docker.io/library/demo:v1")
    assert rec["id"] == first
    c = cfg["config"]
    assert c["Env"][-2:] == ["APP_HOME=/srv/app", "MODE=prod"]
    assert c["WorkingDir"] == "/srv/app" and c["User"] == "app" and c["StopSignal"] == "SIGINT"
    assert c["ExposedPorts"] == {"8080/tcp": {}} and c["Labels"] == {"org.example.name": "demo app"}
    assert c["Cmd"][:2] == ["sh", "-c"] and "GREETING" not in json.dumps(c)
    assert len(cfg["rootfs"]["diff_ids"]) == 4  # busybox + COPY + COPY + RUN
    assert sum(1 for h in cfg["history"] if not h.get("empty_layer")) == 4

    # the stored image's files, through the node store's own overlay mount
    async def files() -> dict[str, object]:
        async with OciImageService(data / "node" / "images") as svc:
            root = await svc.prepare_rootfs("demo:v1", "check")
            try:
                main = root / "srv" / "app" / "main.txt"
                return {"built": (root / "built").read_text(), "owner": (main.stat().st_uid, main.stat().st_gid),
                        "notes": sorted(os.listdir(root / "etc" / "notes")),
                        "hostname": (root / "etc" / "hostname").is_symlink() or (root / "etc" / "hostname").exists(),
                        "passwd": (root / "etc" / "passwd").read_text()}
            finally:
                await svc.release_rootfs("check")

    got = asyncio.run(files())
    assert got["built"] == "built\n" and got["owner"] == (1000, 1000)
    assert got["notes"] == ["a.txt", "b.txt"] and got["hostname"] is False  # the whiteout hides it
    assert "app:x:1001" in str(got["passwd"])

    # a rebuild with no change: every layer from the cache, the same image
    again = ok(peapod("build", "-t", "demo:v1", "--build-arg", "GREETING=hi", str(ctx), "--data-dir", str(data)))
    assert again.count("---> Using cache") == 3 and "greeting=hi" not in again, again
    assert image_id(again) == first
    # a changed input rebuilds that step and the ones after it
    (ctx / "b.txt").write_text("b2\n")
    changed = ok(peapod("build", "-t", "demo:v2", "--build-arg", "GREETING=hi", str(ctx), "--data-dir", str(data)))
    assert changed.count("---> Using cache") == 1 and "greeting=hi" in changed, changed
    assert image_id(changed) != first

    with LoopbackRegistry() as reg:
        dest = reg.ref("demo", "v1")
        pushed = ok(peapod("push", "demo:v1", dest, "--data-dir", str(data)))
        digest = re.search(r"Digest: (sha256:[0-9a-f]{64})", pushed)
        assert digest, pushed
        other = tmp_path / "other"
        ok(peapod("images", "pull", dest, "--data-dir", str(other)))
        assert stored(other, dest)[0]["id"] == first
        # RUN has loopback only by default; --network host reaches the host (here: the registry)
        net = tmp_path / "net"
        net.mkdir()
        (net / "Containerfile").write_text(
            f"FROM busybox:base\nRUN wget -q -O /v2.json http://{reg.host}/v2/\n")
        err = one_line_error(peapod("build", "-t", "net", str(net), "--data-dir", str(data)),
                             "Containerfile:2: RUN", "exited with code 1", "--network host")
        assert err
        ok(peapod("build", "--network", "host", "-t", "net", str(net), "--data-dir", str(data)))

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "Dockerfile").write_text("FROM busybox:base\n\nCOPYY a b\n")
    one_line_error(peapod("build", "-t", "bad", str(bad), "--data-dir", str(data)), "Dockerfile:3: unknown instruction")
    (bad / "Dockerfile").write_text("FROM busybox:base\nCOPY missing /x\n")
    one_line_error(peapod("build", "-t", "bad", str(bad), "--data-dir", str(data)), "Dockerfile:2:", "missing")
    one_line_error(peapod("push", "nosuch:v1", "--data-dir", str(data)), "no such image")
    assert not [ln for ln in Path("/proc/mounts").read_text().splitlines() if str(tmp_path) in ln]


def test_a_pod_runs_the_built_image(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Built while `peapod up` runs (stored through the agent's socket), then run as a pod."""
    cluster = PeapodCluster(tmp_path_factory.mktemp("peapod"), command="up")
    cluster.start()
    try:
        tmp = tmp_path_factory.mktemp("build")
        sock = cluster.data_dir / "node" / "images.sock"
        deadline = time.monotonic() + 60
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        load_base(cluster.data_dir, tmp)
        ctx = make_context(tmp / "ctx")
        ok(peapod("build", "-t", "demo:pod", str(ctx), "--data-dir", str(cluster.data_dir)))
        images = json.loads(ok(peapod("images", "ls", "-o", "json", "--data-dir", str(cluster.data_dir))))
        assert any("docker.io/library/demo:pod" in i["repo_tags"] for i in images)
        manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "built", "namespace": "default"},
                    "spec": {"restartPolicy": "Never", "containers": [
                        {"name": "app", "image": "demo:pod", "imagePullPolicy": "Never"}]}}
        cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest), check=True)
        deadline = time.monotonic() + 90
        phase = ""
        while time.monotonic() < deadline:
            phase = cluster.kubectl("get", "pod", "built", "-o", "jsonpath={.status.phase}").stdout
            if phase in ("Succeeded", "Failed"):
                break
            time.sleep(0.5)
        logs = cluster.kubectl("logs", "built").stdout
        assert phase == "Succeeded", (phase, logs, cluster.kubectl("describe", "pod", "built").stdout)
        assert logs.split() == ["built", "1001", "/srv/app", "prod", "main"], logs
        cluster.kubectl("delete", "pod", "built", "--wait=true", check=True, timeout=120)
    finally:
        code = cluster.stop()
        if code not in (0, None):
            print(cluster.log_tail())
