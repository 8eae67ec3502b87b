"""apps/v1 ReplicaSet and Deployment validation, and autoscaling/v1 Scale."""

from __future__ import annotations

from typing import Any

from peapod.api import errors as e
from peapod.api import names
from peapod.api.errors import FieldError
from peapod.api.selectors import label_selector_from_api
from peapod.api.validation.common import (
    GoValue,
    as_dict,
    as_int,
    as_str,
    child,
    go_label_selector,
    go_quote,
    go_string_map,
    immutable,
    nonnegative,
    validate_label_selector,
    validate_object_meta,
    validate_object_meta_update,
)
from peapod.api.validation.pods import validate_pod_template


def _template_for_replicaset(template: Any, selector: Any, path: str) -> list[FieldError]:
    if template is None:
        return [e.required(path)]
    template = as_dict(template)
    errs: list[FieldError] = []
    labels = as_dict(template.get("metadata")).get("labels")
    sel = label_selector_from_api(selector)
    if not sel.empty() and not sel.matches(as_dict(labels)):
        errs.append(
            e.invalid(
                child(path, "metadata", "labels"),
                go_string_map(labels),
                "`selector` does not match template `labels`",
            )
        )
    errs += validate_pod_template(template, path)
    spec = as_dict(template.get("spec"))
    rp = spec.get("restartPolicy")
    if rp != "Always":
        errs.append(
            e.not_supported(child(path, "spec", "restartPolicy"), rp if rp is not None else "", ["Always"])
        )
    if spec.get("activeDeadlineSeconds") is not None:
        errs.append(
            e.invalid(
                child(path, "spec", "activeDeadlineSeconds"),
                spec["activeDeadlineSeconds"],
                "activeDeadlineSeconds in ReplicaSet is not Supported",
            )
        )
    return errs


def _selector_and_template(spec: dict[str, Any], kind: str) -> list[FieldError]:
    errs: list[FieldError] = []
    sel = spec.get("selector")
    if sel is None:
        errs.append(e.required("spec.selector"))
    else:
        errs += validate_label_selector(sel, "spec.selector")
        sel_d = as_dict(sel)
        if not sel_d.get("matchLabels") and not sel_d.get("matchExpressions"):
            errs.append(
                e.invalid(
                    "spec.selector", go_label_selector(sel_d), "empty selector is invalid for deployment"
                )
            )
    try:
        label_selector_from_api(sel)
    except ValueError:
        errs.append(e.invalid("spec.selector", go_label_selector(as_dict(sel)), "invalid label selector"))
        return errs
    errs += _template_for_replicaset(spec.get("template"), sel, "spec.template")
    return errs


def validate_replicaset(rs: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta(rs.get("metadata"), True, names.name_is_dns_subdomain)
    spec = as_dict(rs.get("spec"))
    errs += nonnegative(spec.get("replicas"), "spec.replicas")
    errs += nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    errs += _selector_and_template(spec, "ReplicaSet")
    return errs


def validate_replicaset_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta_update(new.get("metadata"), old.get("metadata"))
    errs += validate_replicaset(new)
    errs += _selector_immutable(new, old)
    return errs


def _selector_immutable(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    new_sel = as_dict(new.get("spec")).get("selector")
    old_sel = as_dict(old.get("spec")).get("selector")
    errs = immutable(new_sel, old_sel, "spec.selector")
    for err in errs:
        err.bad_value = go_label_selector(new_sel if new_sel is None else as_dict(new_sel))
    return errs


def _int_or_percent(value: Any) -> int | None:
    if isinstance(value, str):
        return int(value[:-1]) if value.endswith("%") and value[:-1].isdigit() else None
    return as_int(value)


def _positive_int_or_percent(value: Any, path: str) -> list[FieldError]:
    if isinstance(value, str):
        return [e.invalid(path, value, m) for m in names.is_valid_percent(value)]
    if isinstance(value, int) and not isinstance(value, bool):
        return nonnegative(value, path)
    if value is None:
        return []
    return [e.invalid(path, value, "must be an integer or percentage (e.g '5%')")]


def _strategy(strategy: Any, path: str) -> list[FieldError]:
    strategy = as_dict(strategy)
    t = strategy.get("type")
    errs: list[FieldError] = []
    if t == "Recreate":
        if strategy.get("rollingUpdate") is not None:
            errs.append(
                e.forbidden(
                    child(path, "rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'"
                )
            )
    elif t == "RollingUpdate":
        ru = strategy.get("rollingUpdate")
        if ru is None:
            errs.append(e.required(child(path, "rollingUpdate"), "this should be defaulted and never be nil"))
        else:
            ru = as_dict(ru)
            rp = child(path, "rollingUpdate")
            mu, ms = ru.get("maxUnavailable"), ru.get("maxSurge")
            errs += _positive_int_or_percent(mu, child(rp, "maxUnavailable"))
            errs += _positive_int_or_percent(ms, child(rp, "maxSurge"))
            if (_int_or_percent(mu) or 0) == 0 and (_int_or_percent(ms) or 0) == 0:
                errs.append(e.invalid(child(rp, "maxUnavailable"), mu, "may not be 0 when `maxSurge` is 0"))
            mu_v = _int_or_percent(mu)
            if isinstance(mu, str) and mu_v is not None and mu_v > 100:
                errs.append(e.invalid(child(rp, "maxUnavailable"), mu, "must not be greater than 100%"))
    else:
        ru_text = (
            "(*apps.RollingUpdateDeployment)(nil)" if strategy.get("rollingUpdate") is None else "&{...}"
        )
        rendered = GoValue(f"apps.DeploymentStrategy{{Type:{go_quote(as_str(t))}, RollingUpdate:{ru_text}}}")
        errs.append(e.not_supported(path, rendered, ["Recreate", "RollingUpdate"]))
    return errs


def validate_deployment(d: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta(d.get("metadata"), True, names.name_is_dns_subdomain)
    spec = as_dict(d.get("spec"))
    errs += nonnegative(spec.get("replicas"), "spec.replicas")
    errs += _selector_and_template(spec, "Deployment")
    errs += _strategy(spec.get("strategy"), "spec.strategy")
    errs += nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    if spec.get("revisionHistoryLimit") is not None:
        errs += nonnegative(spec["revisionHistoryLimit"], "spec.revisionHistoryLimit")
    pds = spec.get("progressDeadlineSeconds")
    if pds is not None:
        errs += nonnegative(pds, "spec.progressDeadlineSeconds")
        mrs = as_int(spec.get("minReadySeconds")) or 0
        if isinstance(pds, int) and pds <= mrs:
            errs.append(
                e.invalid("spec.progressDeadlineSeconds", pds, "must be greater than minReadySeconds")
            )
    return errs


def validate_deployment_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta_update(new.get("metadata"), old.get("metadata"))
    errs += validate_deployment(new)
    errs += _selector_immutable(new, old)
    return errs


def validate_scale(scale: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta(scale.get("metadata"), True, names.name_is_dns_subdomain)
    errs += nonnegative(as_dict(scale.get("spec")).get("replicas"), "spec.replicas")
    return errs
