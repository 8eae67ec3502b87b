"""Admission: ServiceAccount (mutating, pod create), RBAC escalation prevention, and PodSecurity.

ServiceAccount admission (:func:`peapod.apiserver.serviceaccounts.admit_pod`) runs first on a pod
create; RBAC writes go through :mod:`peapod.apiserver.rbac_escalation`. The rest of this module is
PodSecurity, kube-apiserver's built-in Pod Security Standards enforcement.

Runs as a validating step after defaulting and validation (see ``rest.create``/``rest.update``):

- pods (create; updates that change images or add ephemeral containers): the namespace's enforce level
  rejects with 403 Forbidden; warn adds a ``Warning`` header; audit logs a line;
- workloads with a pod template (deployments, replicasets, ...): warn and audit only, like kube;
- namespaces: invalid ``pod-security.kubernetes.io/*`` labels are 422 Invalid; tightening the enforce
  level answers with warnings naming the existing pods that would now be rejected.

Namespaces without an enforce label get the cluster default level (``--pod-security``). Requests in
exempt namespaces (``kube-system``) are not checked.
"""

from __future__ import annotations

import logging
from typing import Any

from peapod.api import errors
from peapod.api.podsecurity import (
    PRIVILEGED,
    LevelVersion,
    Policy,
    Violation,
    check_pod,
    compare_levels,
    existing_pods_warnings,
    format_forbidden,
    format_warning,
    policy_from_labels,
)
from peapod.api.resources import REGISTRY, ResourceInfo
from peapod.apiserver import rbac_escalation
from peapod.apiserver.checks import WriteOptions
from peapod.apiserver.codec import from_storage
from peapod.apiserver.context import ApiContext
from peapod.apiserver.serviceaccounts import admit_pod as admit_service_account
from peapod.apiserver.storage import decode

log = logging.getLogger(__name__)

TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"

EXEMPT_NAMESPACES = frozenset({"kube-system"})
MAX_PODS_TO_CHECK = 3000  # kube's namespaceMaxPodsToCheck

# Kinds whose objects embed a pod template, and where: kube's DefaultPodSpecExtractor.
TEMPLATE_PATHS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "ReplicationController"): ("spec", "template"),
    ("", "PodTemplate"): ("template",),
    ("apps", "ReplicaSet"): ("spec", "template"),
    ("apps", "Deployment"): ("spec", "template"),
    ("apps", "StatefulSet"): ("spec", "template"),
    ("apps", "DaemonSet"): ("spec", "template"),
    ("batch", "Job"): ("spec", "template"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template"),
}

_NS = REGISTRY.get("", "v1", "namespaces")
_PODS = REGISTRY.get("", "v1", "pods")


def default_policy(ctx: ApiContext) -> Policy:
    return Policy.default(ctx.pod_security_default)


async def admit(
    ctx: ApiContext,
    info: ResourceInfo,
    namespace: str | None,
    obj: dict[str, Any],
    old: dict[str, Any] | None,
    mode: str,
    opts: WriteOptions,
) -> None:
    """Check one create (``old`` None) or update; raises ApiError to reject, appends warnings to ``opts``."""
    key = (info.group, info.kind)
    if info.group == rbac_escalation.GROUP and mode == "main":
        await rbac_escalation.admit(info.resource, namespace, obj, old)
    if key == ("", "Pod"):
        if old is None and mode == "main" and namespace:
            await admit_service_account(ctx, namespace, obj)  # mutating: before the validating checks
        if old is None and mode == "main":  # mutating: DefaultTolerationSeconds with the configured seconds
            default_toleration_seconds(obj, ctx.default_not_ready_toleration_seconds,
                                       ctx.default_unreachable_toleration_seconds)
        if mode in ("main", "ephemeralcontainers") and (old is None or _significant_pod_update(obj, old)):
            await _admit_pod(ctx, namespace, obj, opts)
    elif key == ("", "Node"):
        if old is None and mode == "main":
            node_restriction_create(obj)
    elif key == ("", "Namespace"):
        if mode == "main":
            await _admit_namespace(ctx, obj, old, opts)
    elif key in TEMPLATE_PATHS and mode == "main":
        await _admit_workload(ctx, key, namespace, obj, opts)


# -- pods and workloads ----------------------------------------------------------------------------


