"""The controller manager: runs every controller against the API, each as its own task."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from peapod.client.rest import ApiClient
from peapod.clock import Clock
from peapod.controlplane.controllers.eventttl import run_event_ttl
from peapod.controlplane.controllers.garbagecollector import GarbageCollector
from peapod.controlplane.controllers.namespace import NamespaceController

log = logging.getLogger(__name__)


def controllers(client: ApiClient, *, clock: Clock) -> dict[str, Callable[[], Awaitable[None]]]:
    """Each controller by name, as a factory of its run loop (a fresh instance per start)."""
    return {
        "garbagecollector": lambda: GarbageCollector(client, clock=clock).run(),
        "namespace": lambda: NamespaceController(client, clock=clock).run(),
        "eventttl": lambda: run_event_ttl(client, clock=clock),
    }


async def run_controllers(client: ApiClient, *, clock: Clock) -> None:
    """Run all controllers until cancelled; a controller that crashes is restarted."""

    async def supervised(name: str, start: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await start()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("controller %s crashed; restarting", name)
                await clock.sleep(1.0)

    await asyncio.gather(*(supervised(n, f) for n, f in controllers(client, clock=clock).items()))
