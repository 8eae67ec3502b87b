"""`kubectl rollout status|history|undo|pause|resume|restart` against the controllers (real kubectl)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from peapod.client.rest import ApiClient
from peapod.clock import RealClock
from peapod.controlplane.controllers.deployment import DeploymentController
from peapod.controlplane.controllers.replicaset import ReplicaSetController
from tests.integration.controllers.cluster import DEPLOY, FakeKubelet, eventually, pods, running

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")

MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    kubernetes.io/change-cause: first
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - {name: c, image: "v1"}
"""


class Kubectl:
    def __init__(self, api: ApiClient, tmp: Path) -> None:
        self.config = tmp / "kubeconfig"
        self.config.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: t\n"
            f"clusters: [{{name: t, cluster: {{server: '{api.base_url}'}}}}]\n"
            "users: [{name: t, user: {}}]\ncontexts: [{name: t, context: {cluster: t, user: t}}]\n"
        )
        self.env = {**os.environ, "HOME": str(tmp), "KUBECONFIG": str(self.config)}
        self.tmp = tmp

    async def __call__(self, *args: str, ok: bool = True) -> str:
        assert KUBECTL is not None
        proc = await asyncio.create_subprocess_exec(
            KUBECTL, "--cache-dir", str(self.tmp / "cache"), *args, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 90)
        if ok:
            assert proc.returncode == 0, f"kubectl {' '.join(args)}: {err.decode()} {out.decode()}"
        return out.decode() + err.decode()


def image_of(p: dict) -> str:
    return p["spec"]["containers"][0]["image"]


async def test_rollout_commands(api: ApiClient, tmp_path: Path) -> None:
    k = Kubectl(api, tmp_path)
    (tmp_path / "d.yaml").write_text(MANIFEST)
    clock = RealClock()
    rsc, dc = ReplicaSetController(api, clock=clock), DeploymentController(api, clock=clock)
    async with running(rsc.run(), dc.run(), FakeKubelet(api).run()):
        await k("apply", "-f", str(tmp_path / "d.yaml"))
        out = await k("rollout", "status", "deployment/web", "--timeout=60s")
        assert 'deployment "web" successfully rolled out' in out
        # Annotations are copied onto the current new ReplicaSet on every sync (as in kube), so the
        # change cause is set after the template change, as kube's documentation says.
        await k("set", "image", "deployment/web", "c=v2")
        await k("annotate", "deployment/web", "kubernetes.io/change-cause=second", "--overwrite")
        out = await k("rollout", "status", "deployment/web", "--timeout=60s")
        assert "successfully rolled out" in out
        hist = await k("rollout", "history", "deployment/web")
        rows = [line.split() for line in hist.splitlines() if line[:1].isdigit()]
        assert rows == [["1", "first"], ["2", "second"]], hist
        out = await k("rollout", "undo", "deployment/web")
        assert "rolled back" in out
        await k("rollout", "status", "deployment/web", "--timeout=60s")

        async def on_v1() -> bool:
            return {image_of(p) for p in await pods(api, "app=web")} == {"v1"}

        await eventually(on_v1, what="pods back on v1")
        hist = await k("rollout", "history", "deployment/web")
        assert [line.split()[0] for line in hist.splitlines() if line[:1].isdigit()] == ["2", "3"], hist
        await k("rollout", "pause", "deployment/web")
        await k("rollout", "restart", "deployment/web", ok=False)  # kubectl refuses on a paused deployment
        await k("rollout", "resume", "deployment/web")
        await k("rollout", "restart", "deployment/web")
        out = await k("rollout", "status", "deployment/web", "--timeout=60s")
        assert "successfully rolled out" in out
        d = await api.get(DEPLOY, "web", "default")
        assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4"
