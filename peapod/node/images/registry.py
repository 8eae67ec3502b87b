"""OCI distribution API client (pull and push) on aiohttp.

* HTTPS with the system CAs by default. Registries on loopback (127.0.0.0/8, ::1, ``localhost``) and
  registries listed in ``RegistryConfig.insecure_registries`` are tried over HTTPS without
  certificate checks first and then over plain HTTP, like Docker does.
* Authentication: anonymous first; on ``401`` the ``WWW-Authenticate`` challenge decides between
  ``Basic`` (credentials sent directly) and ``Bearer`` (a token from the realm, for
  ``repository:<name>:pull[,push]`` scope; cached until it expires).
* Redirects (blob storage on another host) are followed by hand so credentials never leave the
  registry host.
* Every manifest and blob is verified against its digest; blobs go straight to the content store
  through a :class:`~peapod.node.images.content.BlobWriter`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import aiohttp

from .auth import Challenge, Credentials, parse_challenges
from .content import BlobWriter, digest_bytes
from .errors import DigestMismatchError, ImageError, RegistryError, UnsupportedManifestError
from .manifest import (
    ACCEPT,
    INDEXES,
    Descriptor,
    ImageManifest,
    Platform,
    host_platform,
    media_type_of,
    parse_image_manifest,
    parse_index,
    select_platform,
)
from .reference import Reference

MAX_MANIFEST_BYTES = 4 << 20
MAX_CONFIG_BYTES = 32 << 20
_CHUNK = 1 << 20
_MAX_REDIRECTS = 5

ProgressFn = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class RegistryConfig:
    insecure_registries: tuple[str, ...] = ()
    """``host[:port]`` names or CIDRs allowed over plain HTTP (loopback always is)."""
    ca_file: str | None = None
    """Extra CA bundle for HTTPS registries (in addition to the system store)."""
    allowed_registries: tuple[str, ...] = ()
    """When set, the only hosts contacted (``host`` matches any port, ``host:port`` only that
    one); every other registry, token realm or redirect target is refused before any traffic."""
    user_agent: str = "peapod/0.1"
    connect_timeout: float = 30.0
    read_timeout: float = 300.0
    retries: int = 3


def is_allowed(host: str, config: RegistryConfig) -> bool:
    if not config.allowed_registries:
        return True
    name = _hostname(host)
    return any(a == host or a == name for a in config.allowed_registries)


def check_allowed(host: str, config: RegistryConfig) -> None:
    if not is_allowed(host, config):
        allowed = ", ".join(config.allowed_registries)
        raise RegistryError(f"registry {host} is not allowed on this node (allowed: {allowed})")


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, ``127.0.0.0/8`` and ``::1`` (``host`` may carry a port)."""
    name = _hostname(host)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[1:].split("]", 1)[0].lower()
    if host.count(":") == 1:
        return host.split(":", 1)[0].lower()
    return host.lower()


def is_insecure(host: str, config: RegistryConfig) -> bool:
    if is_loopback_host(host):
        return True
    name = _hostname(host)
    for entry in config.insecure_registries:
        if entry.lower() in (host.lower(), name):
            return True
        try:
            if ipaddress.ip_address(name) in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


@dataclass
class ResolvedImage:
    """The result of resolving a reference to one platform's image manifest."""

    manifest_digest: str
    manifest_body: bytes
    manifest: ImageManifest
    index_digest: str | None = None
    index_body: bytes | None = None
    index_media_type: str | None = None

    @property
    def repo_digest(self) -> str:
        """The digest the repository knows this pull by (the index's, for multi-arch images)."""
        return self.index_digest or self.manifest_digest


@dataclass
class _Token:
    value: str
    expires: float


@dataclass
class _HostState:
    scheme: str | None = None
    challenge: Challenge | None = None
    tokens: dict[str, _Token] = field(default_factory=dict)


def _format_error(status: int, reason: str, body: bytes) -> tuple[str, str]:
    code = ""
    detail = ""
    try:
        obj = json.loads(body)
        errors = obj.get("errors") if isinstance(obj, dict) else None
        if errors and isinstance(errors, list):
            parts = []
            for err in errors:
                if not isinstance(err, dict):
                    continue
                code = code or str(err.get("code", ""))
                msg = str(err.get("message", "")) or str(err.get("code", "")).lower()
                parts.append(f"{msg} ({err.get('code')})" if err.get("code") else msg)
            detail = "; ".join(parts)
    except (ValueError, AttributeError):
        pass
    if not detail:
        detail = body[:200].decode("utf-8", "replace").strip()
    text = f"{status} {reason}"
    return (f"{text}: {detail}" if detail else text), code


