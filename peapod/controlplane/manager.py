"""The controller manager: runs every controller against the API, each as its own task.

Controllers run only while this process leads the Lease ``kube-system/peapod-controller-manager``
(so several control-plane processes can be started and exactly one acts); when leadership is lost
they are stopped and the process campaigns again.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from peapod.client.rest import ApiClient
from peapod.client.sharedinformer import InformerFactory
from peapod.clock import Clock
from peapod.controlplane.controllers.deployment import DeploymentController
from peapod.controlplane.controllers.eventttl import run_event_ttl
from peapod.controlplane.controllers.garbagecollector import GarbageCollector
from peapod.controlplane.controllers.namespace import NamespaceController
from peapod.controlplane.controllers.nodeipam import DEFAULT_CLUSTER_CIDR, DEFAULT_NODE_MASK, NodeIpamController
from peapod.controlplane.controllers.nodelifecycle import NodeLifecycleController
from peapod.controlplane.controllers.podgc import PodGC
from peapod.controlplane.controllers.replicaset import ReplicaSetController
from peapod.controlplane.controllers.rootcacertpublisher import RootCACertPublisher
from peapod.controlplane.leaderelection import LeaderElector

log = logging.getLogger(__name__)

LEASE_NAME = "peapod-controller-manager"
LEASE_NAMESPACE = "kube-system"
Factories = dict[str, Callable[[], Awaitable[None]]]


@dataclass(frozen=True)
class ControllerOptions:
    """The knobs of ``peapod server`` that reach the controllers (kube-controller-manager's flags)."""

    cluster_cidr: str = DEFAULT_CLUSTER_CIDR  # --cluster-cidr: node IPAM hands out blocks of it
    node_cidr_mask_size: int = DEFAULT_NODE_MASK  # --node-cidr-mask-size
    node_monitor_grace_period: float = 40.0  # --node-monitor-grace-period (seconds)
    allocate_node_cidrs: bool = True
    root_ca_pem: bytes = b""  # the cluster CA: published as ConfigMap kube-root-ca.crt in every namespace


def controllers(
    client: ApiClient, *, clock: Clock, options: ControllerOptions | None = None,
    factory: InformerFactory | None = None,
) -> Factories:
    """Each controller by name, as a factory of its run loop (a fresh instance per start).

    All of them read through ``factory``'s shared informers (one watch and one cache per resource,
    as kube-controller-manager's SharedInformerFactory); pass the same factory to the scheduler.
    """
    o = options or ControllerOptions()
    f = factory or InformerFactory(client, clock=clock)
    out: Factories = {
        "garbagecollector": lambda: GarbageCollector(client, clock=clock, factory=f).run(),
        "namespace": lambda: NamespaceController(client, clock=clock, factory=f).run(),
        "eventttl": lambda: run_event_ttl(client, clock=clock),
        "replicaset": lambda: ReplicaSetController(client, clock=clock, factory=f).run(),
        "deployment": lambda: DeploymentController(client, clock=clock, factory=f).run(),
        "nodelifecycle": lambda: NodeLifecycleController(
            client, clock=clock, grace_period=o.node_monitor_grace_period, factory=f).run(),
        "podgc": lambda: PodGC(client, clock=clock, factory=f).run(),
    }
    if o.root_ca_pem:
        out["rootcacertpublisher"] = lambda: RootCACertPublisher(
            client, clock=clock, ca_pem=o.root_ca_pem, factory=f).run()
    if o.allocate_node_cidrs:
        out["nodeipam"] = lambda: NodeIpamController(
            client, clock=clock, cluster_cidr=o.cluster_cidr, node_cidr_mask_size=o.node_cidr_mask_size,
            factory=f).run()
    return out


async def run_all(factories: Factories, *, clock: Clock) -> None:
    """Run the controllers until cancelled; a controller that crashes is restarted."""

    async def supervised(name: str, start: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await start()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("controller %s crashed; restarting", name)
                await clock.sleep(1.0)

    await asyncio.gather(*(supervised(n, f) for n, f in factories.items()))


async def run_controllers(
    client: ApiClient, *, clock: Clock, leader_elect: bool = True, identity: str | None = None,
    lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0,
    factories: Factories | None = None,
) -> None:
    """Run all controllers until cancelled, only while leading the controller-manager Lease."""
    factories = factories if factories is not None else controllers(client, clock=clock)
    if not leader_elect:
        await run_all(factories, clock=clock)
        return
    identity = identity or f"{socket.gethostname()}_{uuid.uuid4()}"
    while True:
        elector = LeaderElector(
            client, name=LEASE_NAME, namespace=LEASE_NAMESPACE, identity=identity,
            lease_duration=lease_duration, renew_deadline=renew_deadline, retry_period=retry_period,
            clock=clock,
        )
        await elector.run(lambda: run_all(factories, clock=clock),
                          lambda: log.info("controller manager %s stopped leading", identity))
