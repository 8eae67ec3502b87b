from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509

from peapod.apiserver.auth import TokenAuthenticator, auth_middleware, load_or_create_token, user_info
from peapod.apiserver.certs import ensure_tls
from peapod.cli.datadir import DataDirBusyError, DataDirLock


def test_tls_is_created_once_with_private_keys(tmp_path: Path) -> None:
    files = ensure_tls(tmp_path / "tls", ["127.0.0.1", "localhost"])
    assert os.stat(files.ca_key).st_mode & 0o777 == 0o600
    assert os.stat(files.key).st_mode & 0o777 == 0o600
    ca_before = files.ca_cert.read_bytes()
    cert_before = files.cert.read_bytes()
    again = ensure_tls(tmp_path / "tls", ["127.0.0.1"])
    assert again.ca_cert.read_bytes() == ca_before and again.cert.read_bytes() == cert_before
    # A new address re-issues the serving cert from the same CA.
    more = ensure_tls(tmp_path / "tls", ["127.0.0.1", "10.1.2.3"])
    assert more.ca_cert.read_bytes() == ca_before and more.cert.read_bytes() != cert_before
    cert = x509.load_pem_x509_certificate(more.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(a) for a in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.1.2.3"}
    ctx = ssl.create_default_context(cafile=str(more.ca_cert))
    ctx.load_verify_locations(cafile=str(more.ca_cert))  # the CA loads as a trust anchor


def test_token_file_is_stable_and_private(tmp_path: Path) -> None:
    t1 = load_or_create_token(tmp_path / "a" / "admin.token")
    assert load_or_create_token(tmp_path / "a" / "admin.token") == t1
    assert os.stat(tmp_path / "a" / "admin.token").st_mode & 0o777 == 0o600
    assert len(t1) >= 32


async def test_middleware_refuses_anonymous_except_public_paths() -> None:
    authn = TokenAuthenticator()
    authn.add("good", user_info("admin", ["system:masters"]))

    async def who(request: web.Request) -> web.Response:
        return web.json_response(request.get("user"))

    app = web.Application(middlewares=[auth_middleware(authn)])
    app.router.add_get("/version", who)
    app.router.add_get("/api", who)
    async with TestClient(TestServer(app)) as c:
        assert (await c.get("/version")).status == 200
        r = await c.get("/api")
        assert r.status == 401
        assert (await r.json())["reason"] == "Unauthorized"
        assert (await c.get("/api", headers={"Authorization": "Bearer bad"})).status == 401
        assert (await c.get("/version", headers={"Authorization": "Bearer bad"})).status == 401
        r = await c.get("/api", headers={"Authorization": "Bearer good"})
        assert r.status == 200
        assert await r.json() == {"username": "admin", "groups": ["system:masters", "system:authenticated"]}


def test_data_dir_lock_is_exclusive(tmp_path: Path) -> None:
    a = DataDirLock(tmp_path)
    a.acquire()
    b = DataDirLock(tmp_path)
    with pytest.raises(DataDirBusyError, match=f"pid {os.getpid()}"):
        b.acquire()
    a.release()
    b.acquire()
    b.release()
