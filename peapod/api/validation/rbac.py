"""rbac.authorization.k8s.io/v1 validation: Role, ClusterRole, RoleBinding, ClusterRoleBinding.

Follows pkg/apis/rbac/validation: RBAC names are path segments (``system:basic-user`` is valid),
rules need verbs and either resources (with api groups) or non-resource URLs (cluster roles only),
bindings reference a role in this group, and a binding's ``roleRef`` never changes.
"""

from __future__ import annotations

from typing import Any

from peapod.api import errors as e
from peapod.api import names
from peapod.api.errors import FieldError
from peapod.api.validation.common import (
    GoValue,
    as_dict,
    as_list,
    as_str,
    child,
    go_quote,
    go_string_slice,
    index,
    msgs_invalid,
    validate_label_selector,
    validate_object_meta,
    validate_object_meta_update,
)

GROUP = "rbac.authorization.k8s.io"
_MAY_NOT_BE = (".", "..")
_MAY_NOT_CONTAIN = ("/", "%")


def path_segment_name(name: str, prefix: bool = False) -> list[str]:
    """path.ValidatePathSegmentName: the name rule of every RBAC object."""
    if not prefix:
        for bad in _MAY_NOT_BE:
            if name == bad:
                return [f"may not be '{bad}'"]
    return [f"may not contain '{bad}'" for bad in _MAY_NOT_CONTAIN if bad in name]


def _rule(rule: Any, namespaced: bool, path: str) -> list[FieldError]:
    rule = as_dict(rule)
    errs: list[FieldError] = []
    if not as_list(rule.get("verbs")):
        errs.append(e.required(child(path, "verbs"), "verbs must contain at least one value"))
    urls = as_list(rule.get("nonResourceURLs"))
    if urls:
        value = go_string_slice(urls)
        if namespaced:
            errs.append(
                e.invalid(child(path, "nonResourceURLs"), value, "namespaced rules cannot apply to non-resource URLs")
            )
        if as_list(rule.get("apiGroups")) or as_list(rule.get("resources")) or as_list(rule.get("resourceNames")):
            errs.append(
                e.invalid(
                    child(path, "nonResourceURLs"),
                    value,
                    "rules cannot apply to both regular resources and non-resource URLs",
                )
            )
        return errs
    if not as_list(rule.get("apiGroups")):
        errs.append(e.required(child(path, "apiGroups"), "resource rules must supply at least one api group"))
    if not as_list(rule.get("resources")):
        errs.append(e.required(child(path, "resources"), "resource rules must supply at least one resource"))
    return errs


