"""A real OCI registry on loopback for end-to-end tests: Debian's ``docker-registry``.

::

    with LoopbackRegistry() as reg:                       # or: async with LoopbackRegistry() as reg
        ref = reg.ref("app", "v1")                        # "127.0.0.1:<port>/app:v1"

    LoopbackRegistry(htpasswd={"alice": "s3cret"})        # HTTP basic auth (bcrypt htpasswd file)
    LoopbackRegistry(token_users={"alice": "s3cret"})     # Docker Hub style bearer tokens

The registry listens on ``127.0.0.1:<free port>`` with its storage, config and log in a temporary
directory. With ``token_users`` a small token server (a thread in this process, also on loopback)
issues RS256 JWTs that the registry verifies against a self-signed certificate (libtrust key id in
``kid``). ``stop()`` ends the registry by its PID, stops the token server and removes every file.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

REGISTRY_BINARY = "/usr/bin/docker-registry"
TOKEN_SERVICE = "peapod-test-registry"
TOKEN_ISSUER = "peapod-test-token-issuer"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def htpasswd_line(user: str, password: str) -> str:
    """A bcrypt htpasswd line (the only hash docker-registry accepts), via the ``bcrypt`` package,
    falling back to the ``htpasswd`` tool from apache2-utils."""
    try:
        import bcrypt
    except ImportError:
        htpasswd = shutil.which("htpasswd")
        if not htpasswd:
            raise RuntimeError("need the bcrypt package or apache2-utils' htpasswd") from None
        out = subprocess.run([htpasswd, "-nbB", user, password], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    return f"{user}:{hashed}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(public_der: bytes) -> str:
    """docker/libtrust's key id: base32 of the first 240 bits of sha256(SPKI DER), in groups of 4."""
    b32 = base64.b32encode(hashlib.sha256(public_der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i:i + 4] for i in range(0, len(b32), 4))


class TokenServer:
    """Issues registry bearer tokens (the Docker Hub ``/token`` flow) for known users."""

    def __init__(self, users: dict[str, str], workdir: Path, *, allow_anonymous_pull: bool = False) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.users = dict(users)
        self.allow_anonymous_pull = allow_anonymous_pull
        self.requests: list[dict[str, Any]] = []
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "peapod test token issuer")])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=2))
            .sign(self._key, hashes.SHA256())
        )
        self.cert_path = workdir / "token-ca.pem"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        spki = self._key.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = libtrust_key_id(spki)
        self.port = free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="token-server", daemon=True)

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def issue(self, subject: str, scopes: list[str]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            granted = [a for a in actions.split(",") if a and (subject or a == "pull")]
            if kind == "repository" and name:
                access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        claims = {"iss": TOKEN_ISSUER, "sub": subject, "aud": TOKEN_SERVICE, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": base64.b16encode(os.urandom(8)).decode(),
                  "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        sig = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(sig)}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                scopes = " ".join(query.get("scope", [])).split()
                user = ""
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    try:
                        u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
                    except ValueError:
                        u, p = "", None
                    if server.users.get(u) != p:
                        self._reply(401, {"details": "bad credentials"})
                        return
                    user = u
                server.requests.append({"user": user, "scope": scopes,
                                        "service": query.get("service", [""])[0]})
                if not user and not server.allow_anonymous_pull:
                    self._reply(401, {"details": "authentication required"})
                    return
                token = server.issue(user, scopes)
                self._reply(200, {"token": token, "access_token": token, "expires_in": 300,
                                  "issued_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})

            def _reply(self, status: int, obj: dict[str, Any]) -> None:
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


class LoopbackRegistry:
    """``docker-registry serve`` on 127.0.0.1 with temporary storage; see the module docstring."""

    def __init__(self, *, htpasswd: dict[str, str] | None = None,
                 token_users: dict[str, str] | None = None, allow_anonymous_pull: bool = False,
                 binary: str = REGISTRY_BINARY, startup_timeout: float = 20.0) -> None:
        if htpasswd and token_users:
            raise ValueError("choose htpasswd or token auth, not both")
        self.htpasswd = htpasswd
        self.token_users = token_users
        self.allow_anonymous_pull = allow_anonymous_pull
        self.binary = binary
        self.startup_timeout = startup_timeout
        self.port = 0
        self.workdir: Path | None = None
        self.token_server: TokenServer | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``: the registry part of image references."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def ref(self, repository: str, tag: str = "latest") -> str:
        return f"{self.host}/{repository}:{tag}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _config(self, storage: Path) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": self.host, "secret": base64.b16encode(os.urandom(16)).decode()},
        }
        assert self.workdir is not None
        if self.htpasswd:
            path = self.workdir / "htpasswd"
            path.write_text("".join(htpasswd_line(u, p) + "\n" for u, p in self.htpasswd.items()))
            cfg["auth"] = {"htpasswd": {"realm": "peapod-test", "path": str(path)}}
        if self.token_users is not None:
            self.token_server = TokenServer(self.token_users, self.workdir,
                                            allow_anonymous_pull=self.allow_anonymous_pull)
            cfg["auth"] = {"token": {"realm": self.token_server.realm, "service": TOKEN_SERVICE,
                                     "issuer": TOKEN_ISSUER,
                                     "rootcertbundle": str(self.token_server.cert_path)}}
        return cfg

    def start(self) -> LoopbackRegistry:
        if not os.path.exists(self.binary):
            raise RuntimeError(f"{self.binary} is missing: apt-get install docker-registry")
        self.workdir = Path(tempfile.mkdtemp(prefix="peapod-registry-"))
        try:
            storage = self.workdir / "storage"
            storage.mkdir()
            self.port = free_port()
            config = self.workdir / "config.yml"
            config.write_text(json.dumps(self._config(storage)))  # JSON is valid YAML
            if self.token_server:
                self.token_server.start()
            log = open(self.workdir / "registry.log", "wb")
            try:
                self._proc = subprocess.Popen([self.binary, "serve", str(config)], stdout=log, stderr=log,
                                              stdin=subprocess.DEVNULL, start_new_session=True)
            finally:
                log.close()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited ({self._proc.returncode}): {self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=2):
                    return
            except urllib.error.HTTPError as exc:  # 401 with auth enabled: it is up
                exc.close()
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        raise RuntimeError(f"docker-registry did not become ready on {self.host}: {self.log()}")

    def log(self) -> str:
        if self.workdir is None:
            return ""
        with contextlib.suppress(OSError):
            return (self.workdir / "registry.log").read_text(errors="replace")[-4000:]
        return ""

    def stop(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGTERM)
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(timeout=10)
            self._proc = None
        if self.token_server is not None:
            with contextlib.suppress(RuntimeError):
                self.token_server.stop()
            self.token_server = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> LoopbackRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> LoopbackRegistry:
        import asyncio

        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        import asyncio

        await asyncio.to_thread(self.stop)
