from datetime import UTC, datetime, timedelta

from peapod.controlplane.controllers.eventttl import expired


def ev(name: str, **times: str) -> dict:
    return {"metadata": {"name": name, "creationTimestamp": "2026-01-01T00:00:00Z"}, **times}


def test_expiry_uses_the_newest_timestamp() -> None:
    now = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    events = [
        ev("old"),
        ev("renewed", lastTimestamp="2026-01-01T01:30:00Z"),
        ev("series", series={"lastObservedTime": "2026-01-01T01:59:00.000000Z"}),
    ]
    assert [e["metadata"]["name"] for e in expired(events, now, timedelta(hours=1))] == ["old"]
