"""RBAC, access reviews and service account tokens on the in-process API server with the real
authentication and authorization middlewares (as ``peapod server`` wires them)."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from peapod.apiserver.app import build_app
from peapod.apiserver.auth import MASTERS, TokenAuthenticator, auth_middleware, user_info
from peapod.apiserver.authz import Authorizer, authz_middleware, install_authorizer
from peapod.apiserver.bootstrap import bootstrap
from peapod.apiserver.serviceaccounts import (
    TokenSigner,
    install_token_signer,
    load_or_create_signing_key,
    service_account_authenticator,
)
from peapod.clock import RealClock
from peapod.store.sqlite import SQLiteStore
from peapod.testing.waiting import eventually
from tests.integration.conftest import ServerThread
from tests.integration.helpers import Resp, call, pod

RBAC = "/apis/rbac.authorization.k8s.io/v1"
SSAR = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
SSRR = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews"

TOKENS = {
    "admin": user_info("admin", [MASTERS]),
    "alice": user_info("alice"),
    "bob": user_info("bob", ["devs"]),
    "node1": user_info("system:node:n1", ["system:nodes"]),
}


class SecureServer(ServerThread):
    """ServerThread with static tokens, service account tokens and the authorizer installed."""

    async def _start(self) -> None:
        self.store = await SQLiteStore.open(self.data_dir / "state.db")
        clock = RealClock()
        await bootstrap(self.store, clock)
        authn = TokenAuthenticator()
        for token, user in TOKENS.items():
            authn.add(token, user)
        signer = TokenSigner(load_or_create_signing_key(self.data_dir / "sa.key"))
        self.signer = signer
        authorizer = Authorizer(self.store)
        self.app = build_app(
            store=self.store,
            clock=clock,
            middlewares=[
                auth_middleware(
                    authn, token_authenticators=[service_account_authenticator(signer, self.store, clock.now)]
                ),
                authz_middleware(authorizer),
            ],
        )
        install_authorizer(self.app, authorizer)
        install_token_signer(self.app, signer)
        self.runner = web.AppRunner(self.app, shutdown_timeout=2)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[SecureServer]:
    srv = SecureServer(tmp_path)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
async def as_user(secure: SecureServer) -> Any:
    sessions: list[aiohttp.ClientSession] = []

    def make(token: str) -> Callable[..., Awaitable[Resp]]:
        s = aiohttp.ClientSession(base_url=secure.url, headers={"Authorization": f"Bearer {token}"})
        sessions.append(s)

        async def do(method: str, path: str, body: Any = None, **kw: Any) -> Resp:
            return await call(s, method, path, body, **kw)

        return do

    yield make
    for s in sessions:
        await s.close()


def role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name}, "rules": rules}


def binding(
    name: str, kind: str, role_name: str, subjects: list[dict[str, Any]], cluster: bool = False
) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding" if cluster else "RoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role_name},
        "subjects": subjects,
    }


async def make_ns(admin: Any, name: str) -> None:
    r = await admin("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert r.status == 201, r


async def can(user: Any, verb: str, resource: str, namespace: str = "", **extra: str) -> bool:
    attrs = {"verb": verb, "resource": resource, "namespace": namespace, **extra}
    r = await user("POST", SSAR, {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                                  "spec": {"resourceAttributes": attrs}})
    assert r.status == 201, r
    return bool(r.json["status"]["allowed"])


async def test_default_roles_and_bindings_exist(as_user: Any) -> None:
    admin = as_user("admin")
    r = await admin("GET", f"{RBAC}/clusterroles")
    names = {i["metadata"]["name"] for i in r.json["items"]}
    assert {"cluster-admin", "admin", "edit", "view", "system:basic-user", "system:discovery",
            "system:public-info-viewer"} <= names
    r = await admin("GET", f"{RBAC}/clusterrolebindings/cluster-admin")
    assert r.json["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters"}]


async def test_plain_user_is_forbidden_but_may_discover(as_user: Any) -> None:
    alice = as_user("alice")
    r = await alice("GET", "/api/v1/namespaces/default/pods")
    assert r.status == 403, r
    assert r.json["reason"] == "Forbidden"
    assert r.json["message"] == (
        'pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default"'
    )
    assert r.json["details"] == {"kind": "pods"}
    r = await alice("GET", "/api/v1/namespaces/default/pods/x/log")
    assert r.json["message"] == (
        'pods "x" is forbidden: User "alice" cannot get resource "pods/log" in API group "" in the namespace "default"'
    )
    r = await alice("GET", "/api/v1/nodes")
    assert r.json["message"].endswith('cannot list resource "nodes" in API group "" at the cluster scope')
    for path in ("/api", "/apis", "/api/v1", "/apis/apps/v1", "/version", "/openapi/v3", "/healthz"):
        r = await alice("GET", path)
        assert r.status == 200, (path, r)
    r = await alice("GET", "/metrics")
    assert r.status == 403 and r.json["message"] == 'forbidden: User "alice" cannot get path "/metrics"'


async def test_role_and_binding_grant_in_their_namespace_only(as_user: Any) -> None:
    admin, alice = as_user("admin"), as_user("alice")
    await make_ns(admin, "team")
    r = await admin("POST", f"{RBAC}/namespaces/team/roles",
                    role("pod-reader", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]))
    assert r.status == 201, r
    assert not await can(alice, "list", "pods", "team")
    r = await admin("POST", f"{RBAC}/namespaces/team/rolebindings",
                    binding("alice-reads", "Role", "pod-reader", [{"kind": "User", "name": "alice"}]))
    assert r.status == 201, r
    # User subjects get the rbac group by default.
    assert r.json["subjects"][0]["apiGroup"] == "rbac.authorization.k8s.io"

    async def listed() -> bool:
        return (await alice("GET", "/api/v1/namespaces/team/pods")).status == 200

    await eventually(listed)
    assert (await alice("GET", "/api/v1/namespaces/default/pods")).status == 403
    assert (await alice("GET", "/api/v1/namespaces/team/pods/x/log")).status == 403  # pods/log not granted
    assert (await alice("POST", "/api/v1/namespaces/team/pods", pod("p"))).status == 403
    assert (await alice("GET", "/api/v1/namespaces/team/pods?watch=true&timeoutSeconds=1")).status == 403
    assert await can(alice, "get", "pods", "team")
    assert not await can(alice, "get", "pods", "default")
    r = await alice("POST", SSAR, {"spec": {"resourceAttributes": {"verb": "list", "resource": "pods",
                                                                     "namespace": "team"}}})
    assert r.json["status"]["reason"] == (
        'RBAC: allowed by RoleBinding "alice-reads/team" of Role "pod-reader" to User "alice"'
    )
    # SelfSubjectRulesReview lists what alice holds there.
    r = await alice("POST", SSRR, {"spec": {"namespace": "team"}})
    assert r.status == 201, r
    assert {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]} in r.json["status"]["resourceRules"]

    # Deleting the binding takes the grant away again.
    r = await admin("DELETE", f"{RBAC}/namespaces/team/rolebindings/alice-reads")
    assert r.status == 200, r

    async def refused() -> bool:
        return (await alice("GET", "/api/v1/namespaces/team/pods")).status == 403

    await eventually(refused)


async def test_cluster_role_binding_to_group_and_resource_names(as_user: Any) -> None:
    admin, bob = as_user("admin"), as_user("bob")
    r = await admin("POST", f"{RBAC}/clusterrolebindings",
                    binding("devs-view", "ClusterRole", "view", [{"kind": "Group", "name": "devs"}], cluster=True))
    assert r.status == 201, r
    await eventually(lambda: can(bob, "list", "pods", "kube-system"))
    assert not await can(bob, "get", "secrets", "default")
    assert not await can(bob, "create", "pods", "default")
    # A Role limited to one secret by name (view has no secrets): get it, not others, and no list.
    r = await admin("POST", "/api/v1/namespaces/default/secrets", {"metadata": {"name": "cfg"}, "data": {"a": "MQ=="}})
    assert r.status == 201
    r = await admin("POST", f"{RBAC}/namespaces/default/roles",
                    role("one-cm", [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["cfg"],
                                     "verbs": ["get"]}]))
    assert r.status == 201, r
    r = await admin("POST", f"{RBAC}/namespaces/default/rolebindings",
                    binding("bob-cm", "Role", "one-cm", [{"kind": "User", "name": "bob"}]))
    assert r.status == 201, r

    async def got() -> bool:
        return (await bob("GET", "/api/v1/namespaces/default/secrets/cfg")).status == 200

    await eventually(got)
    assert (await bob("GET", "/api/v1/namespaces/default/secrets/other")).status == 403
    assert (await bob("GET", "/api/v1/namespaces/default/secrets")).status == 403


async def test_rbac_validation_and_immutable_role_ref(as_user: Any) -> None:
    admin = as_user("admin")
    no_verbs = role("bad", [{"apiGroups": [""], "resources": ["pods"]}])
    r = await admin("POST", f"{RBAC}/namespaces/default/roles", no_verbs)
    assert r.status == 422, r
    assert r.json["message"] == (
        'Role.rbac.authorization.k8s.io "bad" is invalid: rules[0].verbs: Required value: '
        "verbs must contain at least one value"
    )
    r = await admin("POST", f"{RBAC}/namespaces/default/roles",
                    role("urls", [{"nonResourceURLs": ["/x"], "verbs": ["get"]}]))
    assert r.status == 422 and "namespaced rules cannot apply to non-resource URLs" in r.json["message"], r
    r = await admin("POST", f"{RBAC}/clusterrolebindings",
                    binding("b", "Role", "x", [{"kind": "ServiceAccount", "name": "sa"}], cluster=True))
    assert r.status == 422, r
    causes = {c["field"]: c["message"] for c in r.json["details"]["causes"]}
    assert causes["roleRef.kind"] == 'Unsupported value: "Role": supported values: "ClusterRole"'
    assert causes["subjects[0].namespace"] == "Required value"
    r = await admin("POST", f"{RBAC}/namespaces/default/rolebindings",
                    binding("rb", "ClusterRole", "view", [{"kind": "User", "name": "u"}]))
    assert r.status == 201, r
    r = await admin("PATCH", f"{RBAC}/namespaces/default/rolebindings/rb", {"roleRef": {"name": "edit"}},
                    ctype="application/merge-patch+json")
    assert r.status == 422, r
    assert "roleRef: Invalid value" in r.json["message"] and "cannot change roleRef" in r.json["message"]
    r = await admin("PATCH", f"{RBAC}/namespaces/default/rolebindings/rb",
                    {"subjects": [{"kind": "Group", "name": "g", "apiGroup": "rbac.authorization.k8s.io"}]},
                    ctype="application/merge-patch+json")
    assert r.status == 200, r


async def test_service_account_token_lifecycle(as_user: Any, secure: SecureServer) -> None:
    admin = as_user("admin")
    await make_ns(admin, "apps")
    robot_sa = {"metadata": {"name": "robot"}}
    assert (await admin("POST", "/api/v1/namespaces/apps/serviceaccounts", robot_sa)).status == 201
    r = await admin("POST", "/api/v1/namespaces/apps/serviceaccounts/robot/token",
                    {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})
    assert r.status == 201, r
    assert r.json["kind"] == "TokenRequest" and r.json["spec"]["expirationSeconds"] == 3600
    token = r.json["status"]["token"]
    assert r.json["status"]["expirationTimestamp"].endswith("Z")
    robot = as_user(token)
    r = await robot("GET", "/api/v1/namespaces/apps/pods")
    assert r.status == 403, r
    assert r.json["message"] == (
        'pods is forbidden: User "system:serviceaccount:apps:robot" cannot list resource "pods" in API group "" '
        'in the namespace "apps"'
    )
    # Grant through the service account's group and through a ServiceAccount subject.
    r = await admin("POST", f"{RBAC}/namespaces/apps/rolebindings",
                    binding("sa-view", "ClusterRole", "view", [{"kind": "ServiceAccount", "name": "robot"}]))
    assert r.status == 201, r
    await eventually(lambda: can(robot, "list", "pods", "apps"))
    assert (await robot("GET", "/api/v1/namespaces/apps/pods")).status == 200
    r = await admin("POST", f"{RBAC}/namespaces/default/rolebindings",
                    binding("sas-view", "ClusterRole", "view",
                            [{"kind": "Group", "name": "system:serviceaccounts:apps"}]))
    assert r.status == 201, r
    await eventually(lambda: can(robot, "list", "pods", "default"))

    # Too short, unknown service account.
    r = await admin("POST", "/api/v1/namespaces/apps/serviceaccounts/robot/token", {"spec": {"expirationSeconds": 10}})
    assert r.status == 422 and "may not specify a duration less than 10 minutes" in r.json["message"], r
    r = await admin("POST", "/api/v1/namespaces/apps/serviceaccounts/ghost/token", {"spec": {}})
    assert r.status == 404 and r.json["message"] == 'serviceaccounts "ghost" not found', r
    # A token for another audience does not authenticate here.
    r = await admin("POST", "/api/v1/namespaces/apps/serviceaccounts/robot/token", {"spec": {"audiences": ["vault"]}})
    assert r.status == 201 and r.json["spec"]["audiences"] == ["vault"]
    assert (await as_user(r.json["status"]["token"])("GET", "/api")).status == 401
    # A tampered token does not authenticate.
    head, body, sig = token.split(".")
    assert (await as_user(f"{head}.{body}.{sig[:-4]}AAAA")("GET", "/api")).status == 401

    # Deleting the service account (and recreating it: new uid) revokes its tokens.
    assert (await admin("DELETE", "/api/v1/namespaces/apps/serviceaccounts/robot")).status == 200
    assert (await robot("GET", "/api")).status == 401
    robot_sa = {"metadata": {"name": "robot"}}
    assert (await admin("POST", "/api/v1/namespaces/apps/serviceaccounts", robot_sa)).status == 201
    assert (await robot("GET", "/api")).status == 401


async def test_bound_token_and_node_token_requests(as_user: Any) -> None:
    admin, node1 = as_user("admin"), as_user("node1")
    await make_ns(admin, "web")
    assert (await admin("POST", "/api/v1/namespaces/web/serviceaccounts", {"metadata": {"name": "app"}})).status == 201
    on_n1 = pod("a", node="n1", serviceAccountName="app")
    r = await admin("POST", "/api/v1/namespaces/web/pods", on_n1)
    assert r.status == 201, r
    uid = r.json["metadata"]["uid"]
    r = await admin("POST", "/api/v1/namespaces/web/pods", pod("b", node="n2", serviceAccountName="app"))
    assert r.status == 201, r
    uid_b = r.json["metadata"]["uid"]
    ref = {"kind": "Pod", "apiVersion": "v1", "name": "a", "uid": uid}
    # The node agent's call (peapod/node/sync.py ApiVolumeSources.request_token).
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3607, "boundObjectRef": ref}}
    r = await node1("POST", "/api/v1/namespaces/web/serviceaccounts/app/token", body)
    assert r.status == 201, r
    bound = as_user(r.json["status"]["token"])
    # kube's extended expiration of the kubelet's 3607 s tokens: valid a year, "warnafter" at 3607 s.
    claims = json.loads(base64.urlsafe_b64decode(r.json["status"]["token"].split(".")[1] + "=="))
    assert claims["exp"] - claims["iat"] == 365 * 24 * 3600
    assert claims["kubernetes.io"]["warnafter"] - claims["iat"] == 3607
    expires = datetime.fromisoformat(r.json["status"]["expirationTimestamp"].replace("Z", "+00:00"))
    assert abs(expires.timestamp() - claims["iat"] - 3607) <= 1
    r = await bound("POST", SSAR, {"spec": {"resourceAttributes": {"verb": "list", "resource": "pods"}}})
    assert r.status == 201, r
    # A node may not get a token for a pod on another node, nor an unbound one, nor for other SAs.
    r = await node1("POST", "/api/v1/namespaces/web/serviceaccounts/app/token",
                    {"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "b", "uid": uid_b}}})
    assert r.status == 403, r
    assert (await node1("POST", "/api/v1/namespaces/web/serviceaccounts/app/token", {"spec": {}})).status == 403
    assert (await node1("POST", "/api/v1/namespaces/web/serviceaccounts/default/token", {"spec": {}})).status == 403
    # Binding to a pod of another service account or with a stale uid fails.
    r = await admin("POST", "/api/v1/namespaces/web/serviceaccounts/default/token", {"spec": {"boundObjectRef": ref}})
    assert r.status == 400 and "different serviceaccount name" in r.json["message"], r
    r = await admin("POST", "/api/v1/namespaces/web/serviceaccounts/app/token",
                    {"spec": {"boundObjectRef": {**ref, "uid": "nope"}}})
    assert r.status == 409, r
    # Deleting the pod revokes the bound token.
    r = await admin("DELETE", "/api/v1/namespaces/web/pods/a", {"gracePeriodSeconds": 0})
    assert r.status == 200, r
    assert (await bound("GET", "/api")).status == 401


async def test_nodes_keep_their_rules(as_user: Any) -> None:
    admin, node1 = as_user("admin"), as_user("node1")
    r = await admin("POST", "/api/v1/namespaces/default/pods", pod("x", node="n2"))
    assert r.status == 201
    assert (await node1("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1")).status == 200
    assert (await node1("GET", "/api")).status == 200  # discovery through RBAC
    r = await node1("DELETE", "/api/v1/namespaces/default/pods/x")
    assert r.status == 403, r
    assert r.json["message"].startswith('pods "x" is forbidden: User "system:node:n1" cannot delete resource "pods"')
    assert (await node1("GET", "/api/v1/namespaces/default/secrets")).status == 403
