"""Seeded randomized clients: create/update/patch/delete/get of ConfigMaps, Pods and Deployments,
scale and rollouts, each request recorded in the history with its outcome.

Each client owns its own object names (``c<client>-<kind>-<n>``), so the requests on one object are
sequential and the checker can model it exactly; the clients still run concurrently against the server.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from peapod.api.errors import ApiError
from peapod.client.rest import PATCH_TYPES, ApiClient
from peapod.testing.robustness.history import (
    OWNED_PREFIX,
    TEMPLATE_ANNOTATION,
    History,
    Op,
    content_of,
    digest,
)

PATHS = {"configmaps": "/api/v1/namespaces/{ns}/configmaps", "pods": "/api/v1/namespaces/{ns}/pods",
         "deployments": "/apis/apps/v1/namespaces/{ns}/deployments"}
# How many objects of each kind one client plays with, and how often it picks the kind.
POOL = {"configmaps": 3, "pods": 2, "deployments": 1}
WEIGHTS = {"configmaps": 5, "pods": 2, "deployments": 3}


# aiohttp silently resends these on a new connection when a kept-alive one breaks, so a refused
# connection may follow a first attempt that the server did apply.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


def classify(exc: BaseException, method: str) -> tuple[str, int | None]:
    """(outcome, code) of a failed request: a 4xx wrote nothing, nor did a refused connection of a POST or
    PATCH; a 5xx, a broken connection, a timeout, or a refused retry of a PUT/DELETE may have written."""
    if isinstance(exc, ApiError):
        return ("fail" if exc.code < 500 else "ambiguous"), exc.code
    if isinstance(exc, aiohttp.ClientConnectorError) and method not in IDEMPOTENT:
        return "fail", None
    return "ambiguous", None


@dataclass
class Client:
    """One randomized client. ``images`` are interchangeable image refs for rollouts."""

    index: int
    api: ApiClient
    namespace: str
    history: History
    rng: random.Random
    images: list[str]
    clock: Callable[[], float] = time.monotonic
    seen: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # last object each name held
    counter: int = 0

    def _name(self, resource: str) -> str:
        kind = {"configmaps": "cm", "pods": "pod", "deployments": "dep"}[resource]
        return f"c{self.index}-{kind}-{self.rng.randrange(POOL[resource])}"

    async def run(self, stop: asyncio.Event, pace: float = 0.05) -> None:
        while not stop.is_set():
            resource = self.rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
            op = await self.step(resource, self._name(resource))
            # A refused connection: the server is restarting; do not spin.
            refused = op.code is None and op.outcome != "ok"
            await asyncio.sleep(self.rng.uniform(0, 2 * pace) + (0.3 if refused else 0))

    async def step(self, resource: str, name: str) -> Op:
        known = self.seen.get((resource, name))
        verbs = {"configmaps": ["update", "patch", "delete", "get"],
                 "pods": ["patch", "patch", "delete", "get"],
                 "deployments": ["scale", "rollout", "rollout", "delete", "get"]}[resource]
        verb = "create" if known is None and self.rng.random() < 0.8 else self.rng.choice(verbs)
        return await getattr(self, f"_{resource}")(verb, name, known)

    # ---- requests ------------------------------------------------------------------------------

    async def _call(self, verb: str, resource: str, name: str, method: str, *, sub: str = "", body: Any = None,
                    patch: str = "", sets: dict[str, str] | None = None) -> Op:
        base = PATHS[resource].format(ns=self.namespace)
        path = base if verb == "create" else f"{base}/{name}{sub}"
        op = Op(client=self.index, verb=verb, resource=resource, namespace=self.namespace, name=name,
                body_digest=digest(body), start=self.clock(), sets=sets)
        self.history.ops.append(op)
        try:
            resp = await self.api.request(method, path, body=body,
                                          content_type=PATCH_TYPES[patch] if patch else "application/json")
        except (TimeoutError, ApiError, aiohttp.ClientError, ConnectionError) as e:
            op.end = self.clock()
            op.outcome, op.code = classify(e, method)
            op.error = f"{type(e).__name__}: {e}"[:300]
            if op.code == 404:
                self.seen.pop((resource, name), None)
            elif op.outcome == "ambiguous" or op.code == 409:
                self.seen[(resource, name)] = self.seen.get((resource, name)) or {}
            return op
        op.end = self.clock()
        op.outcome, op.code = "ok", 200
        if isinstance(resp, dict) and resp.get("kind") not in (None, "Status"):
            md = resp.get("metadata") or {}
            op.rv = int(md["resourceVersion"]) if md.get("resourceVersion") else None
            op.uid = md.get("uid")
            op.seen = content_of(resource, resp)
            self.seen[(resource, name)] = resp
        if verb == "delete":
            self.seen.pop((resource, name), None)
        return op

    def _delete_body(self) -> dict[str, Any]:
        return {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}

    def _rv_of(self, known: dict[str, Any] | None) -> str | None:
        return ((known or {}).get("metadata") or {}).get("resourceVersion")

    async def _configmaps(self, verb: str, name: str, known: dict[str, Any] | None) -> Op:
        data = {k: f"{self.index}-{self.rng.randrange(10**6)}" for k in ("a", "b", "c")}
        sets = {"data": digest(data)}
        if verb == "create":
            body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}
            return await self._call(verb, "configmaps", name, "POST", body=body, sets=sets)
        if verb == "update":
            md: dict[str, Any] = {"name": name}
            if self._rv_of(known) and self.rng.random() < 0.8:  # else an unconditional update
                md["resourceVersion"] = self._rv_of(known)
            body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md, "data": data}
            return await self._call(verb, "configmaps", name, "PUT", body=body, sets=sets)
        if verb == "patch":
            return await self._call(verb, "configmaps", name, "PATCH", body={"data": data}, patch="merge", sets=sets)
        if verb == "delete":
            return await self._call(verb, "configmaps", name, "DELETE", body=self._delete_body())
        return await self._call(verb, "configmaps", name, "GET")

    def _owned(self) -> tuple[dict[str, str], dict[str, str]]:
        n = self.rng.randrange(10**6)
        return {OWNED_PREFIX + "v": f"v{n}"}, {OWNED_PREFIX + "n": str(n * 7)}

    async def _pods(self, verb: str, name: str, known: dict[str, Any] | None) -> Op:
        labels, annotations = self._owned()
        sets = {"owned": digest({**labels, **annotations})}
        if verb == "create":
            body = {"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "labels": {"app": "bare", **labels}, "annotations": annotations},
                    "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                        {"name": "c", "image": self.images[0], "command": ["sleep", "3600"]}]}}
            return await self._call(verb, "pods", name, "POST", body=body, sets=sets)
        if verb == "patch":
            body = {"metadata": {"labels": labels, "annotations": annotations}}
            return await self._call(verb, "pods", name, "PATCH", body=body, patch="merge", sets=sets)
        if verb == "delete":
            return await self._call(verb, "pods", name, "DELETE", body=self._delete_body())
        return await self._call(verb, "pods", name, "GET")

    def _template(self) -> tuple[str, dict[str, Any]]:
        self.counter += 1
        tag = f"t{self.index}-{self.counter}"
        return tag, {
            "metadata": {"labels": {"app": "x"}, "annotations": {TEMPLATE_ANNOTATION: tag}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                {"name": "c", "image": self.rng.choice(self.images), "command": ["sleep", "3600"],
                 "env": [{"name": "V", "value": tag}]}]},
        }

    async def _deployments(self, verb: str, name: str, known: dict[str, Any] | None) -> Op:
        if verb == "create":
            tag, tmpl = self._template()
            replicas = self.rng.randrange(3)
            tmpl["metadata"]["labels"]["app"] = name
            body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                    "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": tmpl,
                             "strategy": {"rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}}}
            sets = {"replicas": str(replicas), "template": tag}
            return await self._call(verb, "deployments", name, "POST", body=body, sets=sets)
        if verb == "scale":
            replicas = self.rng.randrange(3)
            return await self._call(verb, "deployments", name, "PATCH", body={"spec": {"replicas": replicas}},
                                    patch="merge", sets={"replicas": str(replicas)})
        if verb == "rollout":
            tag, tmpl = self._template()
            c = tmpl["spec"]["containers"][0]
            body = {"spec": {"template": {"metadata": {"annotations": tmpl["metadata"]["annotations"]},
                                          "spec": {"containers": [{"name": "c", "image": c["image"],
                                                                   "env": c["env"]}]}}}}
            return await self._call(verb, "deployments", name, "PATCH", body=body, patch="strategic",
                                    sets={"template": tag})
        if verb == "delete":
            return await self._call(verb, "deployments", name, "DELETE", body=self._delete_body())
        return await self._call(verb, "deployments", name, "GET")
