"""A minimal HTTP/1.1 GET client over netns sockets (h11 parses), with kubelet's redirect rules.

Like kubelet's prober transport: keep-alives off (``Connection: close``), TLS without verification,
at most 10 redirects, and a redirect to another hostname is not followed: that 3xx response is the
result. The whole exchange, redirects included, is bounded by one timeout (Go's Client.Timeout).
Errors read like Go's: ``Get "http://10.0.0.5:8080/healthz": dial tcp 10.0.0.5:8080: connect:
connection refused``.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import h11

from peapod.node.netns import NetnsSocketFactory, connect_in_netns
from peapod.node.probes.types import MAX_OUTPUT
from peapod.node.probes.util import dial_error, errno_text, join_host_port

REDIRECT_CODES = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 10
_READ = 64 * 1024


class HttpError(Exception):
    """The request failed; ``str()`` is Go's client error text."""

    def __init__(self, message: str, *, http_response_to_https: bool = False) -> None:
        super().__init__(message)
        self.http_response_to_https = http_response_to_https


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes
    url: str  # the URL that produced this response (after redirects)
    redirected_away: bool = False  # a 3xx to another host, not followed


@functools.cache
def insecure_tls_context() -> ssl.SSLContext:
    """kubelet probes with InsecureSkipVerify; HTTP/1.1 only (we don't speak h2 here)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def canonical_header(name: str) -> str:
    """Go's CanonicalMIMEHeaderKey: "x-custom-header" -> "X-Custom-Header"."""
    if not name or any(c in name for c in " \t\r\n:"):
        return name
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def format_url(scheme: str, host: str, port: int, path: str) -> str:
    """kubelet's formatURL: scheme://host:port + path (a path without "/" gets one)."""
    if path and not path.startswith("/"):
        path = "/" + path
    return f"{scheme}://{join_host_port(host, port)}{path}"


def _build_headers(
    host_header: str, headers: Iterable[tuple[str, str]], user_agent: str,
) -> list[tuple[str, str]]:
    given: dict[str, list[str]] = {}
    for name, value in headers:
        given.setdefault(canonical_header(name), []).append(value)
    out = [("Host", host_header)]
    ua = given.pop("User-Agent", None)
    if ua is None:
        out.append(("User-Agent", user_agent))
    elif ua[0]:
        out.append(("User-Agent", ua[0]))
    accept = given.pop("Accept", None)
    if accept is None:
        out.append(("Accept", "*/*"))
    elif accept[0]:
        out += [("Accept", v) for v in accept]
    given.pop("Host", None)
    given.pop("Connection", None)
    for name in sorted(given):
        out += [(name, v) for v in given[name]]
    out.append(("Connection", "close"))
    return out


class _Exchange:
    """One request on one connection; ``phase`` tells where a timeout hit."""

    def __init__(self) -> None:
        self.phase = "dial"

    async def run(
        self, url: str, headers: list[tuple[str, str]], netns_path: str | None, max_body: int,
        factory: NetnsSocketFactory | None,
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        u = urlsplit(url)
        host = u.hostname or ""
        port = u.port or (443 if u.scheme == "https" else 80)
        tls = insecure_tls_context() if u.scheme == "https" else None
        try:
            reader, writer = await connect_in_netns(netns_path, host, port, None, ssl=tls, factory=factory)
        except ssl.SSLError as e:
            if e.reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST"):
                raise HttpError("http: server gave HTTP response to HTTPS client",
                                http_response_to_https=True) from None
            raise HttpError(f"tls: {e.reason or e}") from None
        except (OSError, asyncio.IncompleteReadError) as e:
            raise HttpError(dial_error(host, port, e)) from None
        self.phase = "headers"
        try:
            return await self._talk(reader, writer, u, headers, max_body)
        finally:
            writer.close()

    async def _talk(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, u, headers, max_body: int,
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = h11.Connection(h11.CLIENT)
        target = (u.path or "/") + (f"?{u.query}" if u.query else "")
        try:
            writer.write(conn.send(h11.Request(method="GET", target=target, headers=headers))
                         + conn.send(h11.EndOfMessage()))
        except h11.LocalProtocolError as e:
            raise HttpError(f"net/http: invalid request: {e}") from None
        status = 0
        resp_headers: list[tuple[str, str]] = []
        body = bytearray()
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as e:
                raise HttpError(f"net/http: HTTP/1.x transport connection broken: {e}") from None
            if event is h11.NEED_DATA:
                try:
                    data = await reader.read(_READ)
                except OSError as e:
                    raise HttpError(f"read: {errno_text(e)}") from None
                if not data and status == 0:
                    raise HttpError("EOF")
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                resp_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers]
                self.phase = "body"
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) >= max_body:
                    del body[max_body:]
                    break
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        return status, resp_headers, bytes(body)


async def http_get(
    url: str,
    *,
    headers: Sequence[tuple[str, str]] = (),
    timeout: float | None,
    netns_path: str | None = None,
    user_agent: str,
    max_body: int = MAX_OUTPUT,
    factory: NetnsSocketFactory | None = None,
) -> HttpResponse:
    """GET ``url`` from inside ``netns_path`` following same-host redirects; raises HttpError."""
    first_host = urlsplit(url).hostname
    host_override = next((v for k, v in headers if canonical_header(k) == "Host"), "")
    current = url
    exchange = _Exchange()
    via = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                u = urlsplit(current)
                if u.scheme not in ("http", "https"):
                    raise HttpError(f'unsupported protocol scheme "{u.scheme}"')
                host_header = host_override or u.netloc.rsplit("@", 1)[-1]
                req_headers = _build_headers(host_header, headers, user_agent)
                exchange = _Exchange()
                status, resp_headers, body = await exchange.run(
                    current, req_headers, netns_path, max_body, factory,
                )
                location = next((v for k, v in resp_headers if k.lower() == "location"), None)
                if status not in REDIRECT_CODES or location is None:
                    return HttpResponse(status, body, current)
                target = urljoin(current, location)
                if urlsplit(target).hostname != first_host:
                    return HttpResponse(status, body, current, redirected_away=True)
                via += 1
                if urlsplit(location).netloc:  # absolute: Go drops a custom Host header
                    host_override = ""
                current = target
                if via >= MAX_REDIRECTS:
                    raise HttpError("stopped after 10 redirects")
    except HttpError as e:
        raise HttpError(f'Get "{current}": {e}', http_response_to_https=e.http_response_to_https) from None
    except TimeoutError:
        if exchange.phase == "dial":
            u = urlsplit(current)
            msg = dial_error(u.hostname or "", u.port or 80, TimeoutError()) + \
                " (Client.Timeout exceeded while awaiting headers)"
        elif exchange.phase == "headers":
            msg = "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        else:
            msg = "context deadline exceeded (Client.Timeout or context cancellation while reading body)"
        raise HttpError(f'Get "{current}": {msg}') from None
