"""Real kubectl binaries against a stub server that serves only our discovery and OpenAPI documents.

Checks what matters to users: ``kubectl explain`` works, ``create -f``/``apply -f`` with the default
``--validate=strict`` hand validation to the server (``fieldValidation=Strict``), ``api-resources``
understands our discovery (aggregated v2, v2beta1 and legacy), and the protobuf bodies kubectl 1.32+
sends decode to what the JSON API would have received.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from aiohttp import web

from peapod.api.errors import ApiError
from peapod.apiserver import discovery, openapi
from peapod.apiserver.protobuf import CONTENT_TYPE as PROTOBUF
from peapod.apiserver.protobuf import decode_protobuf

KUBECTL_DIR = Path("/usr/lib/google-cloud-sdk/bin")
pytestmark = pytest.mark.skipif(
    not (KUBECTL_DIR / "kubectl.1.33").exists(), reason="kubectl binaries missing"
)

EXISTING_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "p1",
        "namespace": "default",
        "resourceVersion": "5",
        "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": "p1", "namespace": "default"},
                    "spec": {"containers": [{"name": "a", "image": "busybox"}]},
                }
            )
        },
    },
    "spec": {"containers": [{"name": "a", "image": "busybox"}]},
}
POD_YAML = """apiVersion: v1
kind: Pod
metadata: {name: p1}
spec:
  containers: [{name: a, image: "busybox:2", bogus: 1}]
