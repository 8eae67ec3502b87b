"""Node TLS bootstrap: how an agent holding a join token gets its own credentials.

Two endpoints, in the spirit of k3s' ``/cacerts`` and kubeadm's TLS bootstrap (a dedicated endpoint
instead of CertificateSigningRequest objects):

- ``GET /cacerts`` (anonymous): the cluster CA. The agent fetches it without trusting the server and
  checks it against the CA pin of its join token before it sends anything secret.
- ``POST /peapod/v1/node-credentials`` (RBAC: ``system:bootstrappers`` and ``system:nodes`` may POST):
  the agent sends two PKCS#10 requests (its keys never leave the node) and gets back a client
  certificate ``CN=system:node:<name>, O=system:nodes`` and a serving certificate for its addresses.
  Bootstrap tokens may ask for any node name (as in Kubernetes); a node's own certificate may only
  renew its own name. The subject and usages are set here, never taken from the request.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from peapod.api import errors
from peapod.api.names import is_dns1123_subdomain
from peapod.apiserver.auth import MASTERS
from peapod.apiserver.authz import NODE_PREFIX, NODES_GROUP
from peapod.apiserver.certs import sign_public_key
from peapod.apiserver.clusterinit import BOOTSTRAPPERS_GROUP

log = logging.getLogger(__name__)

CACERTS_PATH = "/cacerts"
NODE_CREDENTIALS_PATH = "/peapod/v1/node-credentials"
MAX_IPS = 8


@dataclass(frozen=True)
class NodeSigner:
    """The cluster CA, as the join endpoint needs it (loaded per request so a replaced CA is seen)."""

    load_ca: Callable[[], tuple[x509.Certificate, ec.EllipticCurvePrivateKey]]
    ca_pem: Callable[[], bytes]


def _error(err: errors.ApiError) -> web.Response:
    return web.Response(status=err.code, body=json.dumps(err.status()).encode(), content_type="application/json")


def _csr(body: dict[str, Any], field: str) -> x509.CertificateSigningRequest:
    pem = body.get(field)
    if not isinstance(pem, str):
        raise errors.bad_request(f"{field}: a PEM certificate signing request is required")
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
    except ValueError:
        raise errors.bad_request(f"{field}: not a PEM certificate signing request") from None
    if not csr.is_signature_valid:
        raise errors.bad_request(f"{field}: the request's signature does not match its key")
    if not isinstance(csr.public_key(), ec.EllipticCurvePublicKey):
        raise errors.bad_request(f"{field}: only EC keys are accepted")
    return csr


def check_requester(user: dict[str, Any], node_name: str) -> None:
    """Bootstrappers may get any node's credentials; a node only its own; masters any."""
    groups = user.get("groups") or []
    if MASTERS in groups or BOOTSTRAPPERS_GROUP in groups:
        return
    if NODES_GROUP in groups and user.get("username") == NODE_PREFIX + node_name:
        return
    raise errors.ApiError(403, "Forbidden", f'User "{user.get("username", "")}" may not get the credentials of '
                                            f'node "{node_name}"')


def issue_node_credentials(signer: NodeSigner, body: dict[str, Any], user: dict[str, Any]) -> dict[str, str]:
    node_name = body.get("nodeName")
    if not isinstance(node_name, str) or not node_name or is_dns1123_subdomain(node_name):
        raise errors.bad_request("nodeName: a DNS-1123 subdomain is required")
    check_requester(user, node_name)
    ips = body.get("nodeIPs") or []
    if not isinstance(ips, list) or len(ips) > MAX_IPS:
        raise errors.bad_request(f"nodeIPs: a list of at most {MAX_IPS} addresses is required")
    hosts: list[str] = []
    for ip in ips:
        try:
            hosts.append(str(ipaddress.ip_address(str(ip))))
        except ValueError:
            raise errors.bad_request(f"nodeIPs: {ip!r} is not an IP address") from None
    client_csr, serving_csr = _csr(body, "clientCSR"), _csr(body, "servingCSR")
    ca_cert, ca_key = signer.load_ca()
    client = sign_public_key(ca_cert, ca_key, client_csr.public_key(), NODE_PREFIX + node_name,
                             organizations=[NODES_GROUP], server=False, client=True)
    serving = sign_public_key(ca_cert, ca_key, serving_csr.public_key(), node_name,
                              hosts=[*hosts, node_name], organizations=[NODES_GROUP], server=True, client=False)
    log.info("issued node credentials for %s (%s) to %s", node_name, ", ".join(hosts) or "no address",
             user.get("username"))
    return {"clientCertificate": client.decode(), "servingCertificate": serving.decode(),
            "ca": signer.ca_pem().decode()}


def install_node_join(app: web.Application, signer: NodeSigner) -> None:
    """Add ``/cacerts`` and the node credentials endpoint to the API server's app."""

    async def cacerts(_: web.Request) -> web.Response:
        return web.Response(body=signer.ca_pem(), content_type="application/x-pem-file")

    async def node_credentials(request: web.Request) -> web.Response:
        user = request.get("user")
        if user is None:
            return _error(errors.unauthorized())
        try:
            body = await request.json()
        except ValueError:
            return _error(errors.bad_request("the body must be a JSON object"))
        if not isinstance(body, dict):
            return _error(errors.bad_request("the body must be a JSON object"))
        try:
            out = issue_node_credentials(signer, body, user)
        except errors.ApiError as e:
            return _error(e)
        return web.json_response(out)

    app.router.add_get(CACERTS_PATH, cacerts)
    app.router.add_post(NODE_CREDENTIALS_PATH, node_credentials)
