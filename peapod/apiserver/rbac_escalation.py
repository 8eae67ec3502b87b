"""RBAC privilege-escalation prevention, as kube-apiserver's RBAC storage does it.

- Creating or updating a Role/ClusterRole is allowed only if the user already holds every permission
  it grants (in the role's namespace; cluster-wide for a ClusterRole), or may ``escalate`` it.
  Setting a ClusterRole's ``aggregationRule`` needs full authority (cluster-admin).
- Creating or updating a RoleBinding/ClusterRoleBinding is allowed only if the user holds every
  permission of the referenced role (in the binding's namespace; cluster-wide for a
  ClusterRoleBinding), or may ``bind`` that role.
- ``system:masters`` bypasses both; updates that change only ownerReferences/finalizers are not checked.

Rule coverage follows ``pkg/registry/rbac/validation`` (``Covers``, ``BreakdownRule``,
``ruleCovers``, ``CompactRules``), and the refusal reads like kube's::

    clusterrolebindings.rbac.authorization.k8s.io "x" is forbidden: user "u" (groups=["g"]) is
    attempting to grant RBAC permissions not currently held:
    {APIGroups:["*"], Resources:["*"], Verbs:["*"]}

The check runs inside admission (:func:`admit`); the requesting user and the authorizer reach it
through :data:`REQUEST_AUTH`, which the authorization middleware sets for the request (like kube's
request context). Without it (no RBAC, or a write made by the server itself) nothing is checked.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from peapod.api.errors import ApiError
from peapod.apiserver.auth import MASTERS

if TYPE_CHECKING:
    from peapod.apiserver.authz import Authorizer

GROUP = "rbac.authorization.k8s.io"
Obj = dict[str, Any]

# (user info, authorizer) of the request being served; set by authz_middleware.
REQUEST_AUTH: ContextVar[tuple[dict[str, Any], Authorizer] | None] = ContextVar("peapod_request_auth", default=None)

FULL_AUTHORITY: list[Obj] = [
    {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
    {"verbs": ["*"], "nonResourceURLs": ["*"]},
]


def _strs(v: Any) -> list[str]:
    return [x for x in v if isinstance(x, str)] if isinstance(v, list) else []


# -- coverage ----------------------------------------------------------------------------------


def breakdown(rule: Obj) -> list[Obj]:
    """One rule per (group, resource, verb[, name]) and per (nonResourceURL, verb)."""
    out: list[Obj] = []
    names = _strs(rule.get("resourceNames"))
    verbs = _strs(rule.get("verbs"))
    for group in _strs(rule.get("apiGroups")):
        for resource in _strs(rule.get("resources")):
            for verb in verbs:
                base = {"apiGroups": [group], "resources": [resource], "verbs": [verb]}
                if names:
                    out.extend({**base, "resourceNames": [n]} for n in names)
                else:
                    out.append(base)
    for url in _strs(rule.get("nonResourceURLs")):
        out.extend({"nonResourceURLs": [url], "verbs": [verb]} for verb in verbs)
    return out


def _has_all(have: list[str], want: list[str]) -> bool:
    return set(want) <= set(have)


def _resources_cover(owner: list[str], wanted: list[str]) -> bool:
    if "*" in owner or _has_all(owner, wanted):
        return True
    for path in wanted:
        if path in owner:
            continue
        if "/" not in path or "*/" + path.split("/", 1)[1] not in owner:
            return False
    return True


def _url_covers(owner: str, path: str) -> bool:
    return owner == path or (owner.endswith("*") and path.startswith(owner.rstrip("*")))


def rule_covers(owner: Obj, sub: Obj) -> bool:
    """Whether ``owner`` grants everything ``sub`` grants (kube's ruleCovers)."""
    o_verbs, o_groups = _strs(owner.get("verbs")), _strs(owner.get("apiGroups"))
    o_names, s_names = _strs(owner.get("resourceNames")), _strs(sub.get("resourceNames"))
    o_urls = _strs(owner.get("nonResourceURLs"))
    return (
        ("*" in o_verbs or _has_all(o_verbs, _strs(sub.get("verbs"))))
        and ("*" in o_groups or _has_all(o_groups, _strs(sub.get("apiGroups"))))
        and _resources_cover(_strs(owner.get("resources")), _strs(sub.get("resources")))
        and all(any(_url_covers(u, p) for u in o_urls) for p in _strs(sub.get("nonResourceURLs")))
        and (not o_names or (bool(s_names) and _has_all(o_names, s_names)))
    )


def covers(owner_rules: Iterable[Obj], servant_rules: Iterable[Obj]) -> tuple[bool, list[Obj]]:
    """(all covered, the broken-down rules that are not)."""
    owners = [r for r in owner_rules if isinstance(r, dict)]
    missing = [
        sub
        for rule in servant_rules if isinstance(rule, dict)
        for sub in breakdown(rule)
        if not any(rule_covers(o, sub) for o in owners)
    ]
    return not missing, missing


def compact_rules(rules: list[Obj]) -> list[Obj]:
    """Merge simple rules (one group, one resource, at most one name) that differ only in verbs."""
    out: list[Obj] = []
    simple: dict[tuple[str, str, str | None], Obj] = {}
    for rule in rules:
        groups, resources, names = (_strs(rule.get(k)) for k in ("apiGroups", "resources", "resourceNames"))
        if len(groups) == 1 and len(resources) == 1 and len(names) <= 1 and not rule.get("nonResourceURLs"):
            key = (groups[0], resources[0], names[0] if names else None)
            if key in simple:
                verbs = simple[key]["verbs"]
                verbs.extend(v for v in _strs(rule.get("verbs")) if v not in verbs)
                continue
            simple[key] = copy.deepcopy(rule)
            out.append(simple[key])
        else:
            out.append(rule)
    return out


def _go_quote_list(values: list[str]) -> str:
    return "[" + " ".join(json.dumps(v, ensure_ascii=False) for v in values) + "]"


def compact_string(rule: Obj) -> str:
    """kube's PolicyRule.CompactString: ``{APIGroups:["apps"], Resources:["deployments"], Verbs:["get"]}``."""
    parts = [
        f"{label}:{_go_quote_list(_strs(rule.get(key)))}"
        for label, key in (
            ("APIGroups", "apiGroups"), ("Resources", "resources"), ("NonResourceURLs", "nonResourceURLs"),
            ("ResourceNames", "resourceNames"), ("Verbs", "verbs"),
        )
        if _strs(rule.get(key))
    ]
    return "{" + ", ".join(parts) + "}"


def escalation_message(username: str, groups: Iterable[str], missing: list[Obj]) -> str:
    described = sorted({compact_string(r) for r in compact_rules(missing)})
    return (
        f"user {json.dumps(username)} (groups={_go_quote_list(list(groups))}) is attempting to grant RBAC "
        "permissions not currently held:\n" + "\n".join(described)
    )


# -- the admission step ------------------------------------------------------------------------


def _forbidden(resource: str, name: str, message: str) -> ApiError:
    return ApiError(
        403, "Forbidden", f'{resource}.{GROUP} "{name}" is forbidden: {message}',
        {"name": name, "group": GROUP, "kind": resource},
    )


def only_gc_fields_changed(new: Obj, old: Obj | None) -> bool:
    """kube's IsOnlyMutatingGCFields: the update touches nothing but ownerReferences/finalizers."""
    if old is None:
        return False

    def strip(o: Obj) -> Obj:
        o = copy.deepcopy(o)
        meta = o.get("metadata") or {}
        for k in ("ownerReferences", "finalizers", "managedFields", "resourceVersion", "generation"):
            meta.pop(k, None)
        return o

    return strip(new) == strip(old)


async def _allowed(authorizer: Authorizer, user: dict[str, Any], verb: str, resource: str,
                   namespace: str, name: str) -> bool:
    from peapod.apiserver.authz import Attributes

    d = await authorizer.authorize(user, Attributes(verb, GROUP, resource, None, namespace or None, name or None))
    return d.allowed


async def admit(resource: str, namespace: str | None, obj: Obj, old: Obj | None) -> None:
    """Refuse (403) a create/update of a role or binding that would grant more than the user holds."""
    state = REQUEST_AUTH.get()
    if state is None or resource not in ("roles", "clusterroles", "rolebindings", "clusterrolebindings"):
        return
    user, authorizer = state
    groups = tuple(user.get("groups", ()))
    if MASTERS in groups or authorizer.rbac is None or only_gc_fields_changed(obj, old):
        return
    username = user.get("username", "")
    ns = namespace or ""
    name = (obj.get("metadata") or {}).get("name", "")
    if resource in ("roles", "clusterroles"):
        if await _allowed(authorizer, user, "escalate", resource, ns, name):
            return
        owner = authorizer.rbac.owner_rules(username, groups, ns)
        agg = obj.get("aggregationRule")
        if resource == "clusterroles" and agg and agg != (old or {}).get("aggregationRule"):
            if not covers(owner, FULL_AUTHORITY)[0]:
                raise _forbidden(resource, name, "must have cluster-admin privileges to use the aggregationRule")
        rules = obj.get("rules") if isinstance(obj.get("rules"), list) else []
    else:
        ref = obj.get("roleRef") if isinstance(obj.get("roleRef"), dict) else {}
        ref_resource = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
        if await _allowed(authorizer, user, "bind", ref_resource, ns, ref.get("name", "")):
            return
        found = authorizer.rbac.role_ref_rules(ref, ns)
        if found is None:
            singular = "clusterrole" if ref_resource == "clusterroles" else "role"
            raise _forbidden(resource, name, f'{singular}.{GROUP} "{ref.get("name", "")}" not found')
        rules = found
        owner = authorizer.rbac.owner_rules(username, groups, ns)
    ok, missing = covers(owner, rules)
    if not ok:
        raise _forbidden(resource, name, escalation_message(username, groups, missing))
