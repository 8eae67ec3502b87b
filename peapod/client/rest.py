"""An async client of the Kubernetes REST API (aiohttp), used by peapod's own components.

Errors come back as :class:`peapod.api.errors.ApiError` built from the server's Status, so
callers test ``e.code == 404`` / ``e.reason == "Conflict"`` the way client-go callers do.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from peapod.api.errors import ApiError
from peapod.api.resources import ResourceInfo, api_path

PATCH_TYPES = {
    "json": "application/json-patch+json",
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}


def _error_from(status: int, body: bytes) -> ApiError:
    try:
        data = json.loads(body)
        if isinstance(data, dict) and data.get("kind") == "Status":
            return ApiError(
                int(data.get("code") or status), data.get("reason", ""), data.get("message", ""),
                data.get("details"),
            )
    except ValueError:
        pass
    return ApiError(status, "Unknown", body.decode(errors="replace")[:500])


class ApiClient:
    def __init__(
        self, base_url: str, *, token: str | None = None, ssl_context: ssl.SSLContext | bool | None = None,
        user_agent: str = "peapod", timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"User-Agent": user_agent, "Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._ssl = ssl_context
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: Path, *, user_agent: str = "peapod") -> ApiClient:
        cfg = yaml.safe_load(Path(path).read_text())
        ctx_name = cfg.get("current-context")
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        sslctx: ssl.SSLContext | None = None
        if cluster["server"].startswith("https"):
            sslctx = ssl.create_default_context()
            if "certificate-authority-data" in cluster:
                sslctx.load_verify_locations(
                    cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
                )
            elif "certificate-authority" in cluster:
                sslctx.load_verify_locations(cafile=cluster["certificate-authority"])
            if "client-certificate-data" in user:
                with tempfile.TemporaryDirectory() as d:
                    cert, key = Path(d) / "c.pem", Path(d) / "k.pem"
                    cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
                    key.write_bytes(base64.b64decode(user["client-key-data"]))
                    sslctx.load_cert_chain(cert, key)
        return cls(cluster["server"], token=user.get("token"), ssl_context=sslctx, user_agent=user_agent)

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            conn = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True, limit=64)
            self._session = aiohttp.ClientSession(connector=conn, headers=self._headers)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None,
        content_type: str = "application/json", timeout: float | None = None,
    ) -> Any:
        sess = await self.session()
        data: bytes | None = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        q = {k: _qval(v) for k, v in (params or {}).items() if v is not None}
        async with sess.request(
            method, self.base_url + path, params=q, data=data,
            headers={"Content-Type": content_type} if data is not None else None,
            timeout=aiohttp.ClientTimeout(total=timeout or self._timeout),
        ) as resp:
            raw = await resp.read()
            if resp.status >= 400:
                raise _error_from(resp.status, raw)
            if not raw:
                return None
            if resp.content_type == "application/json":
                return json.loads(raw)
            return raw.decode(errors="replace")

    # -- verbs ----------------------------------------------------------------------------------
    async def get(self, info: ResourceInfo, name: str, namespace: str | None = None,
                  subresource: str | None = None) -> dict[str, Any]:
        return await self.request("GET", api_path(info, namespace, name, subresource))

    async def list(
        self, info: ResourceInfo, namespace: str | None = None, *, label_selector: str | None = None,
        field_selector: str | None = None, resource_version: str | None = None, limit: int | None = None,
        continue_: str | None = None,
    ) -> dict[str, Any]:
        params = {"labelSelector": label_selector, "fieldSelector": field_selector,
                  "resourceVersion": resource_version, "limit": limit, "continue": continue_}
        return await self.request("GET", api_path(info, namespace), params=params)

    async def create(self, info: ResourceInfo, obj: dict[str, Any], namespace: str | None = None,
                     *, field_manager: str | None = None) -> dict[str, Any]:
        ns = namespace or obj.get("metadata", {}).get("namespace")
        return await self.request("POST", api_path(info, ns), params={"fieldManager": field_manager},
                                  body=obj)

    async def update(self, info: ResourceInfo, obj: dict[str, Any], *, subresource: str | None = None,
                     field_manager: str | None = None) -> dict[str, Any]:
        md = obj["metadata"]
        path = api_path(info, md.get("namespace"), md["name"], subresource)
        return await self.request("PUT", path, params={"fieldManager": field_manager}, body=obj)

    async def patch(
        self, info: ResourceInfo, name: str, patch: Any, namespace: str | None = None, *,
        patch_type: str = "merge", subresource: str | None = None, field_manager: str | None = None,
        force: bool | None = None,
    ) -> dict[str, Any]:
        params = {"fieldManager": field_manager, "force": force}
        return await self.request("PATCH", api_path(info, namespace, name, subresource), params=params,
                                  body=patch, content_type=PATCH_TYPES[patch_type])

    async def delete(
        self, info: ResourceInfo, name: str, namespace: str | None = None, *,
        grace_period_seconds: int | None = None, propagation_policy: str | None = None,
        preconditions: dict[str, str] | None = None,
    ) -> Any:
        opts: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period_seconds is not None:
            opts["gracePeriodSeconds"] = grace_period_seconds
        if propagation_policy:
            opts["propagationPolicy"] = propagation_policy
        if preconditions:
            opts["preconditions"] = preconditions
        return await self.request("DELETE", api_path(info, namespace, name), body=opts)

    async def watch(
        self, info: ResourceInfo, namespace: str | None = None, *, resource_version: str | None = None,
        label_selector: str | None = None, field_selector: str | None = None,
        timeout_seconds: int | None = None, bookmarks: bool = True,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Yield (type, object) watch events until the server closes the stream."""
        params = {"watch": "true", "resourceVersion": resource_version, "labelSelector": label_selector,
                  "fieldSelector": field_selector, "timeoutSeconds": timeout_seconds,
                  "allowWatchBookmarks": "true" if bookmarks else None}
        q = {k: _qval(v) for k, v in params.items() if v is not None}
        sess = await self.session()
        async with sess.get(self.base_url + api_path(info, namespace), params=q,
                            timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as resp:
            if resp.status >= 400:
                raise _error_from(resp.status, await resp.read())
            async for line in resp.content:
                line = line.strip()
                if not line:
                    continue
                ev = json.loads(line)
                yield ev["type"], ev["object"]


def _qval(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)
