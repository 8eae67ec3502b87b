"""Kubernetes RBAC: rule matching, subject matching and a cache of roles and bindings.

The evaluation follows plugin/pkg/auth/authorizer/rbac (``rbac.go``, ``evaluation_helpers.go``):

- a ClusterRoleBinding grants its ClusterRole's rules everywhere (resource and non-resource rules);
- a RoleBinding grants the rules of its Role (same namespace) or ClusterRole only in its namespace,
  and never non-resource URLs;
- a rule matches when verb, api group, resource (``pods``, ``pods/log``, ``*``, ``*/log``),
  resource name (empty list = all; requests without a name never match a named rule) match; a
  non-resource rule matches ``nonResourceURLs`` exactly or by a trailing ``*`` prefix.

A ClusterRole with an ``aggregationRule`` grants the union of the rules of the ClusterRoles its
``clusterRoleSelectors`` select (transitively), computed when it is evaluated; kube's aggregation
controller writes that union into ``rules``, with the same effect on authorization. Escalation
prevention (granting only what one holds) is :mod:`peapod.apiserver.rbac_escalation`.

:class:`RBACCache` keeps the four kinds in memory: it lists each store prefix once, then follows a
store watch from the listed revision (relisting after a compaction), so authorization never reads
the store per request. Changes are visible a watch delivery later (milliseconds), as in kube.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from peapod.api.resources import REGISTRY
from peapod.api.selectors import selector_matches
from peapod.store.base import CompactedError, Store

log = logging.getLogger(__name__)

GROUP = "rbac.authorization.k8s.io"
SA_PREFIX = "system:serviceaccount:"

Obj = dict[str, Any]


@dataclass(frozen=True)
class Request:
    """What is asked: a resource request (``path`` None) or a non-resource one (``path`` set)."""

    user: str
    groups: tuple[str, ...]
    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str | None = None


# -- rule matching ------------------------------------------------------------------------------


def _strs(v: Any) -> list[str]:
    return [x for x in v if isinstance(x, str)] if isinstance(v, list) else []


def verb_matches(rule: Obj, verb: str) -> bool:
    return any(v == "*" or v == verb for v in _strs(rule.get("verbs")))


def api_group_matches(rule: Obj, group: str) -> bool:
    return any(g == "*" or g == group for g in _strs(rule.get("apiGroups")))


def resource_matches(rule: Obj, resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for r in _strs(rule.get("resources")):
        if r == "*" or r == combined:
            return True
        if subresource and r == "*/" + subresource:
            return True
    return False


def resource_name_matches(rule: Obj, name: str) -> bool:
    names = _strs(rule.get("resourceNames"))
    return not names or name in names


def non_resource_url_matches(rule: Obj, path: str) -> bool:
    for u in _strs(rule.get("nonResourceURLs")):
        if u == "*" or u == path or (u.endswith("*") and path.startswith(u[:-1])):
            return True
    return False


def rule_allows(rule: Obj, req: Request) -> bool:
    if req.path is not None:
        return verb_matches(rule, req.verb) and non_resource_url_matches(rule, req.path)
    return (
        verb_matches(rule, req.verb)
        and api_group_matches(rule, req.group)
        and resource_matches(rule, req.resource, req.subresource)
        and resource_name_matches(rule, req.name)
    )


# -- subjects ------------------------------------------------------------------------------------


def service_account_username(namespace: str, name: str) -> str:
    return f"{SA_PREFIX}{namespace}:{name}"


def service_account_groups(namespace: str) -> list[str]:
    return ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"]


def subject_applies(subject: Obj, user: str, groups: Iterable[str], binding_namespace: str) -> bool:
    kind = subject.get("kind")
    name = subject.get("name") or ""
    if kind == "User":
        return user == name
    if kind == "Group":
        return name in groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_namespace
        return bool(ns) and user == service_account_username(ns, name)
    return False


def describe_subject(subject: Obj, binding_namespace: str) -> str:
    kind = subject.get("kind", "")
    name = subject.get("name", "")
    if kind == "ServiceAccount":
        return f'{kind} "{name}/{subject.get("namespace") or binding_namespace}"'
    return f'{kind} "{name}"'


# -- the cache ------------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """Roles and bindings by key; plain dicts as stored."""

    cluster_roles: dict[str, Obj] = field(default_factory=dict)  # name -> ClusterRole
    roles: dict[tuple[str, str], Obj] = field(default_factory=dict)  # (ns, name) -> Role
    cluster_role_bindings: dict[str, Obj] = field(default_factory=dict)
    role_bindings: dict[tuple[str, str], Obj] = field(default_factory=dict)


_KINDS = ("clusterroles", "roles", "clusterrolebindings", "rolebindings")


def _info(resource: str) -> Any:
    info = REGISTRY.get(GROUP, "v1", resource)
    assert info is not None, resource
    return info


def _key_of(resource: str, obj: Obj) -> Any:
    meta = obj.get("metadata") or {}
    if resource in ("roles", "rolebindings"):
        return (meta.get("namespace", ""), meta.get("name", ""))
    return meta.get("name", "")


class RBACCache:
    """Roles and bindings from the store, kept current by one store watch per kind."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.snapshot = Snapshot()
        self._tasks: list[asyncio.Task[None]] = []
        self._ready: dict[str, asyncio.Event] = {}

    def _table(self, resource: str) -> dict[Any, Obj]:
        s = self.snapshot
        return {
            "clusterroles": s.cluster_roles,
            "roles": s.roles,
            "clusterrolebindings": s.cluster_role_bindings,
            "rolebindings": s.role_bindings,
        }[resource]

    async def start(self) -> None:
        """List every kind and start following it; returns once the first lists are in."""
        for resource in _KINDS:
            self._ready[resource] = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._follow(resource), name=f"rbac cache {resource}"))
        await asyncio.gather(*(e.wait() for e in self._ready.values()))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()

    async def _follow(self, resource: str) -> None:
        prefix = _info(resource).prefix(None)
        table = self._table(resource)
        backoff = 0.05
        while True:
            try:
                res = await self.store.list(prefix)
                table.clear()
                for kv in res.items:
                    table[_key_from_store_key(resource, prefix, kv.key)] = json.loads(kv.value)
                self._ready[resource].set()
                async for ev in self.store.watch(prefix, res.revision):
                    key = _key_from_store_key(resource, prefix, ev.kv.key)
                    if ev.type == "DELETE":
                        table.pop(key, None)
                    else:
                        table[key] = json.loads(ev.kv.value)
                    backoff = 0.05
            except asyncio.CancelledError:
                raise
            except CompactedError:
                continue  # relist at once
            except Exception as e:  # a store hiccup: relist after a pause
                log.warning("rbac cache %s: %s", resource, e)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    def load(self, objects: Iterable[Obj]) -> None:
        """Fill the cache directly (tests and tools without a store watch)."""
        by_kind = {
            "ClusterRole": "clusterroles",
            "Role": "roles",
            "ClusterRoleBinding": "clusterrolebindings",
            "RoleBinding": "rolebindings",
        }
        for obj in objects:
            resource = by_kind[obj["kind"]]
            self._table(resource)[_key_of(resource, obj)] = obj


