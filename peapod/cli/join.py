"""The agent's side of joining a cluster: trust the CA only when it matches the join token's pin, then
trade the token for the node's own credentials (see :mod:`peapod.apiserver.nodejoin`).

Credentials are kept in ``<dir>`` (``ca.crt``, ``node.crt``/``node.key``: client certificate
``system:node:<name>``; ``serving.crt``/``serving.key``: the agent's HTTPS endpoint) and reused on
restart while they are valid, so a restart needs no token.
"""

from __future__ import annotations

import datetime as dt
import ssl
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from peapod.apiserver.certs import issued_by, private_key_pem, write_private
from peapod.apiserver.clusterinit import JoinTokenError, ca_pin, parse_join_token, pin_matches
from peapod.apiserver.nodejoin import CACERTS_PATH, NODE_CREDENTIALS_PATH

RENEW_BEFORE = dt.timedelta(days=1)
TIMEOUT = aiohttp.ClientTimeout(total=30)


class JoinError(Exception):
    """Joining failed for a reason the user can fix (one line)."""


@dataclass(frozen=True)
class NodeCredentials:
    ca: Path
    cert: Path
    key: Path
    serving_cert: Path
    serving_key: Path

    @classmethod
    def in_dir(cls, d: Path) -> NodeCredentials:
        return cls(d / "ca.crt", d / "node.crt", d / "node.key", d / "serving.crt", d / "serving.key")

    def client_ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx


def _load(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def usable(creds: NodeCredentials, node_name: str, node_ip: str, now: dt.datetime | None = None) -> bool:
    """Whether the kept credentials are for this node and address, signed by the kept CA, and fresh."""
    now = now or dt.datetime.now(dt.UTC)
    client, serving = _load(creds.cert), _load(creds.serving_cert)
    if client is None or serving is None or not (creds.key.exists() and creds.serving_key.exists()):
        return False
    if not all(issued_by(c, creds.ca) and c.not_valid_after_utc - now > RENEW_BEFORE for c in (client, serving)):
        return False
    cn = client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cn or cn[0].value != f"system:node:{node_name}":
        return False
    try:
        san = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return node_ip in {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def _csr(key: ec.EllipticCurvePrivateKey, cn: str) -> str:
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


async def fetch_ca(server: str) -> bytes:
    """The server's CA, fetched without trusting the server (it is checked against the pin next)."""
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as s, s.get(server.rstrip("/") + CACERTS_PATH,
                                                                      ssl=False) as r:
            if r.status != 200:
                raise JoinError(f"{server}{CACERTS_PATH} answered {r.status}: is this a peapod server?")
            return await r.read()
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        raise JoinError(f"cannot reach {server}: {e}") from None


async def join(server: str, token_text: str, node_name: str, node_ips: list[str], creds: NodeCredentials) -> None:
    """Check the server's CA against the token's pin, then get and keep this node's credentials."""
    try:
        token = parse_join_token(token_text)
    except JoinTokenError as e:
        raise JoinError(f"bad join token: {e}") from None
    ca_pem = await fetch_ca(server)
    if not pin_matches(ca_pem, token.ca_hash):
        try:
            got = ca_pin(ca_pem)
        except ValueError:
            got = "not a certificate"
        raise JoinError(f"the CA of {server} (sha256 {got}) does not match the join token's pin "
                        f"(sha256 {token.ca_hash}): wrong server or stale token; refusing to join")
    client_key, serving_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    body = {"nodeName": node_name, "nodeIPs": node_ips,
            "clientCSR": _csr(client_key, f"system:node:{node_name}"), "servingCSR": _csr(serving_key, node_name)}
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as s, s.post(
                server.rstrip("/") + NODE_CREDENTIALS_PATH, json=body, ssl=ctx,
                headers={"Authorization": f"Bearer {token.bearer}"}) as r:
            if r.status == 401:
                raise JoinError(f"{server} refused the join token (401 Unauthorized): wrong or stale token")
            if r.status != 200:
                text = (await r.text())[:300]
                raise JoinError(f"{server} refused to issue node credentials ({r.status}): {text}")
            got = await r.json()
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        raise JoinError(f"cannot get node credentials from {server}: {e}") from None
    creds.ca.parent.mkdir(parents=True, exist_ok=True)
    creds.ca.parent.chmod(0o700)
    write_private(creds.ca, ca_pem)
    write_private(creds.key, private_key_pem(client_key))
    write_private(creds.cert, got["clientCertificate"].encode())
    write_private(creds.serving_key, private_key_pem(serving_key))
    write_private(creds.serving_cert, got["servingCertificate"].encode())
