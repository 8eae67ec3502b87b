"""The cluster's shared secrets, kept in the store so that every API server of a cluster uses the same ones.

Like k3s' bootstrap data: the first server to start writes the CA (certificate and key), the service
account signing key, the admin and controller tokens and the node join token secret under
``SECRETS_KEY`` with a create-if-absent write; later servers (and restarts) read them. The key lies
outside ``/registry/``, so the API never serves it. The values are stored in clear: whoever can read
the store (etcd) already owns the cluster.

Each server then writes the secrets to its data dir (``tls/ca.crt``, ``tls/ca.key``, ``tls/sa.key``,
``auth/admin.token``, ``auth/controller.token``, ``node-token``) where the rest of the server and the
user find them. A data dir made before the secrets were shared seeds them from its own files, so an
existing single-node cluster keeps its CA and tokens.

The node join token pins the CA, as k3s' secure tokens do: ``peapod1::<sha256 of the CA cert DER>::<id>.<secret>``.
The ``<id>.<secret>`` part authenticates as ``system:bootstrap:<id>`` in ``system:bootstrappers``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import string
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from peapod.apiserver.certs import make_ca, private_key_pem, write_private
from peapod.store.base import KeyExistsError, Store

log = logging.getLogger(__name__)

SECRETS_KEY = "/peapod/bootstrap/cluster-secrets"
TOKEN_PREFIX = "peapod1"
BOOTSTRAP_USER_PREFIX = "system:bootstrap:"
BOOTSTRAPPERS_GROUP = "system:bootstrappers"
_ALNUM = string.ascii_lowercase + string.digits
_TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")


class JoinTokenError(ValueError):
    """A node join token that is not ``peapod1::<sha256>::<id>.<secret>``."""


@dataclass(frozen=True)
class ClusterSecrets:
    ca_cert: str  # PEM
    ca_key: str  # PEM
    sa_key: str  # PEM
    admin_token: str
    controller_token: str
    node_token_id: str
    node_token_secret: str
    version: int = 1

    @property
    def bootstrap_token(self) -> str:
        """The bearer part of the join token (``<id>.<secret>``)."""
        return f"{self.node_token_id}.{self.node_token_secret}"

    def join_token(self) -> str:
        return f"{TOKEN_PREFIX}::{ca_pin(self.ca_cert.encode())}::{self.bootstrap_token}"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ClusterSecrets:
        raw = json.loads(data)
        fields = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        return cls(**fields)


@dataclass(frozen=True)
class JoinToken:
    ca_hash: str
    token_id: str
    secret: str

    @property
    def bearer(self) -> str:
        return f"{self.token_id}.{self.secret}"


def ca_pin(ca_pem: bytes) -> str:
    """sha256 (hex) of the DER of the first certificate in ``ca_pem``: independent of PEM line breaks."""
    cert = x509.load_pem_x509_certificate(ca_pem)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def pin_matches(ca_pem: bytes, expected: str) -> bool:
    try:
        got = ca_pin(ca_pem)
    except ValueError:
        return False
    return hmac.compare_digest(got, expected.lower())


def parse_join_token(text: str) -> JoinToken:
    parts = text.strip().split("::")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        raise JoinTokenError("not a peapod join token (expected peapod1::<ca sha256>::<id>.<secret>)")
    ca_hash, bearer = parts[1].lower(), parts[2]
    if not re.fullmatch(r"[0-9a-f]{64}", ca_hash):
        raise JoinTokenError("the CA pin of the join token is not a sha256 hex digest")
    m = _TOKEN_RE.match(bearer)
    if m is None:
        raise JoinTokenError("the secret part of the join token is not <6 chars>.<16 chars>")
    return JoinToken(ca_hash, m.group(1), m.group(2))


def _rand(n: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(n))


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _seed(data_dir: Path) -> ClusterSecrets:
    """Secrets for a new cluster: this data dir's own files where they exist (an existing
    single-node cluster keeps its CA, keys and tokens), fresh ones otherwise."""
    tls, auth = data_dir / "tls", data_dir / "auth"
    ca_cert, ca_key = _read(tls / "ca.crt"), _read(tls / "ca.key")
    if not (ca_cert and ca_key):
        cert, key = make_ca()
        ca_cert = cert.public_bytes(serialization.Encoding.PEM).decode()
        ca_key = private_key_pem(key).decode()
    sa_key = _read(tls / "sa.key") or private_key_pem(ec.generate_private_key(ec.SECP256R1())).decode()
    admin = (_read(auth / "admin.token") or "").strip() or secrets.token_urlsafe(32)
    controller = (_read(auth / "controller.token") or "").strip() or secrets.token_urlsafe(32)
    return ClusterSecrets(ca_cert=ca_cert, ca_key=ca_key, sa_key=sa_key, admin_token=admin,
                          controller_token=controller, node_token_id=_rand(6), node_token_secret=_rand(16))


async def load_or_init(store: Store, data_dir: Path) -> ClusterSecrets:
    """The cluster's secrets from the store, initialising them (create-if-absent) on the first start."""
    kv = await store.get(SECRETS_KEY)
    if kv is None:
        seeded = _seed(data_dir)
        try:
            await store.create(SECRETS_KEY, seeded.to_json())
            log.info("initialised the cluster's CA and tokens in the store")
            return seeded
        except KeyExistsError:
            kv = await store.get(SECRETS_KEY)  # another server won the race: use its secrets
            if kv is None:
                raise RuntimeError("cluster secrets vanished from the store") from None
    return ClusterSecrets.from_json(kv.value)


def _write_if_changed(path: Path, data: str, *, private: bool) -> bool:
    if _read(path) == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, data.encode())
    if not private:
        os.chmod(path, 0o644)
    return True


def write_files(secrets_: ClusterSecrets, data_dir: Path) -> None:
    """Put the cluster's secrets where this server and its users expect them."""
    tls, auth = data_dir / "tls", data_dir / "auth"
    for d in (tls, auth):
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
    if _read(tls / "ca.crt") not in (None, secrets_.ca_cert):
        log.warning("%s: replacing this data dir's own CA with the cluster's shared one", tls / "ca.crt")
    _write_if_changed(tls / "ca.key", secrets_.ca_key, private=True)
    _write_if_changed(tls / "ca.crt", secrets_.ca_cert, private=False)
    _write_if_changed(tls / "sa.key", secrets_.sa_key, private=True)
    _write_if_changed(auth / "admin.token", secrets_.admin_token + "\n", private=True)
    _write_if_changed(auth / "controller.token", secrets_.controller_token + "\n", private=True)
    _write_if_changed(data_dir / "node-token", secrets_.join_token() + "\n", private=True)


async def ensure_cluster_secrets(store: Store, data_dir: Path) -> ClusterSecrets:
    """Load (or initialise) the shared secrets and write them into ``data_dir``."""
    got = await load_or_init(store, data_dir)
    write_files(got, data_dir)
    return got

