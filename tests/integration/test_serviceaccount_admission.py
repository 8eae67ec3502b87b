"""ServiceAccount admission (kube-api-access volume) and the root CA publisher on the in-process server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from peapod.apiserver.app import CTX
from peapod.apiserver.serviceaccounts import TOKEN_MOUNT_PATH, TokenSigner
from peapod.client.rest import ApiClient
from peapod.clock import RealClock
from peapod.controlplane.controllers.rootcacertpublisher import DESCRIPTION_KEY, NAME, RootCACertPublisher
from peapod.testing.waiting import eventually
from tests.integration.conftest import ServerThread
from tests.integration.helpers import call, pod

CA = b"-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    """The in-process server, able to issue service account tokens (so pods get token volumes)."""
    srv = ServerThread(tmp_path)
    srv.start()
    assert srv.app is not None
    srv.app[CTX].token_signer = TokenSigner(ec.generate_private_key(ec.SECP256R1()))
    try:
        yield srv
    finally:
        srv.stop()


def _two_containers(name: str, **spec: Any) -> dict[str, Any]:
    p = pod(name)
    p["spec"]["initContainers"] = [{"name": "init", "image": "busybox"}]
    p["spec"].update(spec)
    return p


async def test_pod_gets_kube_api_access_volume(http: Any) -> None:
    r = await call(http, "POST", "/api/v1/namespaces/default/pods", _two_containers("p"))
    assert r.status == 201, r
    spec = r.json["spec"]
    assert spec["serviceAccountName"] == "default"
    [vol] = [v for v in spec["volumes"] if v["name"].startswith("kube-api-access-")]
    assert len(vol["name"]) == len("kube-api-access-") + 5
    sources = vol["projected"]["sources"]
    assert sources[0] == {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}
    assert sources[1]["configMap"]["name"] == NAME
    assert sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"] == "metadata.namespace"
    for c in spec["containers"] + spec["initContainers"]:
        assert {"name": vol["name"], "readOnly": True, "mountPath": TOKEN_MOUNT_PATH} in c["volumeMounts"]


async def test_automount_false_and_missing_service_account(http: Any, server: ServerThread) -> None:
    r = await call(http, "POST", "/api/v1/namespaces/default/pods",
                   _two_containers("off", automountServiceAccountToken=False))
    assert r.status == 201 and not r.json["spec"].get("volumes"), r
    r = await call(http, "POST", "/api/v1/namespaces/default/serviceaccounts",
                   {"metadata": {"name": "quiet"}, "automountServiceAccountToken": False})
    assert r.status == 201, r
    r = await call(http, "POST", "/api/v1/namespaces/default/pods", _two_containers("q", serviceAccountName="quiet"))
    assert r.status == 201 and not r.json["spec"].get("volumes"), r
    before = await server.dump()
    r = await call(http, "POST", "/api/v1/namespaces/default/pods", _two_containers("x", serviceAccountName="ghost"))
    assert r.status == 403, r
    assert r.json["message"] == (
        'pods "x" is forbidden: error looking up service account default/ghost: serviceaccount "ghost" not found'
    )
    assert await server.dump() == before


async def test_root_ca_configmap_in_every_namespace(http: Any, server: ServerThread) -> None:
    client = ApiClient(server.url)
    publisher = RootCACertPublisher(client, clock=RealClock(), ca_pem=CA)
    task = asyncio.create_task(publisher.run())

    async def cm(ns: str) -> Any:
        r = await call(http, "GET", f"/api/v1/namespaces/{ns}/configmaps/{NAME}")
        return r.json if r.status == 200 and r.json["data"] == {"ca.crt": CA.decode()} else None

    try:
        got = await eventually(lambda: cm("default"))
        assert got["metadata"]["annotations"][DESCRIPTION_KEY].startswith("Contains a CA bundle")
        await eventually(lambda: cm("kube-system"))
        assert (await call(http, "POST", "/api/v1/namespaces", {"metadata": {"name": "fresh"}})).status == 201
        await eventually(lambda: cm("fresh"))
        # Edited or deleted: restored.
        got = await cm("fresh")
        got["data"] = {"ca.crt": "tampered"}
        assert (await call(http, "PUT", f"/api/v1/namespaces/fresh/configmaps/{NAME}", got)).status == 200
        await eventually(lambda: cm("fresh"))
        assert (await call(http, "DELETE", f"/api/v1/namespaces/fresh/configmaps/{NAME}")).status == 200
        await eventually(lambda: cm("fresh"))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()
