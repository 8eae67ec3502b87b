"""Registry credentials: ``WWW-Authenticate`` challenges and dockerconfigjson lookups.

The lookup follows kubelet's credential keyring: a key matches when its host (glob per dot-separated
label), port and path prefix match the image; longer keys are tried first.
"""

from __future__ import annotations

import base64
import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .reference import DEFAULT_REGISTRY, Reference

_HUB_HOSTS = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}


@dataclass(frozen=True)
class Credentials:
    """One set of registry credentials, as found in a ``kubernetes.io/dockerconfigjson`` secret."""

    username: str = ""
    password: str = ""
    identity_token: str = ""
    registry_token: str = ""

    def __repr__(self) -> str:  # never print secrets in logs or tracebacks
        return f"Credentials(username={self.username!r}, password=***)"

    @property
    def has_basic(self) -> bool:
        return bool(self.username or self.password)

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True)
class Challenge:
    scheme: str
    params: dict[str, str]


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN}))\s*')
_SCHEME = re.compile(rf"\s*({_TOKEN})(?:\s+|$)")


def parse_challenges(header: str) -> list[Challenge]:
    """Parse one ``WWW-Authenticate`` header value into its challenges (RFC 7235).

    Quoted values may contain commas (``scope="repository:a:pull,push"``); several challenges may
    share one header (``Basic realm="x", Bearer realm="y"``).
    """
    out: list[Challenge] = []
    pos = 0
    current: Challenge | None = None
    while pos < len(header):
        if header[pos] in ", \t":
            pos += 1
            continue
        m = _PARAM.match(header, pos)
        if m and current is not None:
            value = m.group(2) if m.group(2) is not None else m.group(3)
            current.params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
            pos = m.end()
            continue
        m = _SCHEME.match(header, pos)
        if not m:
            break
        current = Challenge(m.group(1).lower(), {})
        out.append(current)
        pos = m.end()
    return out


def _decode_entry(entry: Mapping[str, Any]) -> Credentials | None:
    user = str(entry.get("username") or "")
    password = str(entry.get("password") or "")
    auth = entry.get("auth")
    if auth and not (user or password):
        try:
            decoded = base64.b64decode(str(auth)).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        user, _, password = decoded.partition(":")
    creds = Credentials(
        username=user,
        password=password,
        identity_token=str(entry.get("identitytoken") or ""),
        registry_token=str(entry.get("registrytoken") or ""),
    )
    if not (creds.has_basic or creds.identity_token or creds.registry_token):
        return None
    return creds


def _entries(auth: Any) -> Iterable[tuple[str, Mapping[str, Any]]]:
    if auth is None:
        return
    if isinstance(auth, Credentials):
        yield "", {"username": auth.username, "password": auth.password,
                   "identitytoken": auth.identity_token, "registrytoken": auth.registry_token}
        return
    if isinstance(auth, list | tuple):
        for item in auth:
            yield from _entries(item)
        return
    if not isinstance(auth, Mapping):
        return
    if "auths" in auth and isinstance(auth["auths"], Mapping):
        for key, entry in auth["auths"].items():
            if isinstance(entry, Mapping):
                yield str(key), entry
        return
    if any(k in auth for k in ("username", "password", "auth", "identitytoken", "registrytoken")):
        yield "", auth  # a bare credential: applies to every registry
        return
    for key, entry in auth.items():  # legacy ~/.dockercfg: registry -> entry
        if isinstance(entry, Mapping):
            yield str(key), entry


def _parse_key(key: str) -> tuple[str, str, str]:
    """Split a keyring key into (host glob, port, path prefix)."""
    url = key if "://" in key else f"https://{key}"
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        port = str(parts.port or "")
    except ValueError:
        port = ""
    path = parts.path.strip("/")
    if host in _HUB_HOSTS:
        host = DEFAULT_REGISTRY
        if path in ("v1", "v2"):
            path = ""
    return host, port, path


def _host_matches(pattern: str, host: str) -> bool:
    p_labels, h_labels = pattern.split("."), host.split(".")
    if len(p_labels) != len(h_labels):
        return False
    return all(fnmatch.fnmatchcase(h, p) for p, h in zip(p_labels, h_labels, strict=True))


def credentials_for(ref: Reference, auth: Any) -> list[Credentials]:
    """All credentials in ``auth`` that apply to ``ref``, most specific first.

    ``auth`` may be a dockerconfigjson dict (``{"auths": {...}}``), a legacy dockercfg dict, a bare
    ``{"username", "password"}`` dict, a :class:`Credentials`, or a list of any of these (one entry
    per ``imagePullSecret``).
    """
    host, _, port = ref.registry.rpartition(":") if ref.registry.count(":") == 1 else (ref.registry, "", "")
    if not host:
        host, port = ref.registry, ""
    host = host.lower().strip("[]")
    scored: list[tuple[int, int, Credentials]] = []
    for order, (key, entry) in enumerate(_entries(auth)):
        creds = _decode_entry(entry)
        if creds is None:
            continue
        if key:
            k_host, k_port, k_path = _parse_key(key)
            if not _host_matches(k_host, host) or (k_port and k_port != port) or (not k_port and port):
                continue
            if k_path and not (ref.repository == k_path or ref.repository.startswith(k_path + "/")):
                continue
            specificity = len(key)
        else:
            specificity = 0
        scored.append((-specificity, order, creds))
    scored.sort(key=lambda t: (t[0], t[1]))
    seen: list[Credentials] = []
    for _, _, creds in scored:
        if creds not in seen:
            seen.append(creds)
    return seen
