"""Authorization: who may do what, decided in kube-apiserver's order.

1. ``system:masters`` may do anything (the admin kubeconfig, the controllers).
2. Nodes (user ``system:node:<name>`` in group ``system:nodes``) get Kubernetes' Node authorizer and
   NodeRestriction rules for resource requests: read nodes and pods; write only their own Node (and
   its status), their own Lease, the status of pods bound to them, deletes of pods bound to them, and
   events; read the secrets and configmaps that pods bound to them reference; request tokens of the
   service accounts their pods run as. What these rules refuse is refused (stricter than kube, where
   RBAC may still grant it). Non-resource requests of nodes (discovery) go to RBAC.
3. Everyone else: RBAC (:mod:`peapod.apiserver.rbac`) from roles and bindings in the store.

Anything not allowed gets Kubernetes' 403 Status (``pods is forbidden: User "u" cannot list resource
"pods" in API group "" in the namespace "ns"``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from peapod.api.errors import ApiError
from peapod.api.resources import REGISTRY
from peapod.apiserver.auth import MASTERS
from peapod.apiserver.rbac import RBACAuthorizer, RBACCache, Request
from peapod.apiserver.rbac_escalation import REQUEST_AUTH
from peapod.apiserver.requestinfo import parse_resource_path
from peapod.store.base import Store

NODES_GROUP = "system:nodes"
NODE_PREFIX = "system:node:"
LEASE_NAMESPACE = "kube-node-lease"


@dataclass(frozen=True)
class Attributes:
    """A request as authorization sees it; ``path`` is set (and the rest empty) for non-resource URLs."""

    verb: str
    group: str = ""
    resource: str = ""
    subresource: str | None = None
    namespace: str | None = None
    name: str | None = None
    path: str | None = None

    @property
    def is_resource(self) -> bool:
        return self.path is None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


def verb_for(method: str, *, has_name: bool, watch: bool) -> str:
    method = method.upper()
    if method in ("GET", "HEAD"):
        if watch:
            return "watch"
        return "get" if has_name else "list"
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete" if has_name else "deletecollection"
    return method.lower()


def node_name(user: dict[str, Any]) -> str | None:
    name = user.get("username", "")
    if NODES_GROUP in user.get("groups", ()) and name.startswith(NODE_PREFIX):
        return name[len(NODE_PREFIX):]
    return None


PodLookup = Callable[[str, str], Awaitable[dict[str, Any] | None]]
NodePods = Callable[[str], Awaitable[list[dict[str, Any]]]]


def _references(pod: dict[str, Any], kind: str, name: str) -> bool:
    """Whether a pod uses a secret/configmap (volumes, env, envFrom, projected, pull secrets)."""
    spec = pod.get("spec", {})
    key = "secretName" if kind == "secrets" else "name"
    vol_key = "secret" if kind == "secrets" else "configMap"
    ref_key = "secretKeyRef" if kind == "secrets" else "configMapKeyRef"
    env_from_key = "secretRef" if kind == "secrets" else "configMapRef"
    for v in spec.get("volumes", []) or []:
        if (v.get(vol_key) or {}).get(key) == name:
            return True
        for src in (v.get("projected") or {}).get("sources", []) or []:
            if (src.get(vol_key) or {}).get("name") == name:
                return True
    if kind == "secrets" and any(s.get("name") == name for s in spec.get("imagePullSecrets", []) or []):
        return True
    for c in (spec.get("containers", []) or []) + (spec.get("initContainers", []) or []):
        for e in c.get("env", []) or []:
            if ((e.get("valueFrom") or {}).get(ref_key) or {}).get("name") == name:
                return True
        for ef in c.get("envFrom", []) or []:
            if (ef.get(env_from_key) or {}).get("name") == name:
                return True
    return False


async def authorize_node(node: str, a: Attributes, *, get_pod: PodLookup, node_pods: NodePods) -> bool:
    read = a.verb in ("get", "list", "watch")
    if a.group == "" and a.resource == "nodes":
        if read:
            return True
        if a.verb == "create":
            return True  # NodeRestriction then checks the created object's name (admission)
        return a.name == node and a.verb in ("update", "patch") and a.subresource in (None, "status")
    if a.group == "" and a.resource == "pods":
        if read and a.subresource is None:
            return True
        if a.verb in ("update", "patch", "delete") and a.subresource in (None, "status") and a.name:
            if a.verb != "delete" and a.subresource is None:
                return False
            pod = await get_pod(a.namespace or "", a.name)
            return pod is not None and pod.get("spec", {}).get("nodeName") == node
        return False
    if a.resource == "events" and a.group in ("", "events.k8s.io"):
        return a.verb in ("create", "update", "patch", "get", "list", "watch")
    if a.group == "coordination.k8s.io" and a.resource == "leases":
        if a.namespace != LEASE_NAMESPACE:
            return False
        if a.verb == "create":
            return True
        return a.name == node and a.verb in ("get", "update", "patch", "watch", "list")
    if a.group == "" and a.resource in ("secrets", "configmaps") and a.verb == "get" and a.name:
        return any(
            p["metadata"].get("namespace") == a.namespace and _references(p, a.resource, a.name)
            for p in await node_pods(node)
        )
    if a.group == "" and a.resource == "namespaces" and read:
        return True
    if a.group == "authorization.k8s.io" and a.resource in ("selfsubjectaccessreviews", "selfsubjectrulesreviews"):
        return a.verb == "create"
    if a.group == "" and a.resource == "serviceaccounts" and a.subresource == "token" and a.name:
        # TokenRequest for a service account one of its pods runs as; the handler checks that the
        # token is bound to such a pod (NodeRestriction).
        return a.verb == "create" and any(
            p["metadata"].get("namespace") == a.namespace
            and ((p.get("spec") or {}).get("serviceAccountName") or "default") == a.name
            for p in await node_pods(node)
        )
    return False




def store_lookups(store: Store) -> tuple[PodLookup, NodePods]:
    """Pod lookups for the node rules, read straight from the store (authorization runs before
    the handlers, and only node requests need them)."""
    pods = REGISTRY.get("", "v1", "pods")
    assert pods is not None

    async def get_pod(namespace: str, name: str) -> dict[str, Any] | None:
        kv = await store.get(pods.key(namespace, name))
        return json.loads(kv.value) if kv is not None else None

    async def node_pods(node: str) -> list[dict[str, Any]]:
        res = await store.list(pods.prefix())
        out = []
        for kv in res.items:
            obj = json.loads(kv.value)
            if obj.get("spec", {}).get("nodeName") == node:
                out.append(obj)
        return out

    return get_pod, node_pods


def _qualified(group: str, resource: str) -> str:
    return f"{resource}.{group}" if group else resource


def forbidden(username: str, a: Attributes, reason: str = "") -> ApiError:
    """Kubernetes' 403 for a refused request (responsewriters.Forbidden)."""
    if not a.is_resource:
        msg = f'User "{username}" cannot {a.verb} path "{a.path}"'
    else:
        res = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
        where = f' in the namespace "{a.namespace}"' if a.namespace else " at the cluster scope"
        msg = f'User "{username}" cannot {a.verb} resource "{res}" in API group "{a.group}"{where}'
    if reason:
        msg += f": {reason}"
    details: dict[str, Any] = {}
    if not a.is_resource:
        return ApiError(403, "Forbidden", f"forbidden: {msg}", details)
    qualified = _qualified(a.group, a.resource)
    details["kind"] = a.resource
    if a.group:
        details["group"] = a.group
    if a.name:
        details["name"] = a.name
        return ApiError(403, "Forbidden", f'{qualified} "{a.name}" is forbidden: {msg}', details)
    return ApiError(403, "Forbidden", f"{qualified} is forbidden: {msg}", details)


