"""An in-process fake OCI registry on loopback (aiohttp) with switchable auth and faults."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from peapod.testing.images import BuiltImage, BuiltIndex


@dataclass
class FakeRegistry:
    auth: str | None = None  # None | "basic" | "bearer"
    users: dict[str, str] = field(default_factory=dict)
    manifests: dict[tuple[str, str], tuple[bytes, str]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    corrupt_blobs: set[str] = field(default_factory=set)
    redirect_blobs: bool = False
    fail_status: dict[str, int] = field(default_factory=dict)  # path substring -> status
    uploads: dict[str, bytearray] = field(default_factory=dict)
    server: TestServer | None = None

    @property
    def host(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.port}"

    def ref(self, repo: str, tag: str = "latest") -> str:
        return f"{self.host}/{repo}:{tag}"

    def add(self, repo: str, tag: str, item: BuiltImage | BuiltIndex) -> None:
        if isinstance(item, BuiltIndex):
            for img in item.images:
                self.add(repo, img.manifest_digest, img)
            self.manifests[(repo, tag)] = (item.index, item.media_type)
            self.manifests[(repo, item.digest)] = (item.index, item.media_type)
            return
        self.manifests[(repo, tag)] = (item.manifest, item.media_type)
        self.manifests[(repo, item.manifest_digest)] = (item.manifest, item.media_type)
        for digest, data in item.blobs().items():
            if digest != item.manifest_digest:
                self.blobs[digest] = data

    # -- auth ----------------------------------------------------------------------------------
    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if self.auth == "basic":
            if not header.startswith("Basic "):
                return False
            user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
            return self.users.get(user) == pw
        if self.auth == "bearer":
            return header.startswith("Bearer tok-")
        return True

    def _challenge(self, request: web.Request) -> web.Response:
        if self.auth == "basic":
            value = 'Basic realm="fake"'
        else:
            repo = request.match_info.get("repo", "")
            value = (f'Bearer realm="http://{self.host}/token",service="fake-registry",'
                     f'scope="repository:{repo}:pull,push"')
        body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]})
        return web.Response(status=401, text=body, headers={"WWW-Authenticate": value},
                            content_type="application/json")

    async def token(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        user = ""
        if header.startswith("Basic "):
            user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
            if self.users.get(user) != pw:
                return web.json_response({"details": "bad creds"}, status=401)
        self.token_requests.append({"user": user, "scope": request.query.get("scope"),
                                    "service": request.query.get("service")})
        if self.users and not user:
            return web.json_response({"details": "login required"}, status=401)
        return web.json_response({"token": f"tok-{user}", "expires_in": 300})

    # -- API -----------------------------------------------------------------------------------
    def _record(self, request: web.Request) -> web.Response | None:
        self.requests.append({"method": request.method, "path": request.path,
                              "auth": request.headers.get("Authorization")})
        for needle, status in self.fail_status.items():
            if needle in request.path:
                return web.json_response(
                    {"errors": [{"code": "DENIED", "message": f"injected failure {status}"}]}, status=status)
        if not self._authorized(request):
            return self._challenge(request)
        return None

    async def base(self, request: web.Request) -> web.Response:
        return self._record(request) or web.json_response({})

    async def manifest(self, request: web.Request) -> web.Response:
        if (early := self._record(request)) is not None:
            return early
        repo, ref = request.match_info["repo"], request.match_info["ref"]
        if request.method == "PUT":
            body = await request.read()
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            ctype = request.headers.get("Content-Type", "")
            self.manifests[(repo, ref)] = (body, ctype)
            self.manifests[(repo, digest)] = (body, ctype)
            return web.Response(status=201, headers={"Docker-Content-Digest": digest})
        found = self.manifests.get((repo, ref))
        if found is None:
            return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown",
                                                  "detail": {"Tag": ref}}]}, status=404)
        body, ctype = found
        return web.Response(body=body, headers={"Content-Type": ctype})

    async def blob(self, request: web.Request) -> web.Response:
        if (early := self._record(request)) is not None:
            return early
        digest = request.match_info["digest"]
        data = self.blobs.get(digest)
        if data is None:
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN", "message": "blob unknown"}]},
                                     status=404)
        if request.method == "HEAD":
            return web.Response(headers={"Content-Length": str(len(data))})
        if self.redirect_blobs:  # another host name for the same server: credentials must not follow
            raise web.HTTPTemporaryRedirect(f"http://localhost:{self.server.port}/storage/{digest}")  # type: ignore[union-attr]
        if digest in self.corrupt_blobs:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        return web.Response(body=data)

    async def storage(self, request: web.Request) -> web.Response:
        self.requests.append({"method": request.method, "path": request.path,
                              "auth": request.headers.get("Authorization")})
        return web.Response(body=self.blobs[request.match_info["digest"]])

    async def start_upload(self, request: web.Request) -> web.Response:
        if (early := self._record(request)) is not None:
            return early
        uid = f"u{len(self.uploads)}"
        self.uploads[uid] = bytearray()
        location = f"/v2/{request.match_info['repo']}/blobs/uploads/{uid}"
        return web.Response(status=202, headers={"Location": location})

    async def finish_upload(self, request: web.Request) -> web.Response:
        if (early := self._record(request)) is not None:
            return early
        data = await request.read()
        digest = request.query["digest"]
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            return web.json_response({"errors": [{"code": "DIGEST_INVALID", "message": "digest invalid"}]},
                                     status=400)
        self.blobs[digest] = data
        return web.Response(status=201)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 << 20)
        repo = r"{repo:[a-z0-9._/-]+?}"
        app.router.add_get("/v2/", self.base)
        app.router.add_get("/token", self.token)
        app.router.add_route("*", f"/v2/{repo}/manifests/{{ref}}", self.manifest)
        app.router.add_post(f"/v2/{repo}/blobs/uploads/", self.start_upload)
        app.router.add_put(f"/v2/{repo}/blobs/uploads/{{uid}}", self.finish_upload)
        app.router.add_route("*", f"/v2/{repo}/blobs/{{digest}}", self.blob)
        app.router.add_get("/storage/{digest}", self.storage)
        return app


@pytest.fixture
async def fake_registry() -> AsyncIterator[FakeRegistry]:
    reg = FakeRegistry()
    reg.server = TestServer(reg.app(), host="127.0.0.1")
    await reg.server.start_server()
    try:
        yield reg
    finally:
        await reg.server.close()
