"""Node TLS bootstrap against a real in-process control plane: the join token is good for nothing but
node credentials, and those credentials act as the node (node authorization), not more."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from peapod.api.errors import ApiError
from peapod.api.resources import resource
from peapod.cli.join import JoinError, NodeCredentials, join, usable
from peapod.cli.up import ControlPlane
from peapod.client.rest import ApiClient
from peapod.testing.cluster import free_port

NODES = resource("", "v1", "nodes")
SECRETS = resource("", "v1", "secrets")


@pytest.fixture
async def cp(tmp_path: Path) -> AsyncIterator[ControlPlane]:
    plane = ControlPlane(data_dir=tmp_path / "server", bind="127.0.0.1", port=free_port())
    await plane.start()
    try:
        yield plane
    finally:
        await plane.stop()


async def test_the_bootstrap_token_may_only_get_node_credentials(cp: ControlPlane) -> None:
    token = (cp.data_dir / "node-token").read_text().strip()
    bearer = token.split("::")[2]
    assert cp.tls is not None
    client = ApiClient(cp.url, token=bearer, ssl_context=ssl.create_default_context(cafile=str(cp.tls.ca_cert)))
    try:
        for call in (client.list(NODES), client.list(SECRETS, "kube-system"),
                     client.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "x"}})):
            with pytest.raises(ApiError) as e:
                await call
            assert e.value.code == 403
    finally:
        await client.close()
    async with aiohttp.ClientSession() as s, s.get(cp.url + "/cacerts", ssl=False) as r:
        assert r.status == 200 and (await r.read()) == cp.tls.ca_cert.read_bytes()  # anonymous


async def test_joined_credentials_act_as_that_node(cp: ControlPlane, tmp_path: Path) -> None:
    creds = NodeCredentials.in_dir(tmp_path / "agent")
    await join(cp.url, (cp.data_dir / "node-token").read_text(), "n1", ["127.0.0.1"], creds)
    assert usable(creds, "n1", "127.0.0.1")
    client = ApiClient(cp.url, ssl_context=creds.client_ssl())
    try:
        await client.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
        with pytest.raises(ApiError) as e:  # NodeRestriction: not another node's object
            await client.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"}})
        assert e.value.code == 403
        with pytest.raises(ApiError) as e:
            await client.list(SECRETS, "kube-system")
        assert e.value.code == 403
    finally:
        await client.close()


async def test_a_stale_token_is_refused(cp: ControlPlane, tmp_path: Path) -> None:
    token = (cp.data_dir / "node-token").read_text().strip()
    prefix, pin, bearer = token.split("::")
    with pytest.raises(JoinError, match="refused the join token"):
        await join(cp.url, f"{prefix}::{pin}::{bearer[:7]}{'0' * 16}", "n1", ["127.0.0.1"],
                   NodeCredentials.in_dir(tmp_path / "a"))
    with pytest.raises(JoinError, match="does not match the join token's pin"):
        await join(cp.url, f"{prefix}::{'f' * 64}::{bearer}", "n1", ["127.0.0.1"],
                   NodeCredentials.in_dir(tmp_path / "b"))
    assert not (tmp_path / "b").exists()  # nothing was kept from a server that failed the pin
