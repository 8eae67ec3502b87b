"""Conversion between core/v1 Event (the storage form) and events.k8s.io/v1 Event.

Field mapping as in kube's pkg/apis/events/v1/conversion.go: regarding <-> involvedObject,
note <-> message, reportingController <-> reportingComponent, deprecatedSource <-> source,
deprecatedFirstTimestamp/LastTimestamp/Count <-> firstTimestamp/lastTimestamp/count; eventTime,
series, action, reason, related, reportingInstance and type keep their names.
"""

from __future__ import annotations

import copy
from typing import Any

# events.k8s.io/v1 name -> core/v1 name
_RENAMED = {
    "regarding": "involvedObject",
    "note": "message",
    "reportingController": "reportingComponent",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
}
_SAME = ("metadata", "eventTime", "series", "action", "reason", "related", "reportingInstance", "type")


def events_v1_to_core(obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "Event", "apiVersion": "v1"}
    for k in _SAME:
        if k in obj:
            out[k] = copy.deepcopy(obj[k])
    for new, old in _RENAMED.items():
        if new in obj:
            out[old] = copy.deepcopy(obj[new])
    if "involvedObject" not in out:
        out["involvedObject"] = {}
    return out


def core_to_events_v1(obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "Event", "apiVersion": "events.k8s.io/v1"}
    for k in _SAME:
        if k in obj:
            out[k] = copy.deepcopy(obj[k])
    for new, old in _RENAMED.items():
        if old in obj:
            out[new] = copy.deepcopy(obj[old])
    # Zero values the Go types would not serialize
    if out.get("deprecatedCount") == 0:
        out.pop("deprecatedCount")
    if out.get("deprecatedSource") == {}:
        out.pop("deprecatedSource")
    if "regarding" not in out:
        out["regarding"] = {}
    return out
