"""Shared cluster secrets in the store, the CA-pinning join token, node credentials issuance and the
configurable DefaultTolerationSeconds."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from peapod.api import errors
from peapod.apiserver.admission import default_toleration_seconds
from peapod.apiserver.certs import ensure_identity, ensure_tls, load_ca, make_ca
from peapod.apiserver.clusterinit import (
    SECRETS_KEY,
    JoinTokenError,
    ca_pin,
    ensure_cluster_secrets,
    parse_join_token,
    pin_matches,
)
from peapod.apiserver.nodejoin import NodeSigner, issue_node_credentials
from peapod.cli.join import NodeCredentials, usable
from peapod.store.sqlite import SQLiteStore


async def test_the_first_server_initialises_and_the_others_load_the_same_secrets(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "db")
    try:
        a, b = await asyncio.gather(ensure_cluster_secrets(store, tmp_path / "a"),
                                    ensure_cluster_secrets(store, tmp_path / "b"))
        assert a == b
        for d in ("a", "b"):
            base = tmp_path / d
            assert (base / "tls" / "ca.crt").read_text() == a.ca_cert
            assert (base / "auth" / "admin.token").read_text().strip() == a.admin_token
            assert (base / "node-token").read_text().strip() == a.join_token()
            assert (base / "tls" / "ca.key").stat().st_mode & 0o077 == 0
        assert (await store.get(SECRETS_KEY)) is not None
        assert not SECRETS_KEY.startswith("/registry/")  # never served by the API
    finally:
        await store.close()


async def test_an_existing_data_dir_keeps_its_ca_and_tokens(tmp_path: Path) -> None:
    data = tmp_path / "old"
    tls = ensure_tls(data / "tls", ["127.0.0.1"])
    (data / "auth").mkdir()
    (data / "auth" / "admin.token").write_text("old-admin\n")
    (data / "tls" / "sa.key").write_text("SA")
    ca_before = tls.ca_cert.read_text()
    store = await SQLiteStore.open(tmp_path / "db")
    try:
        got = await ensure_cluster_secrets(store, data)
    finally:
        await store.close()
    assert got.ca_cert == ca_before and got.admin_token == "old-admin" and got.sa_key == "SA"
    assert tls.ca_cert.read_text() == ca_before


def test_certificates_of_a_replaced_ca_are_reissued(tmp_path: Path) -> None:
    tls = ensure_tls(tmp_path / "tls", ["127.0.0.1"])
    cert_before = tls.cert.read_bytes()
    ident_before = ensure_identity(tls, "x", "x")[0].read_bytes()
    assert ensure_tls(tmp_path / "tls", ["127.0.0.1"]).cert.read_bytes() == cert_before  # reused
    cert, key = make_ca()
    tls.ca_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tls.ca_key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    assert ensure_tls(tmp_path / "tls", ["127.0.0.1"]).cert.read_bytes() != cert_before
    assert ensure_identity(tls, "x", "x")[0].read_bytes() != ident_before


def test_join_token_format_and_pin(tmp_path: Path) -> None:
    cert, _ = make_ca()
    pem = cert.public_bytes(serialization.Encoding.PEM)
    pin = ca_pin(pem)
    t = parse_join_token(f"peapod1::{pin}::abcdef.0123456789abcdef\n")
    assert (t.ca_hash, t.bearer) == (pin, "abcdef.0123456789abcdef")
    assert pin_matches(pem, pin.upper()) and not pin_matches(pem, "0" * 64) and not pin_matches(b"junk", pin)
    for bad in ("abcdef.0123456789abcdef", f"peapod2::{pin}::abcdef.0123456789abcdef",
                "peapod1::nothex::abcdef.0123456789abcdef", f"peapod1::{pin}::ABCDEF.0123456789abcdef"):
        with pytest.raises(JoinTokenError):
            parse_join_token(bad)


def _csr(cn: str, key: ec.EllipticCurvePrivateKey | None = None) -> tuple[str, ec.EllipticCurvePrivateKey]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])).sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key


def _signer(tmp_path: Path) -> NodeSigner:
    tls = ensure_tls(tmp_path / "tls", ["127.0.0.1"])
    return NodeSigner(load_ca=lambda: load_ca(tls), ca_pem=tls.ca_cert.read_bytes)


BOOTSTRAPPER = {"username": "system:bootstrap:abcdef", "groups": ["system:bootstrappers", "system:authenticated"]}


def test_node_credentials_have_the_servers_subject_not_the_requesters(tmp_path: Path) -> None:
    signer = _signer(tmp_path)
    client_csr, client_key = _csr("system:masters-wannabe")
    serving_csr, _ = _csr("anything")
    out = issue_node_credentials(signer, {"nodeName": "n1", "nodeIPs": ["10.0.0.5"], "clientCSR": client_csr,
                                          "servingCSR": serving_csr}, BOOTSTRAPPER)
    client = x509.load_pem_x509_certificate(out["clientCertificate"].encode())
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:n1"
    assert [a.value for a in client.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == ["system:nodes"]
    assert client.public_key() == client_key.public_key()
    assert list(client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == \
        [ExtendedKeyUsageOID.CLIENT_AUTH]
    serving = x509.load_pem_x509_certificate(out["servingCertificate"].encode())
    san = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    client.verify_directly_issued_by(x509.load_pem_x509_certificate(out["ca"].encode()))


@pytest.mark.parametrize(("user", "body", "code"), [
    ({"username": "system:node:n2", "groups": ["system:nodes"]}, {}, 403),  # another node's name
    ({"username": "alice", "groups": ["system:authenticated"]}, {}, 403),
    (BOOTSTRAPPER, {"nodeName": "Bad_Name"}, 400),
    (BOOTSTRAPPER, {"nodeIPs": ["not-an-ip"]}, 400),
    (BOOTSTRAPPER, {"clientCSR": "junk"}, 400),
])
def test_node_credentials_refusals(tmp_path: Path, user: dict, body: dict, code: int) -> None:
    full = {"nodeName": "n1", "nodeIPs": ["10.0.0.5"], "clientCSR": _csr("x")[0], "servingCSR": _csr("y")[0], **body}
    with pytest.raises(errors.ApiError) as e:
        issue_node_credentials(_signer(tmp_path), full, user)
    assert e.value.code == code


def test_a_node_may_renew_its_own_credentials(tmp_path: Path) -> None:
    body = {"nodeName": "n1", "nodeIPs": [], "clientCSR": _csr("x")[0], "servingCSR": _csr("y")[0]}
    issue_node_credentials(_signer(tmp_path), body, {"username": "system:node:n1", "groups": ["system:nodes"]})


def test_kept_credentials_are_reused_only_for_the_same_node_address_and_ca(tmp_path: Path) -> None:
    signer = _signer(tmp_path)
    client_csr, client_key = _csr("c")
    serving_csr, serving_key = _csr("s")
    out = issue_node_credentials(signer, {"nodeName": "n1", "nodeIPs": ["10.0.0.5"], "clientCSR": client_csr,
                                          "servingCSR": serving_csr}, BOOTSTRAPPER)
    d = tmp_path / "agent"
    d.mkdir()
    creds = NodeCredentials.in_dir(d)
    creds.ca.write_text(out["ca"])
    creds.cert.write_text(out["clientCertificate"])
    creds.serving_cert.write_text(out["servingCertificate"])
    for path, key in ((creds.key, client_key), (creds.serving_key, serving_key)):
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    assert usable(creds, "n1", "10.0.0.5")
    assert not usable(creds, "n2", "10.0.0.5")
    assert not usable(creds, "n1", "10.0.0.6")
    assert not usable(creds, "n1", "10.0.0.5", now=dt.datetime.now(dt.UTC) + dt.timedelta(days=400))
    other, _ = make_ca()
    creds.ca.write_bytes(other.public_bytes(serialization.Encoding.PEM))
    assert not usable(creds, "n1", "10.0.0.5")


def _tol(key: str, seconds: int = 300) -> dict:
    return {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}


def test_default_toleration_seconds_are_added_with_the_configured_seconds() -> None:
    nr, un = "node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"
    pod: dict = {"spec": {"containers": []}}
    default_toleration_seconds(pod, 5, 7)
    assert pod["spec"]["tolerations"] == [_tol(nr, 5), _tol(un, 7)]
    # a toleration the user wrote is kept as written, even with kube's default 300 s
    own = {"spec": {"tolerations": [_tol(nr, 300), {"key": "other", "operator": "Exists"}]}}
    default_toleration_seconds(own, 5, 7)
    assert own["spec"]["tolerations"] == [_tol(nr, 300), {"key": "other", "operator": "Exists"}, _tol(un, 7)]
    # an empty key, or no effect, tolerates the taint already (kube's rule)
    for wildcard in ({"operator": "Exists"}, {"key": un, "operator": "Exists"}):
        w = {"spec": {"tolerations": [wildcard]}}
        default_toleration_seconds(w, 5, 7)
        assert [t.get("key") for t in w["spec"]["tolerations"]] == (
            [None] if "key" not in wildcard else [un, nr])
    bad = {"spec": {"tolerations": "nope"}}
    default_toleration_seconds(bad, 5, 7)
    assert bad["spec"]["tolerations"] == "nope"  # left for validation to report
