"""The cluster's TLS material: a CA made at first start and a serving certificate signed by it.

Files live in ``<data-dir>/tls`` (keys 0600) and are reused on later starts, so kubeconfigs stay
valid. The serving certificate is re-issued when it lacks a SAN the server now needs.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = dt.timedelta(days=3650)
CERT_VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class TLSFiles:
    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, readable by the owner only."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_ca(now: dt.datetime | None = None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A fresh self-signed cluster CA (EC P-256, ten years)."""
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"peapod-ca@{int(now.timestamp())}")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _sans(hosts: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for h in hosts:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            out.append(x509.DNSName(h))
    return out


def issue_cert(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    *,
    hosts: list[str] = (),  # type: ignore[assignment]
    organizations: list[str] = (),  # type: ignore[assignment]
    server: bool = True,
    client: bool = False,
    now: dt.datetime | None = None,
) -> tuple[bytes, bytes]:
    """Issue a leaf certificate with a fresh key; returns (cert PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert_pem = sign_public_key(
        ca_cert, ca_key, key.public_key(), common_name, hosts=hosts, organizations=organizations,
        server=server, client=client, now=now,
    )
    return cert_pem, private_key_pem(key)


def sign_public_key(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    public_key: CertificatePublicKeyTypes,
    common_name: str,
    *,
    hosts: list[str] = (),  # type: ignore[assignment]
    organizations: list[str] = (),  # type: ignore[assignment]
    server: bool = True,
    client: bool = False,
    now: dt.datetime | None = None,
    validity: dt.timedelta = CERT_VALIDITY,
) -> bytes:
    """A leaf certificate (PEM) for someone else's key, e.g. the public key of a node's CSR; the
    subject and usages are the caller's decision, never the requester's."""
    now = now or dt.datetime.now(dt.UTC)
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName(_sans(list(hosts))), critical=False)
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def issued_by(cert: x509.Certificate, ca_path: Path) -> bool:
    """Whether ``cert`` was signed by the CA at ``ca_path`` (a CA replaced by the cluster's shared
    one makes every certificate of the old one stale)."""
    try:
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
        cert.verify_directly_issued_by(ca)
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False
    return True


def _cert_covers(path: Path, hosts: list[str], now: dt.datetime, ca_path: Path | None = None) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    if cert.not_valid_after_utc - now < dt.timedelta(days=30):
        return False
    if ca_path is not None and not issued_by(cert, ca_path):
        return False
    have = {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    have |= set(san.get_values_for_type(x509.DNSName))
    return all(h in have for h in hosts)


def load_ca(files: TLSFiles) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    key = serialization.load_pem_private_key(files.ca_key.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def ensure_tls(tls_dir: Path, hosts: list[str], now: dt.datetime | None = None) -> TLSFiles:
    """Create (once) the CA and (when needed) a serving certificate valid for ``hosts``."""
    now = now or dt.datetime.now(dt.UTC)
    tls_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(tls_dir, 0o700)
    files = TLSFiles(tls_dir / "ca.crt", tls_dir / "ca.key", tls_dir / "server.crt", tls_dir / "server.key")
    if not (files.ca_cert.exists() and files.ca_key.exists()):
        cert, key = make_ca(now)
        write_private(files.ca_key, private_key_pem(key))
        write_private(files.ca_cert, cert.public_bytes(serialization.Encoding.PEM))
        os.chmod(files.ca_cert, 0o644)
    if not (files.key.exists() and _cert_covers(files.cert, hosts, now, files.ca_cert)):
        ca_cert, ca_key = load_ca(files)
        cert_pem, key_pem = issue_cert(ca_cert, ca_key, "peapod-apiserver", hosts=hosts, now=now)
        write_private(files.key, key_pem)
        write_private(files.cert, cert_pem)
        os.chmod(files.cert, 0o644)
    return files


def ensure_identity(
    files: TLSFiles, stem: str, common_name: str, *, organizations: list[str] = (),  # type: ignore[assignment]
    hosts: list[str] = (), server: bool = False, client: bool = True,  # type: ignore[assignment]
) -> tuple[Path, Path]:
    """A certificate + key pair signed by the cluster CA at ``<tls>/<stem>.crt|.key``, made once
    (and again when it lacks a needed SAN or nears expiry). Returns (cert path, key path)."""
    cert_path = files.ca_cert.parent / f"{stem}.crt"
    key_path = files.ca_cert.parent / f"{stem}.key"
    now = dt.datetime.now(dt.UTC)
    fresh = key_path.exists() and (
        _cert_covers(cert_path, list(hosts), now, files.ca_cert) if hosts
        else _cert_valid(cert_path, now, files.ca_cert)
    )
    if not fresh:
        ca_cert, ca_key = load_ca(files)
        cert_pem, key_pem = issue_cert(
            ca_cert, ca_key, common_name, hosts=list(hosts), organizations=list(organizations),
            server=server, client=client, now=now,
        )
        write_private(key_path, key_pem)
        write_private(cert_path, cert_pem)
    return cert_path, key_path


def _cert_valid(path: Path, now: dt.datetime, ca_path: Path | None = None) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return False
    if ca_path is not None and not issued_by(cert, ca_path):
        return False
    return cert.not_valid_after_utc - now >= dt.timedelta(days=30)
