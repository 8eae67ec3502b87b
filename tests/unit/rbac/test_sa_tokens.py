"""Service account JWTs: signing, verification, and the authenticator's liveness checks."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from peapod.apiserver.serviceaccounts import (
    ISSUER,
    TokenError,
    TokenSigner,
    load_or_create_signing_key,
    service_account_authenticator,
)
from peapod.testing.clock import FakeClock

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def signer(tmp_path: Path) -> TokenSigner:
    return TokenSigner(load_or_create_signing_key(tmp_path / "tls" / "sa.key"))


def _claims(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def test_key_is_made_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "tls" / "sa.key"
    a = load_or_create_signing_key(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    b = load_or_create_signing_key(path)
    assert TokenSigner(a).kid == TokenSigner(b).kid


def test_issue_has_kubernetes_claims_and_verifies(signer: TokenSigner) -> None:
    token, exp = signer.issue(namespace="ns", name="sa", sa_uid="u1", now=NOW, expiration=600, pod=("p", "pu"))
    assert exp == NOW + timedelta(seconds=600)
    c = _claims(token)
    assert c["iss"] == ISSUER and c["aud"] == [ISSUER] and c["sub"] == "system:serviceaccount:ns:sa"
    assert c["iat"] == c["nbf"] == int(NOW.timestamp()) and c["exp"] == c["iat"] + 600
    assert c["kubernetes.io"] == {
        "namespace": "ns", "serviceaccount": {"name": "sa", "uid": "u1"}, "pod": {"name": "p", "uid": "pu"},
    }
    assert signer.verify(token, NOW + timedelta(seconds=599))["sub"] == "system:serviceaccount:ns:sa"


def test_verify_refuses(signer: TokenSigner, tmp_path: Path) -> None:
    token, _ = signer.issue(namespace="ns", name="sa", sa_uid="u1", now=NOW, expiration=600)
    with pytest.raises(TokenError, match="expired"):
        signer.verify(token, NOW + timedelta(seconds=600 + 61))
    with pytest.raises(TokenError, match="not valid yet"):
        signer.verify(token, NOW - timedelta(seconds=61))
    head, body, sig = token.split(".")
    forged = dict(_claims(token), sub="system:serviceaccount:kube-system:admin")
    forged_body = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenError, match="signature"):
        signer.verify(f"{head}.{forged_body}.{sig}", NOW)
    other = TokenSigner(load_or_create_signing_key(tmp_path / "other.key"))
    with pytest.raises(TokenError, match="signature"):
        other.verify(token, NOW)
    vault, _ = signer.issue(namespace="ns", name="sa", sa_uid="u1", now=NOW, audiences=["vault"])
    with pytest.raises(TokenError, match="audiences"):
        signer.verify(vault, NOW)
    for junk in ("", "a.b", "a.b.c", "x" * 50):
        with pytest.raises(TokenError):
            signer.verify(junk, NOW)
    alg_none = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    with pytest.raises(TokenError):
        signer.verify(f"{alg_none}.{body}.", NOW)


class _Store:
    def __init__(self) -> None:
        self.objs: dict[str, dict[str, Any]] = {}

    async def get(self, key: str) -> Any:
        from types import SimpleNamespace

        obj = self.objs.get(key)
        return SimpleNamespace(value=json.dumps(obj).encode()) if obj is not None else None


async def test_authenticator_checks_service_account_and_pod(signer: TokenSigner) -> None:
    store = _Store()
    clock = FakeClock(NOW)
    authn = service_account_authenticator(signer, store, clock.now)  # type: ignore[arg-type]
    sa_key, pod_key = "/registry/serviceaccounts/ns/sa", "/registry/pods/ns/p"
    store.objs[sa_key] = {"metadata": {"name": "sa", "namespace": "ns", "uid": "u1"}}
    store.objs[pod_key] = {"metadata": {"name": "p", "namespace": "ns", "uid": "pu"}}
    token, _ = signer.issue(namespace="ns", name="sa", sa_uid="u1", now=NOW, expiration=600)
    bound, _ = signer.issue(namespace="ns", name="sa", sa_uid="u1", now=NOW, expiration=600, pod=("p", "pu"))
    user = await authn(token)
    assert user == {
        "username": "system:serviceaccount:ns:sa",
        "groups": ["system:serviceaccounts", "system:serviceaccounts:ns", "system:authenticated"],
        "uid": "u1",
    }
    assert (await authn(bound))["extra"]["authentication.kubernetes.io/pod-name"] == ["p"]  # type: ignore[index]
    assert await authn("static-token") is None
    store.objs[pod_key]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert await authn(bound) is None  # the pod is going away
    store.objs[sa_key]["metadata"]["uid"] = "u2"  # deleted and recreated
    assert await authn(token) is None
    store.objs[sa_key]["metadata"]["uid"] = "u1"
    clock.advance(700)
    assert await authn(token) is None  # expired


def test_token_volume_admission() -> None:
    from peapod.apiserver.serviceaccounts import TOKEN_MOUNT_PATH, add_token_volume

    pod: dict[str, Any] = {"spec": {"containers": [{"name": "c"}], "initContainers": [{"name": "i"}]}}
    assert add_token_volume(pod, {"metadata": {"name": "default"}}, "abcde")
    assert pod["spec"]["serviceAccountName"] == "default"
    vol = pod["spec"]["volumes"][0]
    assert vol["name"] == "kube-api-access-abcde"
    assert vol["projected"]["sources"][0] == {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}
    for c in pod["spec"]["containers"] + pod["spec"]["initContainers"]:
        assert c["volumeMounts"] == [{"name": "kube-api-access-abcde", "readOnly": True, "mountPath": TOKEN_MOUNT_PATH}]
    # Opt-outs: the pod, then the service account (the pod's choice wins); an existing mount.
    assert not add_token_volume({"spec": {"automountServiceAccountToken": False, "containers": [{}]}}, None, "x")
    assert not add_token_volume({"spec": {"containers": [{}]}}, {"automountServiceAccountToken": False}, "x")
    assert add_token_volume({"spec": {"automountServiceAccountToken": True, "containers": [{}]}},
                            {"automountServiceAccountToken": False}, "x")
    mounted = {"spec": {"containers": [{"volumeMounts": [{"name": "v", "mountPath": TOKEN_MOUNT_PATH}]}]}}
    assert not add_token_volume(mounted, None, "x")