def _rules(obj: dict[str, Any], namespaced: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, rule in enumerate(as_list(obj.get("rules"))):
        errs += _rule(rule, namespaced, index("rules", i))
    return errs


def validate_role(role: dict[str, Any]) -> list[FieldError]:
    return validate_object_meta(role.get("metadata"), True, path_segment_name) + _rules(role, True)


def validate_role_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    return validate_object_meta_update(new.get("metadata"), old.get("metadata")) + validate_role(new)


def validate_cluster_role(role: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta(role.get("metadata"), False, path_segment_name) + _rules(role, False)
    agg = role.get("aggregationRule")
    if agg is not None:
        selectors = as_list(as_dict(agg).get("clusterRoleSelectors"))
        if not selectors:
            errs.append(
                e.required(
                    child("aggregationRule", "clusterRoleSelectors"),
                    "at least one clusterRoleSelector required if aggregationRule is non-nil",
                )
            )
        for i, sel in enumerate(selectors):
            errs += validate_label_selector(sel, index(child("aggregationRule", "clusterRoleSelectors"), i))
    return errs


def validate_cluster_role_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    return validate_object_meta_update(new.get("metadata"), old.get("metadata")) + validate_cluster_role(new)


def _subject(subject: Any, namespaced: bool, path: str) -> list[FieldError]:
    s = as_dict(subject)
    errs: list[FieldError] = []
    name, kind, group = as_str(s.get("name")), as_str(s.get("kind")), as_str(s.get("apiGroup"))
    if not name:
        errs.append(e.required(child(path, "name")))
    if kind == "ServiceAccount":
        if name:
            errs += msgs_invalid(child(path, "name"), name, names.name_is_dns_subdomain(name, False))
        if group:
            errs.append(e.not_supported(child(path, "apiGroup"), group, [""]))
        if not namespaced and not as_str(s.get("namespace")):
            errs.append(e.required(child(path, "namespace")))
    elif kind in ("User", "Group"):
        if group != GROUP:
            errs.append(e.not_supported(child(path, "apiGroup"), group, [GROUP]))
    else:
        errs.append(e.not_supported(child(path, "kind"), kind, ["ServiceAccount", "User", "Group"]))
    return errs


def _binding(obj: dict[str, Any], namespaced: bool) -> list[FieldError]:
    errs = validate_object_meta(obj.get("metadata"), namespaced, path_segment_name)
    ref = as_dict(obj.get("roleRef"))
    group, kind, name = as_str(ref.get("apiGroup")), as_str(ref.get("kind")), as_str(ref.get("name"))
    if group != GROUP:
        errs.append(e.not_supported("roleRef.apiGroup", group, [GROUP]))
    kinds = ["Role", "ClusterRole"] if namespaced else ["ClusterRole"]
    if kind not in kinds:
        errs.append(e.not_supported("roleRef.kind", kind, kinds))
    if not name:
        errs.append(e.required("roleRef.name"))
    else:
        errs += msgs_invalid("roleRef.name", name, path_segment_name(name))
    for i, s in enumerate(as_list(obj.get("subjects"))):
        errs += _subject(s, namespaced, index("subjects", i))
    return errs


def _role_ref_value(ref: dict[str, Any]) -> GoValue:
    return GoValue(
        f"rbac.RoleRef{{APIGroup:{go_quote(ref.get('apiGroup', ''))}, Kind:{go_quote(ref.get('kind', ''))}, "
        f"Name:{go_quote(ref.get('name', ''))}}}"
    )


def _role_ref_immutable(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    n, o = as_dict(new.get("roleRef")), as_dict(old.get("roleRef"))
    fields = ("apiGroup", "kind", "name")
    if any(as_str(n.get(f)) != as_str(o.get(f)) for f in fields):
        return [e.invalid("roleRef", _role_ref_value(n), "cannot change roleRef")]
    return []


def validate_role_binding(rb: dict[str, Any]) -> list[FieldError]:
    return _binding(rb, True)


def validate_role_binding_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    return (
        validate_object_meta_update(new.get("metadata"), old.get("metadata"))
        + _binding(new, True)
        + _role_ref_immutable(new, old)
    )


def validate_cluster_role_binding(crb: dict[str, Any]) -> list[FieldError]:
    return _binding(crb, False)


def validate_cluster_role_binding_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    return (
        validate_object_meta_update(new.get("metadata"), old.get("metadata"))
        + _binding(new, False)
        + _role_ref_immutable(new, old)
    )


def default_binding(obj: dict[str, Any]) -> None:
    """SetDefaults for RoleBinding/ClusterRoleBinding: roleRef and User/Group subjects get the rbac group."""
    ref = obj.get("roleRef")
    if isinstance(ref, dict) and not ref.get("apiGroup"):
        ref["apiGroup"] = GROUP
    for s in as_list(obj.get("subjects")):
        if isinstance(s, dict) and not s.get("apiGroup") and s.get("kind") in ("User", "Group"):
            s["apiGroup"] = GROUP


__all__ = [
    "default_binding",
    "path_segment_name",
    "validate_cluster_role",
    "validate_cluster_role_binding",
    "validate_cluster_role_binding_update",
    "validate_cluster_role_update",
    "validate_role",
    "validate_role_binding",
    "validate_role_binding_update",
    "validate_role_update",
]