def request_attributes(request: web.Request) -> Attributes:
    info = parse_resource_path(request.path)
    if info is None:
        verb = "get" if request.method in ("GET", "HEAD") else request.method.lower()
        return Attributes(verb, path=request.path)
    watch = info.watch_path or request.query.get("watch", "").lower() in ("1", "true")
    verb = verb_for(request.method, has_name=info.name is not None, watch=watch)
    return Attributes(verb, info.group, info.resource, info.subresource, info.namespace, info.name)


class Authorizer:
    """The authorization chain: masters, then node rules, then RBAC.

    ``rbac`` None means "no RBAC": every authenticated user who is neither a master nor a node is
    allowed (the behaviour before RBAC; only for tests that do not care about authorization).
    """

    def __init__(self, store: Store, *, rbac: bool = True) -> None:
        self.store = store
        self.cache: RBACCache | None = RBACCache(store) if rbac else None
        self.rbac = RBACAuthorizer(self.cache) if self.cache is not None else None
        self.get_pod, self.node_pods = store_lookups(store)

    async def start(self) -> None:
        if self.cache is not None:
            await self.cache.start()

    async def stop(self) -> None:
        if self.cache is not None:
            await self.cache.stop()

    async def authorize(self, user: dict[str, Any], a: Attributes) -> Decision:
        groups = tuple(user.get("groups", ()))
        if MASTERS in groups:
            return Decision(True)
        node = node_name(user)
        if node is not None and a.is_resource:
            ok = await authorize_node(node, a, get_pod=self.get_pod, node_pods=self.node_pods)
            return Decision(ok, "" if ok else f"node '{node}' may not {a.verb} this object")
        if self.rbac is None:
            return Decision(True, "peapod: RBAC is off")
        d = self.rbac.authorize(
            Request(
                user=user.get("username", ""),
                groups=groups,
                verb=a.verb,
                group=a.group,
                resource=a.resource,
                subresource=a.subresource or "",
                namespace=a.namespace or "",
                name=a.name or "",
                path=a.path,
            )
        )
        return Decision(d.allowed, d.reason)

    def rules_for(
        self, user: dict[str, Any], namespace: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
        """(resourceRules, nonResourceRules, incomplete) for SelfSubjectRulesReview."""
        groups = tuple(user.get("groups", ()))
        if self.rbac is None:
            return [], [], True
        res, non = self.rbac.rules_for(user.get("username", ""), groups, namespace)
        # The node rules are not expressible as rules: a node's list is incomplete.
        return res, non, node_name(user) is not None


AUTHORIZER: web.AppKey[Authorizer] = web.AppKey("peapod_authorizer", Authorizer)
# The authorization decision of the request (the audit log records it).
DECISION: web.RequestKey[Decision] = web.RequestKey("peapod_authz_decision", Decision)


def install_authorizer(app: web.Application, authorizer: Authorizer) -> None:
    """Make ``authorizer`` the app's (access reviews ask it) and run its cache with the app."""
    app[AUTHORIZER] = authorizer

    async def start(_: web.Application) -> None:
        await authorizer.start()

    async def stop(_: web.Application) -> None:
        await authorizer.stop()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)


def authz_middleware(authorizer: Authorizer) -> Callable[[web.Request, Any], Awaitable[web.StreamResponse]]:
    """Refuse requests the authenticated user may not make, with Kubernetes' 403 Status.

    Requests without a user (the public health/version paths) were let through by authentication.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        user = request.get("user")
        if user is None:
            return await handler(request)
        attrs = request_attributes(request)
        decision = await authorizer.authorize(user, attrs)
        request[DECISION] = decision
        if decision.allowed:
            token = REQUEST_AUTH.set((user, authorizer))  # escalation checks in admission read it
            try:
                return await handler(request)
            finally:
                REQUEST_AUTH.reset(token)
        err = forbidden(user.get("username", ""), attrs)
        return web.Response(status=403, body=json.dumps(err.status()).encode(), content_type="application/json")

    return middleware