def _key_from_store_key(resource: str, prefix: str, key: str) -> Any:
    rest = key[len(prefix):]
    if resource in ("roles", "rolebindings"):
        ns, _, name = rest.partition("/")
        return (ns, name)
    return rest


def cluster_role_rules(cluster_roles: dict[str, Obj], role: Obj) -> list[Obj]:
    """A ClusterRole's rules; for one with an ``aggregationRule``, its own rules plus those of every
    ClusterRole a ``clusterRoleSelectors`` entry selects, followed transitively (cycles stop)."""
    out: list[Obj] = []
    seen: set[str] = set()
    todo = [role]
    while todo:
        r = todo.pop()
        name = (r.get("metadata") or {}).get("name", "")
        if name in seen:
            continue
        seen.add(name)
        rules = r.get("rules")
        if isinstance(rules, list):
            out.extend(x for x in rules if x not in out)
        agg = r.get("aggregationRule")
        if not isinstance(agg, dict):
            continue
        selectors = [x for x in agg.get("clusterRoleSelectors") or [] if isinstance(x, dict)]
        for other in list(cluster_roles.values()):
            labels = (other.get("metadata") or {}).get("labels") or {}
            if other is not r and any(selector_matches(sel, labels) for sel in selectors):
                todo.append(other)
    return out


# -- the authorizer ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RBACDecision:
    allowed: bool
    reason: str = ""


