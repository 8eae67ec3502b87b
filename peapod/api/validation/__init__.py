"""Object validation with Kubernetes' field paths and messages.

``validate_object`` runs the create rules, ``validate_update`` the update rules (which include the
create rules for the new object plus immutability). Both expect defaults already applied
(:func:`peapod.api.defaults.apply_defaults`) and return a list of :class:`FieldError`; an empty list
means valid. Turn a non-empty list into a 422 with ``errors.invalid_object(group, kind, name, errs)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from peapod.api import names
from peapod.api.errors import FieldError
from peapod.api.resources import REGISTRY
from peapod.api.validation import apps, core, misc, pods, rbac
from peapod.api.validation.common import validate_object_meta, validate_object_meta_update

Obj = dict[str, Any]

_CREATE: dict[tuple[str, str, str], Callable[[Obj], list[FieldError]]] = {
    ("", "v1", "Pod"): pods.validate_pod,
    ("", "v1", "ConfigMap"): core.validate_configmap,
    ("", "v1", "Secret"): core.validate_secret,
    ("", "v1", "Namespace"): core.validate_namespace,
    ("", "v1", "Node"): core.validate_node,
    ("", "v1", "ServiceAccount"): core.validate_service_account,
    ("", "v1", "Event"): lambda o: misc.validate_event("", o),
    ("events.k8s.io", "v1", "Event"): lambda o: misc.validate_event("events.k8s.io", o),
    ("apps", "v1", "ReplicaSet"): apps.validate_replicaset,
    ("apps", "v1", "Deployment"): apps.validate_deployment,
    ("autoscaling", "v1", "Scale"): apps.validate_scale,
    ("coordination.k8s.io", "v1", "Lease"): misc.validate_lease,
    ("rbac.authorization.k8s.io", "v1", "Role"): rbac.validate_role,
    ("rbac.authorization.k8s.io", "v1", "ClusterRole"): rbac.validate_cluster_role,
    ("rbac.authorization.k8s.io", "v1", "RoleBinding"): rbac.validate_role_binding,
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"): rbac.validate_cluster_role_binding,
}

_UPDATE: dict[tuple[str, str, str], Callable[[Obj, Obj], list[FieldError]]] = {
    ("", "v1", "Pod"): pods.validate_pod_update,
    ("", "v1", "ConfigMap"): core.validate_configmap_update,
    ("", "v1", "Secret"): core.validate_secret_update,
    ("", "v1", "Namespace"): core.validate_namespace_update,
    ("", "v1", "Node"): core.validate_node_update,
    ("", "v1", "ServiceAccount"): core.validate_service_account_update,
    ("", "v1", "Event"): lambda n, o: misc.validate_event_update("", n, o),
    ("events.k8s.io", "v1", "Event"): lambda n, o: misc.validate_event_update("events.k8s.io", n, o),
    ("apps", "v1", "ReplicaSet"): apps.validate_replicaset_update,
    ("apps", "v1", "Deployment"): apps.validate_deployment_update,
    ("autoscaling", "v1", "Scale"): lambda n, o: apps.validate_scale(n),
    ("coordination.k8s.io", "v1", "Lease"): misc.validate_lease_update,
    ("rbac.authorization.k8s.io", "v1", "Role"): rbac.validate_role_update,
    ("rbac.authorization.k8s.io", "v1", "ClusterRole"): rbac.validate_cluster_role_update,
    ("rbac.authorization.k8s.io", "v1", "RoleBinding"): rbac.validate_role_binding_update,
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"): rbac.validate_cluster_role_binding_update,
}


# Request-only kinds that are never stored: nothing of ObjectMeta to check.
_UNSTORED_KINDS = {
    "SelfSubjectAccessReview",
    "SelfSubjectRulesReview",
    "TokenRequest",
    "Binding",
    "PodExecOptions",
    "PodAttachOptions",
    "PodPortForwardOptions",
    "DeleteOptions",
}


def _namespaced(group: str, version: str, kind: str) -> bool:
    info = REGISTRY.by_kind(group, version, kind)
    return info.namespaced if info is not None else True


def validate_object(group: str, version: str, kind: str, obj: Obj) -> list[FieldError]:
    """Create-time validation of a (defaulted) object."""
    fn = _CREATE.get((group, version, kind))
    if fn is not None:
        return fn(obj)
    if kind in _UNSTORED_KINDS:
        return []
    return validate_object_meta(
        obj.get("metadata"), _namespaced(group, version, kind), names.name_is_dns_subdomain
    )


def validate_update(group: str, version: str, kind: str, new: Obj, old: Obj) -> list[FieldError]:
    """Update-time validation: the new object's rules plus what may not change since ``old``."""
    fn = _UPDATE.get((group, version, kind))
    if fn is not None:
        return fn(new, old)
    return validate_object_meta_update(new.get("metadata"), old.get("metadata"))


__all__ = ["validate_object", "validate_update"]
