"""The registry of served resources: what each one is called, where it lives, what it supports.

Discovery, OpenAPI, routing, tables and the store key layout all read this one table, so adding a
resource means adding one entry here (plus its validation/defaulting and table columns).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Subresource:
    name: str  # "status", "scale", "log", ...
    kind: str  # kind of the object exchanged on it
    verbs: tuple[str, ...]
    group: str = ""  # group/version of that kind when it differs from the parent (Scale)
    version: str = ""


@dataclass(frozen=True)
class ResourceInfo:
    group: str  # "" for the core group
    version: str
    resource: str  # plural, lower case: "pods"
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    categories: tuple[str, ...] = ()
    subresources: tuple[Subresource, ...] = ()
    # Resources that share storage with another (events.k8s.io/v1 events are core events) name it.
    storage_resource: str = ""
    storage_group: str | None = None
    # Whether spec changes bump metadata.generation (objects with a spec/status split).
    has_status: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()

    def subresource(self, name: str) -> Subresource | None:
        for s in self.subresources:
            if s.name == name:
                return s
        return None

    # -- store key layout -------------------------------------------------------------------
    def _storage_base(self) -> str:
        res = self.storage_resource or self.resource
        grp = self.group if self.storage_group is None else self.storage_group
        return f"/registry/{res}.{grp}" if grp else f"/registry/{res}"

    def key(self, namespace: str | None, name: str) -> str:
        if self.namespaced:
            return f"{self._storage_base()}/{namespace}/{name}"
        return f"{self._storage_base()}/{name}"

    def prefix(self, namespace: str | None = None) -> str:
        """Store prefix for a list: all namespaces when ``namespace`` is None."""
        if self.namespaced and namespace:
            return f"{self._storage_base()}/{namespace}/"
        return f"{self._storage_base()}/"


_STATUS = lambda kind: Subresource("status", kind, ("get", "patch", "update"))  # noqa: E731
_SCALE = Subresource("scale", "Scale", ("get", "patch", "update"), "autoscaling", "v1")

RESOURCES: tuple[ResourceInfo, ...] = (
    ResourceInfo(
        "", "v1", "namespaces", "Namespace", False, short_names=("ns",),
        verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
        subresources=(_STATUS("Namespace"), Subresource("finalize", "Namespace", ("update",))),
        has_status=True,
    ),
    ResourceInfo(
        "", "v1", "pods", "Pod", True, short_names=("po",), categories=("all",),
        subresources=(
            _STATUS("Pod"),
            Subresource("binding", "Binding", ("create",)),
            Subresource("log", "Pod", ("get",)),
            Subresource("exec", "PodExecOptions", ("create", "get")),
            Subresource("attach", "PodAttachOptions", ("create", "get")),
            Subresource("portforward", "PodPortForwardOptions", ("create", "get")),
            Subresource("ephemeralcontainers", "Pod", ("get", "patch", "update")),
        ),
        has_status=True,
    ),
    ResourceInfo(
        "", "v1", "nodes", "Node", False, short_names=("no",),
        subresources=(_STATUS("Node"),), has_status=True,
    ),
    ResourceInfo("", "v1", "events", "Event", True, short_names=("ev",)),
    ResourceInfo("", "v1", "configmaps", "ConfigMap", True, short_names=("cm",)),
    ResourceInfo("", "v1", "secrets", "Secret", True),
    ResourceInfo(
        "", "v1", "serviceaccounts", "ServiceAccount", True, short_names=("sa",),
        subresources=(Subresource("token", "TokenRequest", ("create",), "authentication.k8s.io", "v1"),),
    ),
    ResourceInfo(
        "apps", "v1", "replicasets", "ReplicaSet", True, short_names=("rs",), categories=("all",),
        subresources=(_STATUS("ReplicaSet"), _SCALE), has_status=True,
    ),
    ResourceInfo(
        "apps", "v1", "deployments", "Deployment", True, short_names=("deploy",), categories=("all",),
        subresources=(_STATUS("Deployment"), _SCALE), has_status=True,
    ),
    ResourceInfo("coordination.k8s.io", "v1", "leases", "Lease", True),
    ResourceInfo(
        "events.k8s.io", "v1", "events", "Event", True, short_names=("ev",),
        storage_resource="events", storage_group="",
    ),
    ResourceInfo(
        "authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False,
        verbs=("create",),
    ),
    ResourceInfo(
        "authorization.k8s.io", "v1", "selfsubjectrulesreviews", "SelfSubjectRulesReview", False,
        verbs=("create",),
    ),
    ResourceInfo("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    ResourceInfo("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    ResourceInfo("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    ResourceInfo("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    # Read-only, computed from the node agents' stats (peapod/apiserver/metricsapi.py), never stored.
    ResourceInfo("metrics.k8s.io", "v1beta1", "nodes", "NodeMetrics", False, verbs=("get", "list")),
    ResourceInfo("metrics.k8s.io", "v1beta1", "pods", "PodMetrics", True, verbs=("get", "list")),
)

# Preferred group order for discovery (core first, like kube-apiserver).
GROUP_ORDER = ("", "apps", "events.k8s.io", "authorization.k8s.io", "autoscaling", "coordination.k8s.io")


@dataclass
class Registry:
    """Lookup of resources by group/version/resource and by kind."""

    resources: tuple[ResourceInfo, ...] = RESOURCES
    _by_gvr: dict[tuple[str, str, str], ResourceInfo] = field(default_factory=dict, init=False)
    _by_gvk: dict[tuple[str, str, str], ResourceInfo] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        for r in self.resources:
            self._by_gvr[(r.group, r.version, r.resource)] = r
            self._by_gvk.setdefault((r.group, r.version, r.kind), r)

    def get(self, group: str, version: str, resource: str) -> ResourceInfo | None:
        return self._by_gvr.get((group, version, resource))

    def by_kind(self, group: str, version: str, kind: str) -> ResourceInfo | None:
        return self._by_gvk.get((group, version, kind))

    def group_versions(self) -> list[tuple[str, str]]:
        seen: list[tuple[str, str]] = []
        for r in self.resources:
            if (r.group, r.version) not in seen:
                seen.append((r.group, r.version))
        order = {g: i for i, g in enumerate(GROUP_ORDER)}
        return sorted(seen, key=lambda gv: (order.get(gv[0], len(order)), gv[0]))

    def in_group_version(self, group: str, version: str) -> list[ResourceInfo]:
        return [r for r in self.resources if r.group == group and r.version == version]


REGISTRY = Registry()


def api_path(info: ResourceInfo, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
    """The REST path of a collection or an object: /api/v1/namespaces/ns/pods/name/status."""
    base = f"/apis/{info.group}/{info.version}" if info.group else f"/api/{info.version}"
    if info.namespaced and namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{info.resource}"
    if name:
        base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
    return base


def resource(group: str, version: str, plural: str) -> ResourceInfo:
    """Look up a served resource; KeyError when it is not served."""
    info = REGISTRY.get(group, version, plural)
    if info is None:
        raise KeyError(f"{plural}.{group or 'core'}/{version} is not served")
    return info
