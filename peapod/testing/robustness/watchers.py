"""Watchers that behave like client-go reflectors: list, watch from the list's resourceVersion, resume
from the last one seen when the stream ends or breaks, relist after 410 Gone. Every event is recorded."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import aiohttp

from peapod.api.errors import ApiError
from peapod.api.resources import ResourceInfo, resource
from peapod.client.rest import ApiClient
from peapod.testing.robustness.history import WatchEvent, WatchLog


def resource_info(plural: str) -> ResourceInfo:
    return resource("apps", "v1", plural) if plural == "deployments" else resource("", "v1", plural)


class Watcher:
    def __init__(self, api: ApiClient, log: WatchLog, rng: random.Random,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.log = log
        self.rng = rng
        self.clock = clock
        self.info = resource_info(log.resource)
        self.last = 0  # newest resourceVersion seen (0: must list)

    def _record(self, type_: str, name: str, rv: int, **kw: object) -> None:
        self.log.events.append(WatchEvent(type=type_, name=name, rv=rv, time=self.clock(), **kw))  # type: ignore[arg-type]

    async def _relist(self) -> None:
        lst = await self.api.list(self.info, self.log.namespace)
        items = {o["metadata"]["name"]: int(o["metadata"]["resourceVersion"]) for o in lst.get("items", [])}
        self.last = int(lst["metadata"]["resourceVersion"])
        self._record("RELIST", "", self.last, items=items)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                if self.last == 0:
                    await self._relist()
                else:
                    self._record("RECONNECT", "", self.last)
                await self._watch(stop)
            except ApiError as e:
                if e.code == 410:
                    self._expired()
                else:
                    await asyncio.sleep(0.2)
            except (TimeoutError, aiohttp.ClientError, ConnectionError, ValueError):
                await asyncio.sleep(0.2)  # the server is down or restarting: resume from self.last

    def _expired(self) -> None:
        self._record("EXPIRED", "", self.last)
        self.last = 0

    async def _watch(self, stop: asyncio.Event) -> None:
        stream = self.api.watch(self.info, self.log.namespace, resource_version=str(self.last),
                                timeout_seconds=self.rng.randrange(5, 30))
        async for type_, obj in stream:
            if type_ == "ERROR":
                if obj.get("code") == 410:
                    self._expired()
                return
            rv = int(obj["metadata"]["resourceVersion"])
            if type_ == "BOOKMARK":
                self._record("BOOKMARK", "", rv)
            else:
                self._record(type_, obj["metadata"]["name"], rv, uid=obj["metadata"].get("uid"))
            self.last = max(self.last, rv)
            if stop.is_set():
                return
