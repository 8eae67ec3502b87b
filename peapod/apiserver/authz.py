"""Authorization: who may do what.

- ``system:masters`` may do anything (the admin kubeconfig, the controllers).
- Nodes (user ``system:node:<name>`` in group ``system:nodes``) get Kubernetes' Node authorizer and
  NodeRestriction rules: read nodes and pods; write only their own Node (and its status), their own
  Lease, the status of pods bound to them, deletes of pods bound to them, and events; read the
  secrets and configmaps that pods bound to them reference.
- Any other authenticated user is allowed until RBAC lands (issue 9); this is stated in the README.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from peapod.api.errors import forbidden_request
from peapod.api.resources import REGISTRY
from peapod.apiserver.auth import MASTERS
from peapod.apiserver.requestinfo import parse_resource_path
from peapod.store.base import Store

NODES_GROUP = "system:nodes"
NODE_PREFIX = "system:node:"
LEASE_NAMESPACE = "kube-node-lease"


@dataclass(frozen=True)
class Attributes:
    verb: str
    group: str
    resource: str
    subresource: str | None = None
    namespace: str | None = None
    name: str | None = None


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
    if a.group == "authorization.k8s.io" and a.resource == "selfsubjectaccessreviews":
        return a.verb == "create"
    return False


async def authorize(user: dict[str, Any], a: Attributes, *, get_pod: PodLookup, node_pods: NodePods) -> bool:
    if MASTERS in user.get("groups", ()):
        return True
    node = node_name(user)
    if node is not None:
        return await authorize_node(node, a, get_pod=get_pod, node_pods=node_pods)
    return True


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


def authz_middleware(store: Store) -> Callable[[web.Request, Any], Awaitable[web.StreamResponse]]:
    """Refuse requests the authenticated user may not make, with Kubernetes' 403 Status."""
    get_pod, node_pods = store_lookups(store)

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        user = request.get("user")
        info = parse_resource_path(request.path)
        if user is None or info is None:
            return await handler(request)
        watch = info.watch_path or request.query.get("watch", "").lower() in ("1", "true")
        verb = verb_for(request.method, has_name=info.name is not None, watch=watch)
        attrs = Attributes(verb, info.group, info.resource, info.subresource, info.namespace, info.name)
        if await authorize(user, attrs, get_pod=get_pod, node_pods=node_pods):
            return await handler(request)
        err = forbidden_request(user.get("username", ""), verb, info.group, info.resource, info.namespace)
        body = json.dumps(err.status()).encode()
        return web.Response(status=403, body=body, content_type="application/json")

    return middleware
