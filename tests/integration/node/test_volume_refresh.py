"""The agent (fake runtime) against a real in-process API server: a running pod's configMap and
downwardAPI volumes follow changes of the ConfigMap and of the pod's labels; a deleted pod's
volumes are never written again."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from peapod.api.resources import resource
from peapod.apiserver.app import CTX
from peapod.apiserver.serviceaccounts import TOKEN_SIGNER, TokenSigner
from peapod.client.rest import ApiClient
from peapod.node.agent import Agent, AgentConfig
from peapod.node.volumes import FakeMounter
from peapod.testing.fakes_images import FakeImageService
from peapod.testing.fakes_node import FakeSandboxes
from peapod.testing.fakes_runtime import FakePodNetwork, FakeRuntime
from peapod.testing.waiting import eventually

PODS = resource("", "v1", "pods")
CONFIGMAPS = resource("", "v1", "configmaps")
NODE = "node-a"
PERIOD = 0.2


@pytest.fixture
async def client(server: Any) -> AsyncIterator[ApiClient]:
    c = ApiClient(server.url)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def agent(tmp_path: Path, client: ApiClient) -> AsyncIterator[Agent]:
    images = FakeImageService(rootfs_dir=tmp_path / "rootfs")
    images.add_remote("busybox:1.36", cmd=("sh",))
    cfg = AgentConfig(
        node_name=NODE, data_dir=tmp_path / "agent", client=client, runtime=FakeRuntime(),
        network=FakePodNetwork(), images=images, sandboxes=FakeSandboxes(tmp_path / "agent"),
        mounter=FakeMounter(), node_ips=["127.0.0.1"], bind="127.0.0.1", port=0, insecure_http=True,
        relist_interval=0.05, resync_interval=0.5, volume_refresh_period=PERIOD)
    a = Agent(cfg)
    await a.start()
    try:
        yield a
    finally:
        await a.stop(stop_pods=True)


def read(p: Path) -> str | None:
    try:
        return p.read_text()
    except OSError:
        return None


async def test_configmap_and_label_changes_reach_the_running_pod(agent: Agent, client: ApiClient) -> None:
    await client.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"},
                                     "data": {"level": "info"}}, "default")
    pod = await client.create(PODS, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"v": "1"}},
        "spec": {"nodeName": NODE, "restartPolicy": "Always", "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"],
                                 "volumeMounts": [{"name": "cfg", "mountPath": "/etc/app"},
                                                  {"name": "info", "mountPath": "/etc/info"}]}],
                 "volumes": [{"name": "cfg", "configMap": {"name": "app"}},
                             {"name": "info", "downwardAPI": {"items": [
                                 {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}]}},
        "default")
    pod_dir = agent.data_dir / "pods" / pod["metadata"]["uid"]
    level = pod_dir / "volumes" / "kubernetes.io~configmap" / "cfg" / "level"
    labels = pod_dir / "volumes" / "kubernetes.io~downward-api" / "info" / "labels"
    await eventually(lambda: read(level) == "info" and read(labels) == 'v="1"')

    cm = await client.get(CONFIGMAPS, "app", "default")
    cm["data"] = {"level": "debug"}
    await client.update(CONFIGMAPS, cm)
    await eventually(lambda: read(level) == "debug", timeout=20 * PERIOD + 5)

    await client.patch(PODS, "web", {"metadata": {"labels": {"v": "2"}}}, "default")
    await eventually(lambda: read(labels) == 'v="2"', timeout=20 * PERIOD + 5)

    # a deleted pod's volumes go away and no refresh writes them again
    await client.delete(PODS, "web", "default")
    await eventually(lambda: not pod_dir.exists(), timeout=15)
    cm = await client.get(CONFIGMAPS, "app", "default")
    cm["data"] = {"level": "warn"}
    await client.update(CONFIGMAPS, cm)
    await asyncio.sleep(3 * PERIOD)
    assert not pod_dir.exists()


async def test_service_account_token_is_not_renewed_before_it_is_due(agent: Agent, client: ApiClient,
                                                                     server: Any) -> None:
    signer = TokenSigner(ec.generate_private_key(ec.SECP256R1()))
    with warnings.catch_warnings():  # the app is running already: aiohttp warns about changing it
        warnings.simplefilter("ignore", DeprecationWarning)
        server.app[TOKEN_SIGNER] = signer
    server.app[CTX].token_signer = signer
    # what ServiceAccount admission adds as kube-api-access-*: a 3607 s token the server extends to a year
    pod = await client.create(PODS, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sa"},
        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"],
                                 "volumeMounts": [{"name": "api", "mountPath": "/var/run/secrets/sa"}]}],
                 "volumes": [{"name": "api", "projected": {"sources": [
                     {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                     {"downwardAPI": {"items": [
                         {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}]}},
        "default")
    vol = agent.data_dir / "pods" / pod["metadata"]["uid"] / "volumes" / "kubernetes.io~projected" / "api"
    await eventually(lambda: bool(read(vol / "token")) and read(vol / "namespace") == "default")
    first = read(vol / "token")
    refresher = agent.volume_refresher
    assert refresher is not None
    for _ in range(3):  # rounds run, the token stays
        before = refresher.last
        await eventually(lambda before=before: refresher.last is not before, timeout=20 * PERIOD + 5)
    assert read(vol / "token") == first
    info = refresher.tokens.peek((pod["metadata"]["uid"], None, 3607))
    assert info is not None and info.token == first
    assert (info.expires_at - info.issued_at).total_seconds() == 3607  # the warnafter, not the 1-year exp
