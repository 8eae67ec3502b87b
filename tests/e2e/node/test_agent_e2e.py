"""The node agent for real: runc + conmon + CNI bridge + overlayfs, images from a loopback registry,
an in-process API server. Pods share localhost, /dev/shm and emptyDirs; reach each other's IPs;
get env, downward API, configMap and secret data; logs and exec go through the agent's server; an
agent restart re-adopts running pods; nothing is left behind."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from peapod.api.errors import ApiError
from peapod.api.resources import resource
from peapod.client.rest import ApiClient
from peapod.node.agent import Agent, AgentConfig, cgroup_parent_for, cleanup_data_dir
from peapod.node.runtime.sandbox import mount_points
from peapod.testing.images import busybox_image, push_image
from peapod.testing.registry import LoopbackRegistry

NEEDED = (
    "/usr/bin/runc",
    "/usr/bin/conmon",
    "/usr/lib/cni/bridge",
    "/usr/bin/docker-registry",
    "/bin/busybox",
)
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(any(not os.path.exists(p) for p in NEEDED), reason=f"needs {NEEDED}"),
]
PODS = resource("", "v1", "pods")
CONFIGMAPS = resource("", "v1", "configmaps")
SECRETS = resource("", "v1", "secrets")
NODE = "e2e-node"


@pytest.fixture
async def registry_image() -> AsyncIterator[str]:
    async with LoopbackRegistry() as reg:
        ref = reg.ref("busybox", "e2e")
        await push_image(ref, busybox_image(cmd=["sh"]))
        yield ref


@pytest.fixture
async def client(server: Any) -> AsyncIterator[ApiClient]:
    c = ApiClient(server.url)
    try:
        yield c
    finally:
        await c.close()


class Env:
    def __init__(self, data: Path, client: ApiClient) -> None:
        self.data = data
        self.client = client
        self.bridge = "ppn" + secrets.token_hex(3)
        self.cidr = f"10.77.{secrets.randbelow(200) + 20}.0/24"

    def config(self) -> AgentConfig:
        return AgentConfig.for_data_dir(
            node_name=NODE,
            data_dir=self.data,
            client=self.client,
            pod_cidr=self.cidr,
            bridge=self.bridge,
            node_ips=["127.0.0.1"],
            bind="127.0.0.1",
            port=0,
            insecure_http=True,
            relist_interval=0.2,
            resync_interval=2.0,
        )

    def leftovers(self) -> list[str]:
        found: list[str] = []
        runc_root = self.data / "runtime" / "runc"
        if runc_root.exists():
            out = subprocess.run(
                ["runc", "--root", str(runc_root), "list", "-q"], capture_output=True, text=True
            ).stdout.split()
            found += [f"runc container {c}" for c in out]
        found += [f"mount {m}" for m in mount_points() if m.startswith(str(self.data))]
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if str(self.data).encode() in cmd:
                    found.append(f"process {pid}: {cmd[:100]!r}")
        parent = cgroup_parent_for(self.data)
        found += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob(f"*/{parent}/pod*")]
        found += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob(f"{parent}/pod*")]
        veths = subprocess.run(
            ["ip", "-o", "link", "show", "master", self.bridge], capture_output=True, text=True
        ).stdout.strip()
        if veths:
            found.append(f"veths: {veths}")
        return found


@pytest.fixture
async def env(tmp_path_factory: pytest.TempPathFactory, client: ApiClient) -> AsyncIterator[Env]:
    forward = "/proc/sys/net/ipv4/ip_forward"
    with open(forward) as f:  # noqa: ASYNC230 - a tiny procfs read
        before = f.read().strip()
    e = Env(tmp_path_factory.mktemp("agent-e2e"), client)
    try:
        yield e
    finally:
        await cleanup_data_dir(e.data, bridge=e.bridge)
        left = e.leftovers()
        shutil.rmtree(e.data, ignore_errors=True)
        if before == "0":
            with open(forward, "w") as f:  # noqa: ASYNC230 - the bridge plugin turned forwarding on
                f.write("0")
        assert not left, f"leaked: {left}"


async def wait_for(
    client: ApiClient, name: str, cond: Callable[[dict[str, Any]], bool], timeout: float = 60.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            last = await client.get(PODS, name, "default")
        except ApiError as e:
            if e.code != 404:
                raise
            last = {}
        if cond(last):
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"{name}: condition not met; last status {json.dumps(last.get('status'))[:2000]}")


def ready(p: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", [])
    )


async def exec_ws(port: int, name: str, container: str, *cmd: str) -> tuple[str, dict[str, Any]]:
    """exec through the agent's server with the v5 WebSocket protocol: (stdout+stderr, status)."""
    q = "&".join([f"container={container}", "stdout=true", "stderr=true"] + [f"command={c}" for c in cmd])
    out = b""
    status: dict[str, Any] = {}
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(
            f"http://127.0.0.1:{port}/api/v1/namespaces/default/pods/{name}/exec?{q}",
            protocols=["v5.channel.k8s.io"],
        ) as ws,
    ):
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.BINARY:
                break
            ch, data = msg.data[0], msg.data[1:]
            if ch in (1, 2):
                out += data
            elif ch == 3:
                status = json.loads(data)
    return out.decode(), status


