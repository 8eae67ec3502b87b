"""Service account tokens: TokenRequest (``serviceaccounts/<name>/token``) and their authentication.

Tokens are JWTs signed ES256 with a P-256 key made at first start (``DATA/tls/sa.key``, 0600), with
Kubernetes' claims::

    {"iss": ISSUER, "sub": "system:serviceaccount:NS:NAME", "aud": [...], "exp", "iat", "nbf", "jti",
     "kubernetes.io": {"namespace": NS, "serviceaccount": {"name", "uid"}, "pod": {"name", "uid"}}}

A token authenticates as ``system:serviceaccount:NS:NAME`` in groups ``system:serviceaccounts`` and
``system:serviceaccounts:NS`` when its signature, issuer, time window and audience hold and the
service account (and the pod it is bound to) still exists with the same uid, as kube's legacy
validator checks. A node may only request tokens bound to pods on itself (NodeRestriction).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from peapod.api import errors
from peapod.api.resources import REGISTRY, ResourceInfo
from peapod.apiserver.auth import user_info
from peapod.apiserver.context import ApiContext
from peapod.apiserver.negotiation import Output
from peapod.apiserver.rbac import service_account_groups, service_account_username
from peapod.clock import rfc3339
from peapod.store.base import Store

ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600
KUBELET_TOKEN_EXPIRATION = 3607  # kube's WarnOnlyBoundTokenExpirationSeconds: what admission asks for
MAX_EXPIRATION = 1 << 32
LEEWAY = 60  # seconds of clock skew tolerated on exp/nbf
KUBE_CLAIMS = "kubernetes.io"
EXTENDED_EXPIRATION = 365 * 24 * 3600  # kube's ExpirationExtensionSeconds

Obj = dict[str, Any]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_or_create_signing_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The service account signing key (PEM, 0600), created at first start."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path}: not an EC private key")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key


class TokenError(Exception):
    """A token that does not verify (the authenticator answers 401)."""


class TokenSigner:
    """Signs and verifies service account JWTs (ES256)."""

    def __init__(
        self, key: ec.EllipticCurvePrivateKey, *, issuer: str = ISSUER, audiences: tuple[str, ...] = ()
    ) -> None:
        self.key = key
        self.public = key.public_key()
        self.issuer = issuer
        self.audiences = audiences or (issuer,)  # what the API server accepts (--api-audiences)
        der = self.public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = _b64(hashlib.sha256(der).digest())

    def sign(self, claims: Obj) -> str:
        header = {"alg": "ES256", "kid": self.kid}
        signing_input = f"{_b64(json.dumps(header, separators=(',', ':')).encode())}." + _b64(
            json.dumps(claims, separators=(",", ":")).encode()
        )
        der = self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def issue(
        self,
        *,
        namespace: str,
        name: str,
        sa_uid: str,
        now: datetime,
        expiration: int = DEFAULT_EXPIRATION,
        audiences: list[str] | None = None,
        pod: tuple[str, str] | None = None,
        warn_after: int | None = None,
    ) -> tuple[str, datetime]:
        """A token for service account ``namespace/name`` (bound to ``pod`` = (name, uid) if given)."""
        iat = int(now.timestamp())
        exp = iat + expiration
        kube: Obj = {"namespace": namespace, "serviceaccount": {"name": name, "uid": sa_uid}}
        if pod is not None:
            kube["pod"] = {"name": pod[0], "uid": pod[1]}
        if warn_after is not None:
            kube["warnafter"] = iat + warn_after
        claims = {
            "aud": list(audiences or self.audiences),
            "exp": exp,
            "iat": iat,
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),
            KUBE_CLAIMS: kube,
            "nbf": iat,
            "sub": service_account_username(namespace, name),
        }
        return self.sign(claims), datetime.fromtimestamp(exp, UTC)

    def verify(self, token: str, now: datetime) -> Obj:
        """The claims of a valid token for this API server; TokenError otherwise."""
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("not a JWT")
        try:
            header = json.loads(_unb64(parts[0]))
            claims = json.loads(_unb64(parts[1]))
            sig = _unb64(parts[2])
        except (ValueError, UnicodeDecodeError) as e:
            raise TokenError(f"malformed token: {e}") from None
        if not isinstance(header, dict) or header.get("alg") != "ES256" or not isinstance(claims, dict):
            raise TokenError("unsupported token")
        if len(sig) != 64:
            raise TokenError("bad signature")
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        try:
            self.public.verify(der, f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise TokenError("bad signature") from None
        if claims.get("iss") != self.issuer:
            raise TokenError("wrong issuer")
        t = now.timestamp()
        exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat"))
        if not isinstance(exp, int) or t > exp + LEEWAY:
            raise TokenError("token has expired")
        if isinstance(nbf, int) and t < nbf - LEEWAY:
            raise TokenError("token is not valid yet")
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not set(auds) & set(self.audiences):
            raise TokenError("token audiences are not accepted by this server")
        kube = claims.get(KUBE_CLAIMS)
        if not isinstance(kube, dict) or not isinstance(kube.get("serviceaccount"), dict):
            raise TokenError("not a service account token")
        return claims


def _info(resource: str) -> ResourceInfo:
    info = REGISTRY.get("", "v1", resource)
    assert info is not None
    return info


async def _stored(store: Store, resource: str, namespace: str, name: str) -> Obj | None:
    kv = await store.get(_info(resource).key(namespace, name))
    return json.loads(kv.value) if kv is not None else None


TokenAuthenticate = Callable[[str], Awaitable[dict[str, Any] | None]]


def service_account_authenticator(signer: TokenSigner, store: Store, now: Callable[[], datetime]) -> TokenAuthenticate:
    """An async bearer-token authenticator for :func:`peapod.apiserver.auth.auth_middleware`."""

    async def authenticate(token: str) -> dict[str, Any] | None:
        if token.count(".") != 2:
            return None
        try:
            claims = signer.verify(token, now())
        except TokenError:
            return None
        kube = claims[KUBE_CLAIMS]
        ns = kube.get("namespace")
        sa_claim = kube["serviceaccount"]
        if not isinstance(ns, str) or not isinstance(sa_claim.get("name"), str):
            return None
        sa = await _stored(store, "serviceaccounts", ns, sa_claim["name"])
        if sa is None or sa.get("metadata", {}).get("uid") != sa_claim.get("uid"):
            return None  # the service account was deleted (or deleted and recreated)
        extra: dict[str, list[str]] = {}
        pod_claim = kube.get("pod")
        if isinstance(pod_claim, dict):
            pod = await _stored(store, "pods", ns, str(pod_claim.get("name", "")))
            meta = (pod or {}).get("metadata", {})
            if pod is None or meta.get("uid") != pod_claim.get("uid") or meta.get("deletionTimestamp"):
                return None
            extra = {
                "authentication.kubernetes.io/pod-name": [meta["name"]],
                "authentication.kubernetes.io/pod-uid": [meta["uid"]],
            }
        user = user_info(
            service_account_username(ns, sa_claim["name"]), service_account_groups(ns), uid=sa_claim.get("uid", "")
        )
        if extra:
            user["extra"] = extra
        return user

    return authenticate


TOKEN_SIGNER: web.AppKey[TokenSigner] = web.AppKey("peapod_token_signer", TokenSigner)


def install_token_signer(app: web.Application, signer: TokenSigner) -> None:
    """Serve ``serviceaccounts/<name>/token`` with ``signer`` (and give pods token volumes)."""
    from peapod.apiserver.app import CTX

    app[TOKEN_SIGNER] = signer
    app[CTX].token_signer = signer


def _invalid(name: str, errs: list[errors.FieldError]) -> errors.ApiError:
    return errors.invalid_object("authentication.k8s.io", "TokenRequest", name, errs)


async def handle_token_request(
    ctx: ApiContext, request: web.Request, info: ResourceInfo, namespace: str | None, name: str, out: Output
) -> web.Response:
    """POST serviceaccounts/<name>/token: a TokenRequest answered with a signed token."""
    from peapod.apiserver.authz import node_name
    from peapod.apiserver.handlers.common import reply, write_options
    from peapod.apiserver.handlers.write import decode_checked

    signer = request.app.get(TOKEN_SIGNER)
    if signer is None:
        raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
    ns = namespace or ""
    opts = write_options(request)
    tr = await decode_checked(request, info, opts, "authentication.k8s.io", "v1", "TokenRequest")
    spec = tr.get("spec") if isinstance(tr.get("spec"), dict) else {}
    exp = spec.get("expirationSeconds")
    if exp is None:
        exp = DEFAULT_EXPIRATION
    if not isinstance(exp, int) or isinstance(exp, bool):
        raise _invalid(name, [errors.invalid("spec.expirationSeconds", exp, "must be an integer")])
    if exp < MIN_EXPIRATION:
        raise _invalid(
            name, [errors.invalid("spec.expirationSeconds", exp, "may not specify a duration less than 10 minutes")]
        )
    if exp > MAX_EXPIRATION:
        raise _invalid(
            name, [errors.invalid("spec.expirationSeconds", exp, "may not specify a duration larger than 2^32 seconds")]
        )
    audiences = [a for a in spec.get("audiences") or [] if isinstance(a, str)] or list(signer.audiences)
    sa = await _stored(ctx.store, "serviceaccounts", ns, name)
    if sa is None:
        raise errors.not_found("", "serviceaccounts", name)
    ref = spec.get("boundObjectRef")
    pod_ref: tuple[str, str] | None = None
    pod: Obj | None = None
    if isinstance(ref, dict) and ref:
        if ref.get("kind") != "Pod" or ref.get("apiVersion", "v1") != "v1":
            raise errors.bad_request(f"cannot bind token to object of type {ref.get('kind', '')}")
        pod = await _stored(ctx.store, "pods", ns, str(ref.get("name", "")))
        if pod is None:
            raise errors.not_found("", "pods", str(ref.get("name", "")))
        pmeta = pod["metadata"]
        if ref.get("uid") and ref["uid"] != pmeta.get("uid"):
            raise errors.conflict(
                "", "pods", pmeta["name"],
                f"the UID in the bound object reference ({ref['uid']}) does not match the UID in record. "
                "The object might have been deleted and then recreated",
            )
        if ((pod.get("spec") or {}).get("serviceAccountName") or "default") != name:
            raise errors.bad_request(
                f'cannot bind token for serviceaccount "{name}" to pod running with different serviceaccount name.'
            )
        pod_ref = (pmeta["name"], pmeta["uid"])
    node = node_name(request.get("user") or {})
    if node is not None and (pod is None or (pod.get("spec") or {}).get("nodeName") != node):
        raise errors.ApiError(
            403, "Forbidden",
            f'serviceaccounts "{name}" is forbidden: node requested token not bound to a pod on node "{node}"',
        )
    # kube-apiserver's --service-account-extend-token-expiration (on by default): the kubelet's 3607 s
    # pod-bound tokens are valid for a year (a "warnafter" claim marks when they count as stale), so a
    # pod keeps a working token even where the node does not refresh it in time.
    extend = pod_ref is not None and exp == KUBELET_TOKEN_EXPIRATION and set(audiences) <= set(signer.audiences)
    token, expires = signer.issue(
        namespace=ns, name=name, sa_uid=sa["metadata"].get("uid", ""), now=ctx.clock.now(),
        expiration=EXTENDED_EXPIRATION if extend else exp, audiences=audiences, pod=pod_ref,
        warn_after=exp if extend else None,
    )
    if extend:
        expires = datetime.fromtimestamp(int(ctx.clock.now().timestamp()) + exp, UTC)
    result = {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": None},
        "spec": {"audiences": audiences, "expirationSeconds": exp, "boundObjectRef": ref or None},
        "status": {"token": token, "expirationTimestamp": rfc3339(expires)},
    }
    return reply(result, out, 201, opts.warnings)


# -- ServiceAccount admission (the kube-api-access volume) ------------------------------------------

TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"


def automounts(pod: Obj, sa: Obj | None) -> bool:
    """Pod's automountServiceAccountToken, else the ServiceAccount's, else true."""
    spec = pod.get("spec") or {}
    if isinstance(spec.get("automountServiceAccountToken"), bool):
        return bool(spec["automountServiceAccountToken"])
    if sa is not None and isinstance(sa.get("automountServiceAccountToken"), bool):
        return bool(sa["automountServiceAccountToken"])
    return True


def add_token_volume(pod: Obj, sa: Obj | None, suffix: str) -> bool:
    """Kube's ServiceAccount admission on pod create, in place: default serviceAccountName and, unless
    automount is off or a container already mounts TOKEN_MOUNT_PATH, add the projected
    ``kube-api-access-<suffix>`` volume (token, ca.crt, namespace) mounted read-only in every container.
    Returns whether the volume was added. Pods with ``spec.nodeName`` preset are treated the same."""
    spec = pod.setdefault("spec", {})
    spec.setdefault("serviceAccountName", "default")
    if not automounts(pod, sa):
        return False
    containers = [c for key in ("initContainers", "containers") for c in spec.get(key) or [] if isinstance(c, dict)]
    if any(m.get("mountPath") == TOKEN_MOUNT_PATH for c in containers for m in c.get("volumeMounts") or []):
        return False
    name = f"kube-api-access-{suffix}"
    spec.setdefault("volumes", []).append({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": KUBELET_TOKEN_EXPIRATION, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [
                    {"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}
                ]}},
            ],
        },
    })
    for c in containers:
        c.setdefault("volumeMounts", []).append({"name": name, "readOnly": True, "mountPath": TOKEN_MOUNT_PATH})
    return True


_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # kube's utilrand alphabet (no vowels, no look-alikes)


async def admit_pod(ctx: ApiContext, namespace: str, pod: Obj) -> None:
    """ServiceAccount admission of a pod create: the service account must exist (403 otherwise, as
    kube answers) and, unless automount is off, the pod gets the ``kube-api-access-<5 chars>`` volume
    (only when this server issues tokens).
    Mirror pods (``kubernetes.io/config.mirror``) are left alone."""
    meta = pod.get("metadata") or {}
    if "kubernetes.io/config.mirror" in (meta.get("annotations") or {}):
        return
    spec = pod.setdefault("spec", {})
    sa_name = spec.get("serviceAccountName") or "default"
    got = await ctx.storage.get(_info("serviceaccounts"), namespace, sa_name)
    if got is None:
        name = meta.get("name") or ""
        raise errors.ApiError(
            403, "Forbidden",
            f'pods "{name}" is forbidden: error looking up service account {namespace}/{sa_name}: '
            f'serviceaccount "{sa_name}" not found',
            {"name": name, "kind": "pods"},
        )
    if ctx.token_signer is None:
        return
    suffix = "".join(ctx.rng.choice(_SUFFIX_ALPHABET) for _ in range(5))
    add_token_volume(pod, got[0], suffix)