class RBACAuthorizer:
    """Answers requests from a :class:`RBACCache` (or any :class:`Snapshot` holder)."""

    def __init__(self, cache: RBACCache) -> None:
        self.cache = cache

    def _role_rules(self, ref: Obj, namespace: str) -> tuple[list[Obj], str]:
        s = self.cache.snapshot
        kind, name = ref.get("kind"), ref.get("name", "")
        if kind == "ClusterRole":
            role = s.cluster_roles.get(name)
            return (cluster_role_rules(s.cluster_roles, role) if role is not None else []), f'{kind} "{name}"'
        role = s.roles.get((namespace, name)) if kind == "Role" else None
        rules = role.get("rules") if role is not None else None
        return (rules if isinstance(rules, list) else []), f'{kind} "{name}"'

    def role_ref_rules(self, ref: Obj, namespace: str) -> list[Obj] | None:
        """The rules a binding's ``roleRef`` grants (None when the role does not exist)."""
        s = self.cache.snapshot
        kind, name = ref.get("kind"), ref.get("name", "")
        exists = name in s.cluster_roles if kind == "ClusterRole" else (namespace, name) in s.roles
        if kind not in ("ClusterRole", "Role") or not exists:
            return None
        return self._role_rules(ref, namespace)[0]

    def owner_rules(self, user: str, groups: tuple[str, ...], namespace: str) -> list[Obj]:
        """Every rule the user holds in ``namespace`` ("" = cluster-wide only), as stored: kube's
        RulesFor. Non-resource rules come only from ClusterRoleBindings."""
        out: list[Obj] = []
        for rules, source in self._grants(user, groups, namespace):
            cluster_wide = source.startswith("ClusterRoleBinding")
            out.extend(r for r in rules if isinstance(r, dict) and (cluster_wide or not r.get("nonResourceURLs")))
        return out

    def _grants(self, user: str, groups: tuple[str, ...], namespace: str) -> Iterable[tuple[list[Obj], str]]:
        """(rules, source) for every binding that applies to the user, cluster-wide ones first."""
        s = self.cache.snapshot
        for name, crb in list(s.cluster_role_bindings.items()):
            for subject in crb.get("subjects") or []:
                if isinstance(subject, dict) and subject_applies(subject, user, groups, ""):
                    rules, role = self._role_rules(crb.get("roleRef") or {}, "")
                    yield rules, (
                        f'ClusterRoleBinding "{name}" of {role} to {describe_subject(subject, "")}'
                    )
                    break
        if not namespace:
            return
        for (ns, name), rb in list(s.role_bindings.items()):
            if ns != namespace:
                continue
            for subject in rb.get("subjects") or []:
                if isinstance(subject, dict) and subject_applies(subject, user, groups, ns):
                    rules, role = self._role_rules(rb.get("roleRef") or {}, ns)
                    yield rules, f'RoleBinding "{name}/{ns}" of {role} to {describe_subject(subject, ns)}'
                    break

    def authorize(self, req: Request) -> RBACDecision:
        for rules, source in self._grants(req.user, req.groups, "" if req.path is not None else req.namespace):
            for rule in rules:
                if isinstance(rule, dict) and rule_allows(rule, req):
                    return RBACDecision(True, f"RBAC: allowed by {source}")
        return RBACDecision(False, "")

    def rules_for(self, user: str, groups: tuple[str, ...], namespace: str) -> tuple[list[Obj], list[Obj]]:
        """(resourceRules, nonResourceRules) the user holds in ``namespace`` (SelfSubjectRulesReview)."""
        resource_rules: list[Obj] = []
        non_resource: list[Obj] = []
        for rules, source in self._grants(user, groups, namespace):
            cluster_wide = source.startswith("ClusterRoleBinding")
            for rule in rules:
                if not isinstance(rule, dict):
                    continue
                if rule.get("nonResourceURLs"):
                    if cluster_wide:
                        non_resource.append(
                            {"verbs": _strs(rule.get("verbs")), "nonResourceURLs": _strs(rule.get("nonResourceURLs"))}
                        )
                    continue
                out: Obj = {"verbs": _strs(rule.get("verbs"))}
                for k in ("apiGroups", "resources", "resourceNames"):
                    if rule.get(k):
                        out[k] = _strs(rule.get(k))
                resource_rules.append(out)
        return resource_rules, non_resource