async def test_pods_for_real(env: Env, client: ApiClient, registry_image: str) -> None:
    await client.create(
        CONFIGMAPS, {"metadata": {"name": "cfg"}, "data": {"greeting": "hello-cm"}}, "default"
    )
    await client.create(SECRETS, {"metadata": {"name": "sec"}, "stringData": {"pw": "s3cret"}}, "default")
    agent = Agent(env.config())
    await agent.start()
    try:
        server_pod = {
            "metadata": {"name": "srv"},
            "spec": {
                "nodeName": NODE,
                "terminationGracePeriodSeconds": 2,
                "containers": [
                    {
                        "name": "httpd",
                        "image": registry_image,
                        "command": [
                            "sh",
                            "-c",
                            "mkdir -p /www && echo from-srv > /www/index.html && "
                            "exec httpd -f -p 8080 -h /www",
                        ],
                    }
                ],
            },
        }
        shared = {
            "metadata": {"name": "shared", "labels": {"app": "demo"}},
            "spec": {
                "nodeName": NODE,
                "terminationGracePeriodSeconds": 2,
                "volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}}],
                "containers": [
                    {
                        "name": "web",
                        "image": registry_image,
                        "command": [
                            "sh",
                            "-c",
                            "echo shared-file > /data/f && echo shm-data > /dev/shm/s && echo started-web && "
                            "mkdir -p /www && echo from-web > /www/index.html && "
                            "exec httpd -f -p 8080 -h /www",
                        ],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    },
                    {
                        "name": "side",
                        "image": registry_image,
                        "command": ["sleep", "3600"],
                        "env": [
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                            {
                                "name": "GREETING",
                                "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}},
                            },
                            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}},
                            {"name": "COMBINED", "value": "$(POD_NAME)-$(GREETING)"},
                        ],
                        "volumeMounts": [
                            {"name": "data", "mountPath": "/data"},
                            {"name": "cfg", "mountPath": "/cfg"},
                        ],
                    },
                ],
            },
        }
        await client.create(PODS, server_pod, "default")
        await client.create(PODS, shared, "default")
        srv = await wait_for(client, "srv", ready)
        pod = await wait_for(client, "shared", ready)
        srv_ip = srv["status"]["podIP"]
        assert pod["status"]["podIP"] != srv_ip
        port = agent.port

        async def sh(container: str, script: str) -> str:
            out, status = await exec_ws(port, "shared", container, "sh", "-c", script)
            assert status.get("status") == "Success", (script, out, status)
            return out

        await asyncio.sleep(0.5)
        assert (await sh("side", "hostname")).strip() == "shared"
        assert (await sh("side", "cat /data/f")).strip() == "shared-file"
        assert (await sh("side", "cat /dev/shm/s")).strip() == "shm-data"
        assert "from-web" in await sh("side", "wget -qO- http://127.0.0.1:8080/")
        assert "from-srv" in await sh("side", f"wget -qO- http://{srv_ip}:8080/")
        env_out = await sh("side", "env")
        for want in (
            "POD_NAME=shared",
            f"POD_IP={pod['status']['podIP']}",
            "GREETING=hello-cm",
            "PW=s3cret",
            "COMBINED=shared-hello-cm",
        ):
            assert want in env_out
        assert (await sh("side", "cat /cfg/greeting")).strip() == "hello-cm"
        assert "shared" in await sh("side", "cat /etc/hosts")
        _out, status = await exec_ws(port, "shared", "side", "sh", "-c", "exit 3")
        assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode"

        async with (
            aiohttp.ClientSession() as s,
            s.get(f"http://127.0.0.1:{port}/api/v1/namespaces/default/pods/shared/log?container=web") as r,
        ):
            assert r.status == 200
            assert (await r.text()) == "started-web\n"

        # an agent "upgrade": stop without stopping pods, start again; nothing restarts
        cid = pod["status"]["containerStatuses"][0]["containerID"]
        await agent.stop(stop_pods=False)
        agent = Agent(env.config())
        await agent.start()
        await asyncio.sleep(2)
        again = await client.get(PODS, "shared", "default")
        assert ready(again)
        assert again["status"]["containerStatuses"][0]["containerID"] == cid
        assert all(c["restartCount"] == 0 for c in again["status"]["containerStatuses"])

        # graceful delete: containers stopped, everything released, the pod object removed
        await client.delete(PODS, "shared", "default")
        await wait_for(client, "shared", lambda p: p == {}, timeout=60)
    finally:
        await agent.stop(stop_pods=True)
    left = [x for x in env.leftovers() if "veths" not in x or env.bridge in x]
    assert not left, left


async def test_crash_restart_and_logs_previous(env: Env, client: ApiClient, registry_image: str) -> None:
    agent = Agent(env.config())
    await agent.start()
    try:
        await client.create(
            PODS,
            {
                "metadata": {"name": "crash"},
                "spec": {
                    "nodeName": NODE,
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "c",
                            "image": registry_image,
                            "command": ["sh", "-c", "echo run-$(date +%s%N); sleep 1; exit 3"],
                        }
                    ],
                },
            },
            "default",
        )
        pod = await wait_for(
            client,
            "crash",
            lambda p: any(
                s.get("restartCount", 0) >= 1 for s in p.get("status", {}).get("containerStatuses", [])
            ),
        )
        cs = pod["status"]["containerStatuses"][0]
        assert cs["lastState"]["terminated"]["exitCode"] == 3
        async with (
            aiohttp.ClientSession() as s,
            s.get(
                f"http://127.0.0.1:{agent.port}/api/v1/namespaces/default/pods/crash/log?previous=true"
            ) as r,
        ):
            assert r.status == 200
            assert (await r.text()).startswith("run-")
    finally:
        await agent.stop(stop_pods=True)
