"""Root CA publisher: a ``kube-root-ca.crt`` ConfigMap with the cluster CA in every namespace.

Kubernetes' root-ca-cert-publisher controller: pods verify the API server with the ``ca.crt`` of
this ConfigMap, which the ServiceAccount admission's ``kube-api-access-*`` projected volume mounts at
``/var/run/secrets/kubernetes.io/serviceaccount/ca.crt``. A namespace that appears (or changes) and
a ConfigMap that is edited or deleted enqueue the namespace; ``sync`` creates or restores the
ConfigMap. Terminating namespaces are left alone.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from peapod.api.errors import ApiError
from peapod.api.resources import resource
from peapod.client.rest import ApiClient
from peapod.client.sharedinformer import InformerFactory
from peapod.client.workqueue import WorkQueue
from peapod.clock import Clock

log = logging.getLogger(__name__)

NAMESPACES = resource("", "v1", "namespaces")
CONFIGMAPS = resource("", "v1", "configmaps")
NAME = "kube-root-ca.crt"
DATA_KEY = "ca.crt"
DESCRIPTION_KEY = "kubernetes.io/description"
DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints "
    "such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
    "distributions of Kubernetes clusters."
)

Obj = dict[str, Any]


def desired(namespace: str, ca_pem: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": NAME, "namespace": namespace, "annotations": {DESCRIPTION_KEY: DESCRIPTION}},
        "data": {DATA_KEY: ca_pem},
    }


def needs_update(cm: Obj, ca_pem: str) -> bool:
    """Kube restores the data (only ca.crt) and the description annotation."""
    ann = (cm.get("metadata") or {}).get("annotations") or {}
    return cm.get("data") != {DATA_KEY: ca_pem} or ann.get(DESCRIPTION_KEY) != DESCRIPTION


class RootCACertPublisher:
    def __init__(
        self, client: ApiClient, *, clock: Clock, ca_pem: bytes, factory: InformerFactory | None = None,
    ) -> None:
        self.client = client
        self.ca_pem = ca_pem.decode()
        self.queue = WorkQueue(clock=clock)
        informers = factory or InformerFactory(client, clock=clock)
        self.namespaces = informers.informer(NAMESPACES)
        self.configmaps = informers.informer(CONFIGMAPS, field_selector=f"metadata.name={NAME}")
        self.namespaces.add_handlers(on_add=self._ns, on_update=lambda _o, n: self._ns(n))
        self.configmaps.add_handlers(on_update=lambda _o, n: self._cm(n), on_delete=self._cm)

    def _ns(self, ns: Obj) -> None:
        if not ns["metadata"].get("deletionTimestamp"):
            self.queue.add(ns["metadata"]["name"])

    def _cm(self, cm: Obj) -> None:
        if cm["metadata"].get("name") == NAME:
            self.queue.add(cm["metadata"]["namespace"])

    async def sync(self, namespace: Any) -> None:
        ns = self.namespaces.get(namespace)
        if ns is None or ns["metadata"].get("deletionTimestamp") or (ns.get("status") or {}).get("phase") == \
                "Terminating":
            return
        try:
            cm = await self.client.get(CONFIGMAPS, NAME, namespace)
        except ApiError as e:
            if e.code != 404:
                raise
            try:
                await self.client.create(CONFIGMAPS, desired(namespace, self.ca_pem), namespace)
            except ApiError as e2:
                # 409: made meanwhile (the update event requeues); 403: the namespace is terminating.
                if e2.code not in (409, 403):
                    raise
            return
        if not needs_update(cm, self.ca_pem):
            return
        cm["data"] = {DATA_KEY: self.ca_pem}
        cm["metadata"].setdefault("annotations", {})[DESCRIPTION_KEY] = DESCRIPTION
        try:
            await self.client.update(CONFIGMAPS, cm)
        except ApiError as e:
            if e.code not in (404, 409):
                raise
            self.queue.add(namespace)

    async def run(self, workers: int = 1) -> None:
        tasks = [asyncio.create_task(self.namespaces.run()), asyncio.create_task(self.configmaps.run())]
        try:
            await self.namespaces.synced.wait()
            await self.configmaps.synced.wait()
            await self.queue.run_workers(self.sync, workers)
        finally:
            for t in tasks:
                t.cancel()
