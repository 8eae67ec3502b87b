"""Authentication: bearer tokens and client certificates, as kube-apiserver does them.

Anonymous requests get 401 except for the health and version endpoints and ``/cacerts`` (the
cluster CA, which joining nodes check against the pin of their join token). An authenticated request
carries ``request["user"] = {"username": ..., "groups": [...]}`` for the handlers (managedFields,
access reviews) and for authorization.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from peapod.api.errors import unauthorized

PUBLIC_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/version", "/cacerts"})
AUTHENTICATED = "system:authenticated"
MASTERS = "system:masters"


def user_info(username: str, groups: list[str] | None = None, uid: str = "") -> dict[str, Any]:
    gs = list(groups or [])
    if AUTHENTICATED not in gs:
        gs.append(AUTHENTICATED)
    info: dict[str, Any] = {"username": username, "groups": gs}
    if uid:
        info["uid"] = uid
    return info


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass
class TokenAuthenticator:
    """Static bearer tokens, kept only as SHA-256 digests in memory."""

    _tokens: dict[bytes, dict[str, Any]] = field(default_factory=dict)

    def add(self, token: str, user: dict[str, Any]) -> None:
        self._tokens[_digest(token)] = user

    def authenticate(self, token: str) -> dict[str, Any] | None:
        d = _digest(token)
        for known, user in self._tokens.items():
            if hmac.compare_digest(known, d):
                return user
        return None


def load_or_create_token(path: Path) -> str:
    """Read a token file, creating it (0600) with a fresh random token the first time."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def _cert_user(request: web.Request) -> dict[str, Any] | None:
    """The user of a verified client certificate: CN is the name, O entries the groups."""
    transport = request.transport
    if transport is None:
        return None
    cert = transport.get_extra_info("peercert")
    if not cert:
        return None
    cn = ""
    groups: list[str] = []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                cn = value
            elif key == "organizationName":
                groups.append(value)
    return user_info(cn, groups) if cn else None


def _unauthorized_response() -> web.Response:
    err = unauthorized()
    return web.Response(
        status=401, body=json.dumps(err.status()).encode(), content_type="application/json"
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


AsyncTokenAuthenticator = Callable[[str], Awaitable[dict[str, Any] | None]]


def auth_middleware(
    authn: TokenAuthenticator, *, token_authenticators: Sequence[AsyncTokenAuthenticator] = ()
) -> Callable[[web.Request, Handler], Awaitable[Any]]:
    """Authenticate each request: static tokens, then ``token_authenticators`` (service account
    JWTs), then the client certificate."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        user = None
        header = request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            token = header[7:].strip()
            user = authn.authenticate(token)
            for extra in token_authenticators:
                if user is not None:
                    break
                user = await extra(token)
            if user is None:
                # A wrong token is refused even on public paths, as kube-apiserver does.
                return _unauthorized_response()
        if user is None:
            user = _cert_user(request)
        if user is None:
            if request.path in PUBLIC_PATHS:
                return await handler(request)
            return _unauthorized_response()
        request["user"] = user
        return await handler(request)

    return middleware