def node_restriction_create(node: dict[str, Any]) -> None:
    """NodeRestriction: a node (``system:node:<name>``) may create only its own Node object."""
    from peapod.apiserver.authz import node_name

    state = rbac_escalation.REQUEST_AUTH.get()
    if state is None:
        return
    requester = node_name(state[0])
    name = (node.get("metadata") or {}).get("name")
    if requester is not None and name != requester:
        raise errors.ApiError(403, "Forbidden", f'nodes "{name}" is forbidden: node "{requester}" is not allowed '
                                                f'to modify node "{name}"', {"name": name, "kind": "nodes"})


def default_toleration_seconds(pod: dict[str, Any], not_ready: int, unreachable: int) -> None:
    """DefaultTolerationSeconds: a new pod that does not tolerate the not-ready / unreachable
    NoExecute taints gets a toleration of each for kube-apiserver's
    ``--default-not-ready-toleration-seconds`` / ``--default-unreachable-toleration-seconds``."""
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return
    tolerations = spec.get("tolerations")
    if tolerations is None:
        tolerations = []
    if not isinstance(tolerations, list):
        return  # validation reports it
    for key, seconds in ((TAINT_NOT_READY, not_ready), (TAINT_UNREACHABLE, unreachable)):
        if not any(_tolerates_no_execute(t, key) for t in tolerations):
            tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds})
    spec["tolerations"] = tolerations


def _tolerates_no_execute(t: Any, key: str) -> bool:
    return isinstance(t, dict) and t.get("key") in (key, None, "") and t.get("effect") in ("NoExecute", None, "")


async def _namespace_policy(ctx: ApiContext, namespace: str) -> tuple[Policy, list[errors.FieldError]]:
    assert _NS is not None
    got = await ctx.storage.get(_NS, None, namespace)
    labels = (got[0].get("metadata") or {}).get("labels") if got else None
    return policy_from_labels(labels, default_policy(ctx))


class _Evaluator:
    """Evaluates one pod at each level:version once (enforce, audit and warn often coincide)."""

    def __init__(self, meta: dict[str, Any], spec: dict[str, Any]) -> None:
        self.meta, self.spec = meta, spec
        self.cache: dict[LevelVersion, list[Violation]] = {}

    def __call__(self, lv: LevelVersion) -> list[Violation]:
        if lv not in self.cache:
            self.cache[lv] = check_pod(lv.level, self.spec, self.meta, lv.version)
        return self.cache[lv]


def _add_warning(opts: WriteOptions, text: str) -> None:
    if text not in opts.warnings:  # an update retried after a conflict admits again
        opts.warnings.append(text)


def _audit_and_warn(
    evaluate: _Evaluator, policy: Policy, opts: WriteOptions, what: str, namespace: str
) -> None:
    audit = evaluate(policy.audit)
    if audit:
        log.info(
            "PodSecurity audit: %s in namespace %s: %s",
            what, namespace, format_warning(policy.audit.level, policy.audit.version, audit),
        )
    warn = evaluate(policy.warn)
    if warn:
        _add_warning(opts, format_warning(policy.warn.level, policy.warn.version, warn))


async def _admit_pod(ctx: ApiContext, namespace: str | None, pod: dict[str, Any], opts: WriteOptions) -> None:
    if not namespace or namespace in EXEMPT_NAMESPACES:
        return
    policy, errs = await _namespace_policy(ctx, namespace)
    if not errs and policy.fully_privileged():
        return
    if errs:
        log.info("PodSecurity: namespace %s has invalid labels: %s", namespace, [e.message() for e in errs])
    meta = pod.get("metadata") or {}
    name = meta.get("name") or ""
    evaluate = _Evaluator(meta, pod.get("spec") or {})
    enforce = evaluate(policy.enforce)
    if enforce:
        message = format_forbidden(policy.enforce.level, policy.enforce.version, enforce, name)
        log.info("PodSecurity: rejected pod in namespace %s: %s", namespace, message)
        raise errors.ApiError(403, "Forbidden", message, {"name": name, "kind": "pods"} if name else {"kind": "pods"})
    _audit_and_warn(evaluate, policy, opts, f"pod {name}", namespace)