"""


class Stub:
    def __init__(self, *, aggregated: bool) -> None:
        self.aggregated = aggregated
        self.requests: list[dict] = []

    def _status(self, code: int, reason: str, message: str) -> web.Response:
        return web.json_response(ApiError(code, reason, message).status(), status=code)

    async def handle(self, req: web.Request) -> web.StreamResponse:
        body = await req.read()
        rec = {
            "method": req.method,
            "path": req.path,
            "query": dict(req.query),
            "accept": req.headers.get("Accept", ""),
            "content_type": req.headers.get("Content-Type", ""),
            "body": body,
        }
        self.requests.append(rec)
        p = req.path
        if p == "/version":
            return web.json_response({"major": "1", "minor": "33", "gitVersion": "v1.33.0"})
        if p in ("/api", "/apis"):
            version, ctype = discovery.negotiate_discovery(req.headers.get("Accept"))
            if version and self.aggregated:
                doc = discovery.aggregated_discovery(p == "/api", version)
                return web.Response(body=json.dumps(doc).encode(), headers={"Content-Type": ctype})
            return web.json_response(
                discovery.api_versions("127.0.0.1") if p == "/api" else discovery.api_group_list()
            )
        parts = p.strip("/").split("/")
        if (parts[0] == "api" and len(parts) == 2) or (parts[0] == "apis" and len(parts) == 3):
            doc = discovery.api_resource_list(*(["", parts[1]] if parts[0] == "api" else parts[1:]))
            if doc:
                return web.json_response(doc)
        if p == "/openapi/v2":
            if openapi.wants_v2_protobuf(req.headers.get("Accept")):
                return web.Response(
                    body=openapi.openapi_v2_protobuf(),
                    headers={"Content-Type": openapi.V2_PROTOBUF_CONTENT_TYPE},
                )
            return web.Response(body=openapi.openapi_v2(), content_type="application/json")
        if p == "/openapi/v3":
            return web.json_response(openapi.openapi_v3_index())
        if p.startswith("/openapi/v3/"):
            doc = openapi.openapi_v3_document(p[len("/openapi/v3/") :])
            if doc is not None:
                return web.Response(body=doc, content_type="application/json")
        if req.method == "GET" and p == "/api/v1/namespaces/default/pods/p1":
            return web.json_response(EXISTING_POD)
        if req.method in ("POST", "PATCH"):
            if rec["content_type"].startswith(PROTOBUF):
                try:
                    obj = decode_protobuf(body)
                except ApiError as e:
                    return web.json_response(e.status(), status=e.code)
            else:
                obj = json.loads(body)
            rec["decoded"] = obj
            if req.method == "PATCH":
                return web.json_response(EXISTING_POD)
            obj = {
                **obj,
                "metadata": {**obj.get("metadata", {}), "resourceVersion": "1", "namespace": "default"},
            }
            if obj.get("kind") == "SelfSubjectAccessReview":
                obj["status"] = {"allowed": True}
            if obj.get("kind") == "TokenRequest":
                obj["status"] = {"token": "tok", "expirationTimestamp": "2030-01-01T00:00:00Z"}
            return web.json_response(obj, status=201)
        return self._status(404, "NotFound", "the server could not find the requested resource")


@pytest.fixture
async def server(request):
    stub = Stub(aggregated=getattr(request, "param", True))
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", stub.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    stub.url = f"http://127.0.0.1:{port}"
    try:
        yield stub
    finally:
        await runner.cleanup()


async def kubectl(
    stub: Stub, minor: int, tmp_path: Path, *args: str, stdin: str | None = None
) -> tuple[int, str]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    proc = await asyncio.create_subprocess_exec(
        str(KUBECTL_DIR / f"kubectl.1.{minor}"),
        "--server",
        stub.url,
        "--cache-dir",
        str(tmp_path / "cache"),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode, out.decode()


@pytest.mark.parametrize("minor", [27, 30, 33])
async def test_explain(server, tmp_path, minor):
    rc, out = await kubectl(server, minor, tmp_path, "explain", "pods.spec.containers")
    assert rc == 0, out
    assert "KIND:       Pod" in out and "FIELD: containers <[]Container>" in out
    assert "imagePullPolicy\t<string>" in out and "ports\t<[]ContainerPort>" in out
    rc, out = await kubectl(
        server, minor, tmp_path, "explain", "deployment.spec.strategy.rollingUpdate.maxSurge"
    )
    assert rc == 0, out
    assert "GROUP:      apps" in out and "<IntOrString>" in out
    assert any(r["path"].startswith("/openapi/v3/api") for r in server.requests)


@pytest.mark.parametrize("minor", [27, 29, 33])
async def test_create_and_apply_validate_on_server(server, tmp_path, minor):
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(POD_YAML)
    rc, out = await kubectl(server, minor, tmp_path, "create", "-f", str(manifest))
    assert rc == 0, out
    post = next(r for r in server.requests if r["method"] == "POST")
    assert post["query"].get("fieldValidation") == "Strict"
    assert post["decoded"]["spec"]["containers"][0]["bogus"] == 1  # left for the server to reject
    if minor >= 29:
        # v3's patch operation declared fieldValidation, so kubectl did not fall back to /openapi/v2
        assert not any(r["path"] == "/openapi/v2" for r in server.requests)
    rc, out = await kubectl(server, minor, tmp_path, "apply", "-f", str(manifest))
    assert rc == 0, out
    patch = next(r for r in server.requests if r["method"] == "PATCH")
    assert patch["content_type"].startswith("application/strategic-merge-patch+json")
    assert patch["query"].get("fieldValidation") == "Strict"
    assert "$setElementOrder/containers" in patch["decoded"]["spec"]


@pytest.mark.parametrize("server", [True, False], indirect=True, ids=["aggregated", "legacy"])
@pytest.mark.parametrize("minor", [27, 33])
async def test_api_resources(server, tmp_path, minor):
    rc, out = await kubectl(server, minor, tmp_path, "api-resources", "--no-headers")
    assert rc == 0, out
    lines: dict[str, list[str]] = {}
    for line in out.splitlines():
        if line.strip():  # the first line of a name: core pods/nodes, not metrics.k8s.io's
            lines.setdefault(line.split()[0], line.split())
    assert lines["pods"] == ["pods", "po", "v1", "true", "Pod"]
    assert lines["deployments"] == ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    assert lines["leases"] == ["leases", "coordination.k8s.io/v1", "true", "Lease"]
    assert lines["nodes"][-2:] == ["false", "Node"]
    api = next(r for r in server.requests if r["path"] == "/api")
    if server.aggregated:
        assert not any(r["path"] == "/api/v1" for r in server.requests)  # aggregated answer was understood
    assert "apidiscovery.k8s.io" in api["accept"]


async def test_protobuf_bodies_from_kubectl_133(server, tmp_path):
    cases = [
        (
            ["create", "namespace", "ns1"],
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns1"}},
        ),
        (
            ["create", "configmap", "cm1", "--from-literal=a=b"],
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm1"}, "data": {"a": "b"}},
        ),
        (
            ["create", "secret", "generic", "s1", "--from-literal=u=p", "--type=Opaque"],
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "s1"},
                "data": {"u": "cA=="},
                "type": "Opaque",
            },
        ),
        (
            ["create", "deployment", "d1", "--image=nginx:1", "--port=80", "--replicas=2"],
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "d1", "labels": {"app": "d1"}},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "d1"}},
                    "template": {
                        "metadata": {"labels": {"app": "d1"}},
                        "spec": {
                            "containers": [
                                {"name": "nginx", "image": "nginx:1", "ports": [{"containerPort": 80}]}
                            ]
                        },
                    },
                },
            },
        ),
        (
            ["create", "service", "clusterip", "svc1", "--tcp=80:8080"],
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "svc1", "labels": {"app": "svc1"}},
                "spec": {
                    "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                    "selector": {"app": "svc1"},
                    "type": "ClusterIP",
                },
            },
        ),
        (
            ["create", "job", "j1", "--image=busybox", "--", "echo", "hi"],
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": "j1"},
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [{"name": "j1", "image": "busybox", "command": ["echo", "hi"]}],
                            "restartPolicy": "Never",
                        }
                    }
                },
            },
        ),
        (
            ["auth", "can-i", "get", "pods"],
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {"namespace": "default", "verb": "get", "resource": "pods"}},
            },
        ),
        (
            ["create", "token", "default", "--duration=1h"],
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 3600},
            },
        ),
    ]
    for args, expected in cases:
        server.requests.clear()
        rc, out = await kubectl(server, 33, tmp_path, *args)
        assert rc == 0, (args, out)
        post = next(r for r in server.requests if r["method"] == "POST")
        assert post["content_type"].startswith(PROTOBUF), args
        assert post["decoded"] == expected, args