class RegistryClient:
    """One client per agent; safe to share between concurrent pulls."""

    def __init__(self, *, config: RegistryConfig | None = None,
                 session: aiohttp.ClientSession | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.config = config or RegistryConfig()
        self._session = session
        self._own_session = session is None
        self._hosts: dict[str, _HostState] = {}
        self._monotonic = monotonic
        ctx = ssl.create_default_context()
        if self.config.ca_file:
            ctx.load_verify_locations(self.config.ca_file)
        self._ssl_verify = ctx
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=None, connect=self.config.connect_timeout,
                                            sock_read=self.config.read_timeout)
            self._session = aiohttp.ClientSession(
                timeout=timeout, headers={"User-Agent": self.config.user_agent}, auto_decompress=False,
            )
        return self._session

    # -- transport ---------------------------------------------------------------------------
    def _ssl_for(self, host: str, scheme: str) -> ssl.SSLContext | bool | None:
        if scheme != "https":
            return None
        return False if is_insecure(host, self.config) else self._ssl_verify

    async def _scheme(self, host: str) -> str:
        check_allowed(host, self.config)
        state = self._hosts.setdefault(host, _HostState())
        if state.scheme:
            return state.scheme
        if not is_insecure(host, self.config):
            state.scheme = "https"
            return "https"
        session = self._get_session()
        try:
            async with session.get(f"https://{host}/v2/", ssl=False, allow_redirects=False,
                                   timeout=aiohttp.ClientTimeout(total=10)) as resp:
                await resp.read()
            state.scheme = "https"
        except (TimeoutError, aiohttp.ClientError, ssl.SSLError, OSError):
            state.scheme = "http"
        return state.scheme

    async def _send(self, method: str, url: str, host: str, *, headers: dict[str, str],
                    body: Callable[[], Any] | None) -> aiohttp.ClientResponse:
        """One request, following redirects by hand; Authorization only goes to ``host``."""
        session = self._get_session()
        for _ in range(_MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            check_allowed(parts.netloc, self.config)
            hdrs = dict(headers)
            if parts.netloc != host:
                hdrs.pop("Authorization", None)
            if parts.scheme == "http" and not is_insecure(parts.netloc, self.config):
                raise RegistryError(f"refusing plain-HTTP URL {url} for a secure registry")
            try:
                resp = await session.request(
                    method, url, headers=hdrs, data=body() if body else None, allow_redirects=False,
                    ssl=self._ssl_for(parts.netloc, parts.scheme),
                )
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                raise RegistryError(f"{method} {url}: {exc or type(exc).__name__}") from exc
            if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                location = urljoin(url, resp.headers["Location"])
                resp.release()
                if resp.status == 303:
                    method, body = "GET", None
                url = location
                continue
            return resp
        raise RegistryError(f"too many redirects for {url}")

    async def _request(self, method: str, ref: Reference, path: str, *, actions: str = "pull",
                       creds: Credentials | None = None, headers: Mapping[str, str] | None = None,
                       body: Callable[[], Any] | None = None, url: str | None = None,
                       ok: tuple[int, ...] = (200,)) -> aiohttp.ClientResponse:
        """Authenticated request to ``/v2/<repo>/<path>`` (or ``url``); raises RegistryError if not ok."""
        host = ref.api_host
        scheme = await self._scheme(host)
        if url is None:
            url = f"{scheme}://{host}/v2/{ref.repository}/{path}"
        scope = f"repository:{ref.repository}:{actions}"
        hdrs = dict(headers or {})
        for attempt in range(2):
            auth = await self._auth_header(host, scope, creds, fresh=attempt > 0)
            if auth:
                hdrs["Authorization"] = auth
            resp = await self._send(method, url, host, headers=hdrs, body=body)
            if resp.status == 401 and attempt == 0:
                challenges = parse_challenges(resp.headers.get("WWW-Authenticate", ""))
                body_bytes = await resp.read()
                resp.release()
                if not challenges:
                    msg, code = _format_error(resp.status, resp.reason or "", body_bytes)
                    raise RegistryError(msg, status=401, code=code)
                state = self._hosts.setdefault(host, _HostState())
                state.challenge = next((c for c in challenges if c.scheme == "bearer"), challenges[0])
                state.tokens.clear()
                continue
            if resp.status not in ok:
                data = await resp.read()
                resp.release()
                msg, code = _format_error(resp.status, resp.reason or "", data)
                raise RegistryError(msg, status=resp.status, code=code)
            return resp
        raise AssertionError("unreachable")

    async def _auth_header(self, host: str, scope: str, creds: Credentials | None, *,
                           fresh: bool) -> str | None:
        state = self._hosts.get(host)
        if state is None or state.challenge is None:
            return None
        if state.challenge.scheme == "basic":
            return creds.basic_header() if creds and creds.has_basic else None
        if state.challenge.scheme != "bearer":
            return None
        if creds and creds.registry_token:
            return f"Bearer {creds.registry_token}"
        key = f"{scope}|{creds.username if creds else ''}"
        token = state.tokens.get(key)
        if token and not fresh and token.expires > self._monotonic():
            return f"Bearer {token.value}"
        token = await self._fetch_token(state.challenge, scope, creds)
        state.tokens[key] = token
        return f"Bearer {token.value}"

    async def _fetch_token(self, challenge: Challenge, scope: str, creds: Credentials | None) -> _Token:
        realm = challenge.params.get("realm")
        if not realm:
            raise RegistryError("bearer challenge without a realm")
        parts = urlsplit(realm)
        if parts.scheme not in ("https", "http") or (
            parts.scheme == "http" and not is_insecure(parts.netloc, self.config)
        ):
            raise RegistryError(f"refusing token realm {realm!r}")
        check_allowed(parts.netloc, self.config)
        session = self._get_session()
        params = {"scope": scope}
        if challenge.params.get("service"):
            params["service"] = challenge.params["service"]
        headers: dict[str, str] = {}
        try:
            if creds and creds.identity_token:
                form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                        "client_id": "peapod", **params}
                resp = await session.post(realm, data=form, ssl=self._ssl_for(parts.netloc, parts.scheme))
            else:
                if creds and creds.has_basic:
                    headers["Authorization"] = creds.basic_header()
                sep = "&" if parts.query else "?"
                resp = await session.get(f"{realm}{sep}{urlencode(params)}", headers=headers,
                                         ssl=self._ssl_for(parts.netloc, parts.scheme))
            async with resp:
                data = await resp.read()
                if resp.status != 200:
                    msg, code = _format_error(resp.status, resp.reason or "", data)
                    raise RegistryError(f"token request failed: {msg}", status=resp.status, code=code)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise RegistryError(f"token request to {realm} failed: {exc}") from exc
        try:
            obj = json.loads(data)
            value = obj.get("token") or obj.get("access_token")
            expires_in = int(obj.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError) as exc:
            raise RegistryError(f"bad token response from {realm}") from exc
        if not value:
            raise RegistryError(f"token response from {realm} has no token")
        return _Token(str(value), self._monotonic() + max(expires_in - 10, 10))

    # -- pull --------------------------------------------------------------------------------
    async def get_manifest(self, ref: Reference, *, creds: Credentials | None = None,
                           reference: str | None = None) -> tuple[bytes, str, str]:
        """Fetch a manifest by tag or digest; returns (body, media type, digest), digest-verified."""
        which = reference or ref.reference
        resp = await self._request("GET", ref, f"manifests/{which}", creds=creds,
                                   headers={"Accept": ACCEPT})
        async with resp:
            if (resp.content_length or 0) > MAX_MANIFEST_BYTES:
                raise ImageError(f"manifest for {ref} is too large ({resp.content_length} bytes)")
            body = await _read_limited(resp, MAX_MANIFEST_BYTES, f"manifest for {ref}")
            header_type = resp.headers.get("Content-Type", "")
        digest = digest_bytes(body)
        if which.startswith("sha") and ":" in which and digest != which:
            raise DigestMismatchError(f"manifest digest mismatch: expected {which}, got {digest}")
        return body, media_type_of(body, header_type), digest

    async def resolve(self, ref: Reference, *, creds: Credentials | None = None,
                      platform: Platform | None = None) -> ResolvedImage:
        """Resolve ``ref`` to the image manifest for ``platform`` (default: this node's)."""
        want = platform or host_platform()
        body, media_type, digest = await self.get_manifest(ref, creds=creds)
        index: tuple[str, bytes, str] | None = None
        for _ in range(3):  # nested indexes are legal; a few levels are plenty
            if media_type not in INDEXES:
                break
            index = index or (digest, body, media_type)
            chosen = select_platform(parse_index(body), want)
            body, media_type, digest = await self.get_manifest(ref, creds=creds, reference=chosen.digest)
        else:
            raise UnsupportedManifestError(f"image index for {ref} nests too deeply")
        manifest = parse_image_manifest(body, media_type)
        return ResolvedImage(
            manifest_digest=digest, manifest_body=body, manifest=manifest,
            index_digest=index[0] if index else None, index_body=index[1] if index else None,
            index_media_type=index[2] if index else None,
        )

    async def fetch_blob_bytes(self, ref: Reference, desc: Descriptor, *, creds: Credentials | None = None,
                               limit: int = MAX_CONFIG_BYTES) -> bytes:
        """Fetch a small blob (an image config) into memory, verified."""
        if desc.size > limit:
            raise ImageError(f"blob {desc.digest} is too large ({desc.size} bytes)")
        resp = await self._request("GET", ref, f"blobs/{desc.digest}", creds=creds)
        async with resp:
            data = await _read_limited(resp, limit, f"blob {desc.digest}")
        if digest_bytes(data, desc.digest.split(":", 1)[0]) != desc.digest:
            raise DigestMismatchError(f"digest mismatch for blob {desc.digest}")
        if desc.size >= 0 and len(data) != desc.size:
            raise DigestMismatchError(f"size mismatch for blob {desc.digest}")
        return data

    async def fetch_blob(self, ref: Reference, desc: Descriptor, open_writer: Callable[[], BlobWriter], *,
                         creds: Credentials | None = None, progress: ProgressFn | None = None) -> None:
        """Stream a blob into a fresh writer from ``open_writer`` and commit it (verified).

        Transient failures are retried from the start (``RegistryConfig.retries`` attempts);
        digest mismatches are not retried.
        """
        last: Exception | None = None
        for _attempt in range(max(1, self.config.retries)):
            writer = open_writer()
            try:
                resp = await self._request("GET", ref, f"blobs/{desc.digest}", creds=creds)
                async with resp:
                    async for chunk in resp.content.iter_chunked(_CHUNK):
                        writer.write(chunk)
                        if progress:
                            progress({"digest": desc.digest, "downloaded": writer.written,
                                      "total": desc.size})
                writer.commit()
                return
            except RegistryError as exc:
                if exc.status and exc.status < 500:
                    raise
                last = exc
            except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
                last = exc
            finally:
                writer.abort()
        raise RegistryError(f"downloading {desc.digest} failed: {last}") from last

    # -- push --------------------------------------------------------------------------------
    async def blob_exists(self, ref: Reference, digest: str, *, creds: Credentials | None = None,
                          actions: str = "pull") -> bool:
        try:
            resp = await self._request("HEAD", ref, f"blobs/{digest}", creds=creds, actions=actions)
        except RegistryError as exc:
            if exc.status == 404:
                return False
            raise
        resp.release()
        return True

    async def push_blob(self, ref: Reference, digest: str, size: int, source: bytes | Path, *,
                        creds: Credentials | None = None) -> None:
        """Upload one blob with a monolithic upload (POST, then PUT with ``?digest=``)."""
        if await self.blob_exists(ref, digest, creds=creds, actions="pull,push"):
            return
        resp = await self._request("POST", ref, "blobs/uploads/", creds=creds, actions="pull,push",
                                   headers={"Content-Length": "0"}, ok=(202,))
        location = resp.headers.get("Location")
        resp.release()
        if not location:
            raise RegistryError("upload started without a Location header")
        scheme = await self._scheme(ref.api_host)
        url = urljoin(f"{scheme}://{ref.api_host}/v2/", location)
        url += ("&" if urlsplit(url).query else "?") + urlencode({"digest": digest})

        def body() -> Any:
            return source if isinstance(source, bytes) else open(source, "rb")

        resp = await self._request(
            "PUT", ref, "", url=url, creds=creds, actions="pull,push", body=body, ok=(201, 204),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )
        resp.release()

    async def push_manifest(self, ref: Reference, body: bytes, media_type: str, *,
                            creds: Credentials | None = None) -> str:
        """PUT a manifest (or index) under ``ref``'s tag or digest; returns its digest."""
        digest = digest_bytes(body)
        which = ref.digest or ref.tag or "latest"
        if ref.digest and ref.digest != digest:
            raise DigestMismatchError(f"manifest digest {digest} does not match {ref.digest}")
        resp = await self._request("PUT", ref, f"manifests/{which}", creds=creds, actions="pull,push",
                                   body=lambda: body, headers={"Content-Type": media_type}, ok=(201, 200))
        resp.release()
        return digest


async def _read_limited(resp: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    buf = bytearray()
    async for chunk in resp.content.iter_chunked(64 << 10):
        buf += chunk
        if len(buf) > limit:
            raise ImageError(f"{what} is larger than {limit} bytes")
    return bytes(buf)
