"""Event (core/v1 and events.k8s.io/v1) and coordination.k8s.io/v1 Lease validation."""

from __future__ import annotations

from typing import Any

from peapod.api import errors as e
from peapod.api import names
from peapod.api.errors import FieldError
from peapod.api.validation.common import (
    as_dict,
    as_int,
    as_str,
    msgs_invalid,
    validate_object_meta,
    validate_object_meta_update,
)

REPORTING_INSTANCE_LIMIT = 128
ACTION_LIMIT = 128
REASON_LIMIT = 128
NOTE_LIMIT = 1024

# events.k8s.io/v1 wire names -> the internal names Kubernetes reports errors against.
_EVENTS_V1_FIELDS = {
    "regarding": "involvedObject",
    "note": "message",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
}


def _internal_event(ev: dict[str, Any], group: str) -> dict[str, Any]:
    if group != "events.k8s.io":
        return ev
    return {_EVENTS_V1_FIELDS.get(k, k): v for k, v in ev.items()}


def _legacy_event(ev: dict[str, Any], reporting_field: str) -> list[FieldError]:
    errs: list[FieldError] = []
    meta = as_dict(ev.get("metadata"))
    ns = as_str(meta.get("namespace"))
    ref_ns = as_str(as_dict(ev.get("involvedObject")).get("namespace"))
    if not ev.get("eventTime"):
        if not ref_ns:
            if ns not in ("", "default"):
                errs.append(e.invalid("involvedObject.namespace", ref_ns, "does not match event.namespace"))
        elif ns != ref_ns:
            errs.append(e.invalid("involvedObject.namespace", ref_ns, "does not match event.namespace"))
    else:
        if not ref_ns and ns not in ("default", "kube-system"):
            errs.append(e.invalid("involvedObject.namespace", ref_ns, "does not match event.namespace"))
        controller = as_str(ev.get("reportingController", ev.get("reportingComponent")))
        if not controller:
            errs.append(e.required(reporting_field))
        errs += msgs_invalid(reporting_field, controller, names.is_qualified_name(controller))
        for f, limit in (
            ("reportingInstance", REPORTING_INSTANCE_LIMIT),
            ("action", ACTION_LIMIT),
            ("reason", REASON_LIMIT),
        ):
            v = as_str(ev.get(f))
            if not v:
                errs.append(e.required(f))
            if len(v) > limit:
                errs.append(e.invalid(f, "", f"can have at most {limit} characters"))
        if len(as_str(ev.get("message"))) > NOTE_LIMIT:
            errs.append(e.invalid("message", "", f"can have at most {NOTE_LIMIT} characters"))
    errs += msgs_invalid("namespace", ns, names.is_dns1123_subdomain(ns))
    return errs


def validate_event(group: str, ev: dict[str, Any]) -> list[FieldError]:
    """ValidateEventCreate for a core/v1 (``group == ""``) or events.k8s.io/v1 event."""
    ev = _internal_event(ev, group)
    meta = as_dict(ev.get("metadata"))
    if group == "":
        errs = _legacy_event(ev, "reportingComponent")
        if not meta.get("name") and not meta.get("generateName"):
            errs.insert(0, e.required("metadata.name", "name or generateName is required"))
        return errs
    errs = _legacy_event(ev, "reportingController")
    errs += validate_object_meta(meta, True, names.name_is_dns_subdomain)
    series = ev.get("series")
    if series is not None:
        series = as_dict(series)
        if (as_int(series.get("count")) or 0) < 2:
            errs.append(e.invalid("series.count", "", "should be at least 2"))
        if not series.get("lastObservedTime"):
            errs.append(e.required("series.lastObservedTime"))
    if not ev.get("eventTime"):
        errs.append(e.required("eventTime"))
    if ev.get("type") not in ("Normal", "Warning"):
        errs.append(e.invalid("type", "", f"has invalid value: {as_str(ev.get('type'))}"))
    for f in ("firstTimestamp", "lastTimestamp", "count"):
        if ev.get(f):
            errs.append(e.invalid(f, "", "needs to be unset"))
    src = as_dict(ev.get("source"))
    if src.get("component") or src.get("host"):
        errs.append(e.invalid("source", "", "needs to be unset"))
    return errs


def validate_event_update(group: str, new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta_update(new.get("metadata"), old.get("metadata"), kube_finalizers=False)
    n, o = _internal_event(new, group), _internal_event(old, group)
    if group == "events.k8s.io":
        for f in (
            "involvedObject",
            "reason",
            "message",
            "source",
            "firstTimestamp",
            "lastTimestamp",
            "count",
            "type",
            "eventTime",
            "action",
            "related",
            "reportingController",
            "reportingInstance",
        ):
            if n.get(f) != o.get(f):
                errs.append(e.invalid(f, n.get(f) if n.get(f) is not None else "", "field is immutable"))
    else:
        errs += _legacy_event(n, "reportingComponent")
    return errs


def _lease_spec(spec: Any) -> list[FieldError]:
    spec = as_dict(spec)
    errs: list[FieldError] = []
    lds = as_int(spec.get("leaseDurationSeconds"))
    if lds is not None and lds <= 0:
        errs.append(e.invalid("spec.leaseDurationSeconds", lds, "must be greater than 0"))
    lt = as_int(spec.get("leaseTransitions"))
    if lt is not None and lt < 0:
        errs.append(e.invalid("spec.leaseTransitions", lt, "must be greater than or equal to 0"))
    strategy = spec.get("strategy")
    if strategy is not None and strategy != "OldestEmulationVersion":
        errs.append(e.not_supported("spec.strategy", strategy, ["OldestEmulationVersion"]))
    if spec.get("preferredHolder") and not strategy:
        errs.append(e.forbidden("spec.preferredHolder", "may only be specified if `strategy` is defined"))
    return errs


def validate_lease(lease: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta(
        lease.get("metadata"), True, names.name_is_dns_subdomain, kube_finalizers=False
    )
    return errs + _lease_spec(lease.get("spec"))


def validate_lease_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta_update(new.get("metadata"), old.get("metadata"), kube_finalizers=False)
    return errs + _lease_spec(new.get("spec"))
