"""core/v1 ConfigMap, Secret, Namespace, Node and ServiceAccount validation."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
from typing import Any

from peapod.api import errors as e
from peapod.api import names
from peapod.api.errors import FieldError
from peapod.api.validation.common import (
    MAX_SECRET_SIZE,
    STANDARD_FINALIZERS,
    GoValue,
    as_dict,
    as_list,
    as_str,
    child,
    index,
    key,
    msgs_invalid,
    semantic_equal,
    too_long_bytes,
    validate_object_meta,
    validate_object_meta_update,
)

IMMUTABLE_SET = "field is immutable when `immutable` is set"


def _decoded(value: Any) -> bytes:
    try:
        return base64.b64decode(as_str(value), validate=False)
    except (binascii.Error, ValueError):
        return b""


def validate_configmap(cm: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta(cm.get("metadata"), True, names.name_is_dns_subdomain)
    data = as_dict(cm.get("data"))
    binary = as_dict(cm.get("binaryData"))
    total = 0
    for k, v in sorted(data.items()):
        errs += msgs_invalid(key("data", k), k, names.is_config_map_key(k))
        if k in binary:
            errs.append(e.invalid(key("data", k), k, "duplicate of key present in binaryData"))
        total += len(as_str(v).encode())
    for k, v in sorted(binary.items()):
        errs += msgs_invalid(key("binaryData", k), k, names.is_config_map_key(k))
        total += len(_decoded(v))
    if total > MAX_SECRET_SIZE:
        errs.append(too_long_bytes("", MAX_SECRET_SIZE))
    return errs


def validate_configmap_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta_update(new.get("metadata"), old.get("metadata"))
    if old.get("immutable") is True:
        if new.get("immutable") is not True:
            errs.append(e.forbidden("immutable", IMMUTABLE_SET))
        if not semantic_equal(as_dict(new.get("data")), as_dict(old.get("data"))):
            errs.append(e.forbidden("data", IMMUTABLE_SET))
        if not semantic_equal(as_dict(new.get("binaryData")), as_dict(old.get("binaryData"))):
            errs.append(e.forbidden("binaryData", IMMUTABLE_SET))
    errs += validate_configmap(new)
    return errs


def _secret_data(secret: dict[str, Any]) -> dict[str, bytes]:
    """data (base64) merged with stringData, as the API server converts before validating."""
    out = {k: _decoded(v) for k, v in as_dict(secret.get("data")).items()}
    for k, v in as_dict(secret.get("stringData")).items():
        out[k] = as_str(v).encode()
    return out


def validate_secret(secret: dict[str, Any]) -> list[FieldError]:
    meta = as_dict(secret.get("metadata"))
    errs = validate_object_meta(meta, True, names.name_is_dns_subdomain)
    data = _secret_data(secret)
    total = 0
    for k, v in sorted(data.items()):
        errs += msgs_invalid(key("data", k), k, names.is_config_map_key(k))
        total += len(v)
    if total > MAX_SECRET_SIZE:
        errs.append(too_long_bytes("data", MAX_SECRET_SIZE))
    t = as_str(secret.get("type"))
    if t == "kubernetes.io/service-account-token":
        if not as_dict(meta.get("annotations")).get("kubernetes.io/service-account.name"):
            errs.append(e.required("metadata.annotations[kubernetes.io/service-account.name]"))
    elif t in ("kubernetes.io/dockercfg", "kubernetes.io/dockerconfigjson"):
        k = ".dockercfg" if t == "kubernetes.io/dockercfg" else ".dockerconfigjson"
        if k not in data:
            errs.append(e.required(key("data", k)))
        else:
            try:
                parsed = json.loads(data[k] or b"")
                if not isinstance(parsed, dict):
                    raise ValueError("json: cannot unmarshal into Go value of type map[string]interface {}")
            except ValueError as err:
                errs.append(e.invalid(key("data", k), "<secret contents redacted>", str(err)))
    elif t == "kubernetes.io/basic-auth":
        if "username" not in data and "password" not in data:
            errs.append(e.required(key("data", "username")))
            errs.append(e.required(key("data", "password")))
    elif t == "kubernetes.io/ssh-auth":
        if not data.get("ssh-privatekey"):
            errs.append(e.required(key("data", "ssh-privatekey")))
    elif t == "kubernetes.io/tls":
        for k in ("tls.crt", "tls.key"):
            if k not in data:
                errs.append(e.required(key("data", k)))
    return errs


def validate_secret_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta_update(new.get("metadata"), old.get("metadata"))
    if as_str(new.get("type")) != as_str(old.get("type")):
        errs.append(e.invalid("type", as_str(new.get("type")), "field is immutable"))
    if old.get("immutable") is True:
        if new.get("immutable") is not True:
            errs.append(e.forbidden("immutable", IMMUTABLE_SET))
        if _secret_data(new) != _secret_data(old):
            errs.append(e.forbidden("data", IMMUTABLE_SET))
    errs += validate_secret(new)
    return errs


def _finalizer_names(finalizers: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for f in as_list(finalizers):
        f = as_str(f)
        errs += msgs_invalid(path, f, names.is_qualified_name(f))
        if "/" not in f and f not in STANDARD_FINALIZERS:
            errs.append(
                e.invalid(path, f, "name is neither a standard finalizer name nor is it fully qualified")
            )
    return errs


def validate_namespace(ns: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta(ns.get("metadata"), False, names.name_is_dns_label)
    errs += _finalizer_names(as_dict(ns.get("spec")).get("finalizers"), "spec.finalizers")
    return errs


def validate_namespace_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    # spec and status are reset from the old object by the update strategy, so only metadata matters.
    return validate_object_meta_update(new.get("metadata"), old.get("metadata"))


def validate_node(node: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta(node.get("metadata"), False, names.name_is_dns_subdomain)
    spec = as_dict(node.get("spec"))
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(as_list(spec.get("taints"))):
        taint = as_dict(taint)
        p = index("spec.taints", i)
        k = as_str(taint.get("key"))
        errs += msgs_invalid(child(p, "key"), k, names.is_qualified_name(k))
        v = as_str(taint.get("value"))
        errs += msgs_invalid(child(p, "value"), v, names.is_valid_label_value(v))
        effect = as_str(taint.get("effect"))
        if not effect:
            errs.append(e.required(child(p, "effect")))
        elif effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            errs.append(
                e.not_supported(child(p, "effect"), effect, ["NoSchedule", "PreferNoSchedule", "NoExecute"])
            )
        if (k, effect) in seen:
            shown = GoValue(f"{k}={v}:{effect}" if v else f"{k}:{effect}")
            errs.append(
                FieldError(e.FIELD_DUPLICATE, p, "taints must be unique by key and effect pair", shown, True)
            )
        seen.add((k, effect))
    for i, cidr in enumerate(as_list(spec.get("podCIDRs"))):
        if not _is_cidr(as_str(cidr)):
            errs.append(
                e.invalid(
                    index("spec.podCIDRs", i),
                    cidr,
                    "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
                )
            )
    return errs


def _is_cidr(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return "/" in text


def validate_node_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta_update(new.get("metadata"), old.get("metadata"))
    errs += validate_node(new)
    ns, os_ = as_dict(new.get("spec")), as_dict(old.get("spec"))
    old_cidrs, new_cidrs = as_list(os_.get("podCIDRs")), as_list(ns.get("podCIDRs"))
    if old_cidrs and new_cidrs != old_cidrs:
        errs.append(
            e.forbidden("spec.podCIDRs", 'node updates may not change podCIDR except from "" to valid')
        )
    if os_.get("providerID") and ns.get("providerID") != os_.get("providerID"):
        errs.append(
            e.forbidden("spec.providerID", 'node updates may not change providerID except from "" to valid')
        )
    return errs


def validate_service_account(sa: dict[str, Any]) -> list[FieldError]:
    return validate_object_meta(sa.get("metadata"), True, names.name_is_dns_subdomain)


def validate_service_account_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    return validate_object_meta_update(new.get("metadata"), old.get("metadata")) + validate_service_account(
        new
    )


__all__ = [
    "validate_configmap",
    "validate_configmap_update",
    "validate_namespace",
    "validate_namespace_update",
    "validate_node",
    "validate_node_update",
    "validate_secret",
    "validate_secret_update",
    "validate_service_account",
    "validate_service_account_update",
]
