"""Old events expire: Kubernetes stores events with a 1 h TTL; here a sweep deletes expired ones."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from peapod.api.errors import ApiError
from peapod.api.resources import resource
from peapod.client.rest import ApiClient
from peapod.clock import Clock, parse_time

log = logging.getLogger(__name__)
EVENTS = resource("", "v1", "events")


def last_seen(event: dict[str, Any]) -> datetime | None:
    """The newest of lastTimestamp, eventTime, series.lastObservedTime, creationTimestamp."""
    candidates = [
        event.get("lastTimestamp"), event.get("eventTime"),
        (event.get("series") or {}).get("lastObservedTime"), event["metadata"].get("creationTimestamp"),
    ]
    times = [parse_time(t) for t in candidates if t]
    return max(times) if times else None


def expired(events: list[dict[str, Any]], now: datetime, ttl: timedelta) -> list[dict[str, Any]]:
    out = []
    for ev in events:
        seen = last_seen(ev)
        if seen is not None and now - seen > ttl:
            out.append(ev)
    return out


async def run_event_ttl(
    client: ApiClient, *, clock: Clock, ttl: float = 3600.0, interval: float = 60.0
) -> None:
    while True:
        try:
            events = (await client.list(EVENTS)).get("items", [])
            for ev in expired(events, clock.now(), timedelta(seconds=ttl)):
                md = ev["metadata"]
                try:
                    await client.delete(EVENTS, md["name"], md["namespace"])
                except ApiError as e:
                    if e.code != 404:
                        raise
        except ApiError as e:
            log.info("event expiry: %s", e.message)
        await clock.sleep(interval)