def _template(obj: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    cur: Any = obj
    for part in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur if isinstance(cur, dict) else None


async def _admit_workload(
    ctx: ApiContext, key: tuple[str, str], namespace: str | None, obj: dict[str, Any], opts: WriteOptions
) -> None:
    """Pod templates are checked for warn and audit only: enforce applies to the pods made from them."""
    if not namespace or namespace in EXEMPT_NAMESPACES:
        return
    template = _template(obj, TEMPLATE_PATHS[key])
    if template is None:
        return
    policy, _ = await _namespace_policy(ctx, namespace)
    if policy.warn.level == PRIVILEGED and policy.audit.level == PRIVILEGED:
        return
    evaluate = _Evaluator(template.get("metadata") or {}, template.get("spec") or {})
    name = (obj.get("metadata") or {}).get("name", "")
    _audit_and_warn(evaluate, policy, opts, f"{key[1].lower()} {name}", namespace)


def _significant_pod_update(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """Kube's isSignificantPodUpdate: only image changes and added ephemeral containers matter
    (the rest of a pod's spec is immutable)."""
    ns, os_ = new.get("spec") or {}, old.get("spec") or {}
    for key in ("containers", "initContainers"):
        a, b = ns.get(key) or [], os_.get(key) or []
        if len(a) != len(b):
            return True
        if any((x or {}).get("image") != (y or {}).get("image") for x, y in zip(a, b, strict=True)):
            return True
    old_eph = {(c or {}).get("name"): c for c in os_.get("ephemeralContainers") or []}
    for c in ns.get("ephemeralContainers") or []:
        prev = old_eph.get((c or {}).get("name"))
        if prev is None or (prev or {}).get("image") != (c or {}).get("image"):
            return True
    return False


# -- namespaces ----------------------------------------------------------------------------------


def _exempt_warning(name: str, policy: Policy, defaults: Policy, labels: dict[str, str]) -> str | None:
    if policy.fully_privileged() or policy.equivalent(defaults):
        return None
    parts = []
    for mode, lv in (("enforce", policy.enforce), ("audit", policy.audit), ("warn", policy.warn)):
        label = f"pod-security.kubernetes.io/{mode}"
        if lv.level != PRIVILEGED and (label in labels or f"{label}-version" in labels):
            parts.append(f"{mode}={lv}")
    return f'namespace "{name}" is exempt from Pod Security, and the policy ({", ".join(parts)}) will be ignored'


async def _admit_namespace(
    ctx: ApiContext, ns: dict[str, Any], old: dict[str, Any] | None, opts: WriteOptions
) -> None:
    defaults = default_policy(ctx)
    meta = ns.get("metadata") or {}
    name = meta.get("name") or ""
    labels = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
    policy, errs = policy_from_labels(labels, defaults)
    if old is None:
        if errs:
            raise errors.invalid_object("", "Namespace", name, errs)
        if name in EXEMPT_NAMESPACES:
            warning = _exempt_warning(name, policy, defaults, labels)
            if warning:
                _add_warning(opts, warning)
        return
    old_policy, old_errs = policy_from_labels((old.get("metadata") or {}).get("labels"), defaults)
    if errs and (not old_errs or [e.message() for e in errs] != [e.message() for e in old_errs]):
        raise errors.invalid_object("", "Namespace", name, errs)
    new_lv, old_lv = policy.enforce, old_policy.enforce
    if new_lv == old_lv or new_lv.level == PRIVILEGED:
        return
    if new_lv.version == old_lv.version and compare_levels(new_lv.level, old_lv.level) < 1:
        return
    if name in EXEMPT_NAMESPACES:
        warning = _exempt_warning(name, policy, defaults, labels)
        if warning:
            _add_warning(opts, warning)
        return
    for warning in await _existing_pod_warnings(ctx, name, new_lv):
        _add_warning(opts, warning)


def _controller_uid(pod: dict[str, Any]) -> str | None:
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller") is True:
            return str(ref.get("uid", ""))
    return None


def _prioritize(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One pod per controller first (kube's prioritizePods), then the controllers' other replicas."""
    first: list[dict[str, Any]] = []
    rest: list[dict[str, Any]] = []
    seen: set[str] = set()
    for pod in pods:
        uid = _controller_uid(pod)
        if uid is None:
            first.append(pod)
        elif uid in seen:
            rest.append(pod)
        else:
            seen.add(uid)
            first.append(pod)
    return first + rest


async def _existing_pod_warnings(ctx: ApiContext, namespace: str, enforce: LevelVersion) -> list[str]:
    assert _PODS is not None
    try:
        result = await ctx.storage.list(_PODS, namespace)
    except errors.ApiError:
        return ["failed to list pods while checking new PodSecurity enforce level"]
    pods = _prioritize([from_storage(_PODS, decode(kv)) for kv in result.items])
    checked = pods[:MAX_PODS_TO_CHECK]
    evaluated = [
        ((p.get("metadata") or {}).get("name", ""),
         check_pod(enforce.level, p.get("spec") or {}, p.get("metadata") or {}, enforce.version))
        for p in checked
    ]
    return existing_pods_warnings(namespace, enforce, evaluated, total=len(pods))
