"""Recording Events for ``kubectl describe`` (client-go's EventRecorder, core/v1 events).

Repeats of the same (object, type, reason, message) within the aggregation window are folded
into one Event whose ``count`` and ``lastTimestamp`` grow, as Kubernetes' correlator does.
Recording never raises: events are best-effort. An ``asynchronous`` recorder (the node agent's)
returns at once and sends from a queue in the background, in order, like client-go's broadcaster,
so a pod's start never waits for its "Created" and "Started" events to be written; when the queue
is full, events are dropped (and counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from peapod.api.errors import ApiError
from peapod.api.resources import resource
from peapod.client.rest import ApiClient
from peapod.clock import Clock, rfc3339

log = logging.getLogger(__name__)
EVENTS = resource("", "v1", "events")
AGGREGATION_WINDOW = timedelta(minutes=10)
# client-go's spam filter: per involved object, a burst of 25 events, then one per 5 minutes.
SPAM_BURST = 25
SPAM_REFILL_SECONDS = 300.0
QUEUE_SIZE = 1000  # client-go's broadcaster buffers 1000 events


class SpamFilter:
    """A token bucket per involved object (client-go's EventSourceObjectSpamFilter)."""

    def __init__(self, *, burst: int = SPAM_BURST, refill_seconds: float = SPAM_REFILL_SECONDS) -> None:
        self.burst = burst
        self.refill = refill_seconds
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str, now: float) -> bool:
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) / self.refill)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > 8192:
            self._buckets.pop(next(iter(self._buckets)))
        return True


def object_reference(obj: dict[str, Any]) -> dict[str, Any]:
    md = obj.get("metadata", {})
    ref = {"kind": obj.get("kind", ""), "apiVersion": obj.get("apiVersion", ""), "name": md.get("name", ""),
           "uid": md.get("uid", ""), "resourceVersion": md.get("resourceVersion", "")}
    if md.get("namespace"):
        ref["namespace"] = md["namespace"]
    return ref


class EventRecorder:
    def __init__(self, client: ApiClient, *, component: str, clock: Clock, host: str = "",
                 asynchronous: bool = False) -> None:
        self.client = client
        self.component = component
        self.host = host
        self.clock = clock
        self.asynchronous = asynchronous
        self.dropped = 0
        self._seen: dict[tuple[str, ...], tuple[str, str, int, datetime]] = {}
        self._spam = SpamFilter()
        self._queue: asyncio.Queue[tuple[Any, ...]] | None = None
        self._sender: asyncio.Task[None] | None = None

    async def record(
        self, obj: dict[str, Any], type_: str, reason: str, message: str, *, field_path: str = ""
    ) -> None:
        if not self.asynchronous:
            await self._send(obj, type_, reason, message, field_path, self.clock.now())
            return
        if self._queue is None:
            self._queue = asyncio.Queue(QUEUE_SIZE)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_queued(), name="event-sender")
        try:
            self._queue.put_nowait((obj, type_, reason, message, field_path, self.clock.now()))
        except asyncio.QueueFull:
            self.dropped += 1

    async def _send_queued(self) -> None:
        assert self._queue is not None
        while True:
            item = await self._queue.get()
            try:
                await self._send(*item)
            except Exception:  # a bug must not stop every later event from being sent
                log.exception("sending an event failed")
            finally:
                self._queue.task_done()

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait (at most ``timeout`` seconds) until every queued event was sent."""
        if self._queue is not None and self._sender is not None and not self._sender.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout)

    async def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (within ``timeout``), then stop the background sender."""
        await self.flush(timeout)
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sender
            self._sender = None

    async def _send(self, obj: dict[str, Any], type_: str, reason: str, message: str, field_path: str,
                    now: datetime) -> None:
        ref = object_reference(obj)
        if field_path:
            ref["fieldPath"] = field_path
        ns = ref.get("namespace") or "default"
        if not self._spam.allow(ref["uid"] or f"{ns}/{ref['name']}", self.clock.monotonic()):
            return
        key = (ref["uid"], ref.get("fieldPath", ""), type_, reason, message)
        try:
            prev = self._seen.get(key)
            if prev is not None and now - prev[3] < AGGREGATION_WINDOW:
                name, pns, count, _ = prev
                patch = {"count": count + 1, "lastTimestamp": rfc3339(now)}
                await self.client.patch(EVENTS, name, patch, pns, patch_type="merge")
                self._seen[key] = (name, pns, count + 1, now)
                return
            name = f"{ref['name']}.{secrets.token_hex(8)}"
            source = {"component": self.component}
            if self.host:
                source["host"] = self.host
            ev = {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": ns},
                "involvedObject": ref, "reason": reason, "message": message, "type": type_,
                "source": source, "count": 1,
                "firstTimestamp": rfc3339(now), "lastTimestamp": rfc3339(now),
                "reportingComponent": self.component, "reportingInstance": self.host or self.component,
            }
            await self.client.create(EVENTS, ev, ns)
            self._seen[key] = (name, ns, 1, now)
            if len(self._seen) > 4096:
                self._seen.pop(next(iter(self._seen)))
        except ApiError as e:
            log.debug("event %s/%s not recorded: %s", reason, ref["name"], e.message)
        except (OSError, TimeoutError, aiohttp.ClientError) as e:
            log.debug("event %s/%s not recorded: %s", reason, ref["name"], e)
