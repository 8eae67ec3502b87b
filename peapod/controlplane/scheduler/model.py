"""Pre-computed pod and node views the plugins read (kube's PodInfo and NodeInfo).

A :class:`PodInfo` is built once per pod object: requests, host ports, tolerations and the
compiled affinity / spread terms. A :class:`NodeInfo` keeps incremental aggregates of the pods
bound or assumed on its node, so the filters are O(1) per node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peapod.controlplane.scheduler.resources import Allocatable, Resources, node_allocatable, pod_requests
from peapod.controlplane.scheduler.selectors import (
    EVERYTHING,
    LabelMatcher,
    NodeSelector,
    NodeSelectorTerm,
    compile_label_selector,
    compile_node_selector,
    compile_node_selector_term,
)

Obj = dict[str, Any]
HOSTNAME = "kubernetes.io/hostname"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
# Node conditions that the node lifecycle controller turns into NoSchedule taints.
CONDITION_TAINTS = {
    ("MemoryPressure", "True"): "node.kubernetes.io/memory-pressure",
    ("DiskPressure", "True"): "node.kubernetes.io/disk-pressure",
    ("PIDPressure", "True"): "node.kubernetes.io/pid-pressure",
    ("NetworkUnavailable", "True"): "node.kubernetes.io/network-unavailable",
}


def pod_key(pod: Obj) -> str:
    md = pod.get("metadata") or {}
    return f"{md.get('namespace') or 'default'}/{md.get('name')}"


# -- taints and tolerations ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str
    effect: str


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str
    operator: str
    value: str
    effect: str

    def tolerates(self, taint: Taint) -> bool:
        if self.effect and self.effect != taint.effect:
            return False
        if self.key and self.key != taint.key:
            return False
        if self.operator == "Exists":
            return True
        if self.operator in ("", "Equal"):
            return self.value == taint.value
        return False


def tolerated(tolerations: tuple[Toleration, ...], taint: Taint) -> bool:
    for t in tolerations:
        if t.tolerates(taint):
            return True
    return False


def _tolerations(spec: Obj) -> tuple[Toleration, ...]:
    out = []
    for t in spec.get("tolerations") or []:
        if isinstance(t, dict):
            out.append(Toleration(str(t.get("key") or ""), str(t.get("operator") or ""),
                                  str(t.get("value") or ""), str(t.get("effect") or "")))
    return tuple(out)


# -- pod affinity terms and spread constraints --------------------------------------------------
@dataclass(frozen=True, slots=True)
class AffinityTerm:
    """A pod (anti-)affinity term: pods in ``namespaces`` (or namespaces matching
    ``namespace_selector``) whose labels match ``selector``, within ``topology_key``."""

    selector: LabelMatcher
    topology_key: str
    namespaces: frozenset[str]
    namespace_selector: LabelMatcher | None = None

    def matches(self, pod: PodInfo, ns_labels: dict[str, str] | None) -> bool:
        if pod.namespace in self.namespaces or (
            self.namespace_selector is not None and self.namespace_selector.matches(ns_labels or {})
        ):
            return self.selector.matches(pod.labels)
        return False


def _affinity_term(term: Any, pod_ns: str, pod_labels: dict[str, str]) -> AffinityTerm | None:
    if not isinstance(term, dict):
        return None
    sel = compile_label_selector(term.get("labelSelector"))
    extra = []
    for key in term.get("matchLabelKeys") or []:
        if key in pod_labels:
            extra.append((key, "In", frozenset([pod_labels[key]])))
    for key in term.get("mismatchLabelKeys") or []:
        if key in pod_labels:
            extra.append((key, "NotIn", frozenset([pod_labels[key]])))
    sel = sel.with_requirements(extra)
    namespaces = frozenset(term.get("namespaces") or [])
    ns_sel_raw = term.get("namespaceSelector")
    ns_sel = compile_label_selector(ns_sel_raw) if ns_sel_raw is not None else None
    if not namespaces and ns_sel is None:
        namespaces = frozenset([pod_ns])
    return AffinityTerm(sel, str(term.get("topologyKey") or ""), namespaces, ns_sel)


@dataclass(frozen=True, slots=True)
class SpreadConstraint:
    max_skew: int
    topology_key: str
    when_unsatisfiable: str
    selector: LabelMatcher
    min_domains: int
    node_affinity_policy: str  # Honor (default) | Ignore
    node_taints_policy: str  # Ignore (default) | Honor


def _spread_constraints(spec: Obj, pod_labels: dict[str, str]) -> tuple[SpreadConstraint, ...]:
    out = []
    for c in spec.get("topologySpreadConstraints") or []:
        if not isinstance(c, dict):
            continue
        sel = compile_label_selector(c.get("labelSelector"))
        keys = [k for k in c.get("matchLabelKeys") or [] if k in pod_labels]
        extra = [(k, "In", frozenset([pod_labels[k]])) for k in keys]
        out.append(SpreadConstraint(
            max_skew=int(c.get("maxSkew") or 1), topology_key=str(c.get("topologyKey") or ""),
            when_unsatisfiable=str(c.get("whenUnsatisfiable") or "DoNotSchedule"),
            selector=sel.with_requirements(extra), min_domains=int(c.get("minDomains") or 1),
            node_affinity_policy=str(c.get("nodeAffinityPolicy") or "Honor"),
            node_taints_policy=str(c.get("nodeTaintsPolicy") or "Ignore"),
        ))
    return tuple(out)


def normalized_image_name(name: str) -> str:
    """kube's normalizedImageName: add ':latest' when the name carries no tag."""
    if name.rfind(":") <= name.rfind("/"):
        return name + ":latest"
    return name


# -- PodInfo ------------------------------------------------------------------------------------
@dataclass(slots=True, eq=False)
class PodInfo:
    obj: Obj
    key: str
    name: str
    namespace: str
    uid: str
    labels: dict[str, str]
    node_name: str
    terminating: bool
    priority: int
    requests: Resources
    nz_cpu: int
    nz_memory: int
    host_ports: tuple[tuple[str, str, int], ...]  # (hostIP, protocol, hostPort)
    images: tuple[str, ...]
    tolerations: tuple[Toleration, ...]
    node_selector: dict[str, str]
    required_node_affinity: NodeSelector | None
    preferred_node_affinity: tuple[tuple[int, NodeSelectorTerm], ...]
    required_affinity: tuple[AffinityTerm, ...]
    required_anti_affinity: tuple[AffinityTerm, ...]
    preferred_affinity: tuple[tuple[int, AffinityTerm], ...]
    preferred_anti_affinity: tuple[tuple[int, AffinityTerm], ...]
    spread: tuple[SpreadConstraint, ...]
    requests_zero: bool = field(default=False)

    @property
    def has_scoring_affinity(self) -> bool:
        """Terms of this (existing) pod that the InterPodAffinity score reads."""
        return bool(self.required_affinity or self.preferred_affinity or self.preferred_anti_affinity)

    def matches_node_selector_and_affinity(self, labels: dict[str, str], name: str) -> bool:
        """kube's RequiredNodeAffinity.Match: nodeSelector AND required node affinity."""
        for k, v in self.node_selector.items():
            if labels.get(k) != v:
                return False
        return self.required_node_affinity is None or self.required_node_affinity.matches(labels, name)


def pod_info(pod: Obj) -> PodInfo:
    md = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    labels = dict(md.get("labels") or {})
    ns = md.get("namespace") or "default"
    req = pod_requests(spec)
    nz = pod_requests(spec, non_zero=True)
    ports = []
    images = []
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        if c.get("image"):
            images.append(normalized_image_name(str(c["image"])))
    port_containers = list(spec.get("containers") or []) + [
        c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"
    ]
    for c in port_containers:
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                ip, proto = str(p.get("hostIP") or "0.0.0.0"), str(p.get("protocol") or "TCP")
                ports.append((ip, proto, int(p["hostPort"])))
    aff = spec.get("affinity") or {}
    na = aff.get("nodeAffinity") or {}
    req_na = na.get("requiredDuringSchedulingIgnoredDuringExecution")
    pref_na = tuple(
        (int(t.get("weight") or 0), compile_node_selector_term(t.get("preference")))
        for t in na.get("preferredDuringSchedulingIgnoredDuringExecution") or [] if isinstance(t, dict)
    )
    pa = aff.get("podAffinity") or {}
    paa = aff.get("podAntiAffinity") or {}

    def terms(raw: Any) -> tuple[AffinityTerm, ...]:
        return tuple(t for t in (_affinity_term(x, ns, labels) for x in raw or []) if t is not None)

    def weighted(raw: Any) -> tuple[tuple[int, AffinityTerm], ...]:
        out = []
        for x in raw or []:
            if isinstance(x, dict):
                t = _affinity_term(x.get("podAffinityTerm"), ns, labels)
                if t is not None:
                    out.append((int(x.get("weight") or 0), t))
        return tuple(out)

    return PodInfo(
        obj=pod, key=f"{ns}/{md.get('name')}", name=str(md.get("name")), namespace=ns,
        uid=str(md.get("uid") or ""), labels=labels, node_name=str(spec.get("nodeName") or ""),
        terminating=bool(md.get("deletionTimestamp")), priority=int(spec.get("priority") or 0),
        requests=req, nz_cpu=nz.cpu, nz_memory=nz.memory, host_ports=tuple(ports), images=tuple(images),
        tolerations=_tolerations(spec), node_selector=dict(spec.get("nodeSelector") or {}),
        required_node_affinity=compile_node_selector(req_na) if req_na is not None else None,
        preferred_node_affinity=pref_na,
        required_affinity=terms(pa.get("requiredDuringSchedulingIgnoredDuringExecution")),
        required_anti_affinity=terms(paa.get("requiredDuringSchedulingIgnoredDuringExecution")),
        preferred_affinity=weighted(pa.get("preferredDuringSchedulingIgnoredDuringExecution")),
        preferred_anti_affinity=weighted(paa.get("preferredDuringSchedulingIgnoredDuringExecution")),
        spread=_spread_constraints(spec, labels), requests_zero=req.is_zero(),
    )


# -- NodeInfo -----------------------------------------------------------------------------------
def _node_taints(node: Obj) -> tuple[list[Taint], bool]:
    """The node's taints plus the NoSchedule ones kube's lifecycle controller derives from conditions."""
    spec = node.get("spec") or {}
    taints = [
        Taint(str(t.get("key") or ""), str(t.get("value") or ""), str(t.get("effect") or ""))
        for t in spec.get("taints") or [] if isinstance(t, dict)
    ]
    have = {(t.key, t.effect) for t in taints}
    conds = {c.get("type"): c.get("status") for c in (node.get("status") or {}).get("conditions") or []
             if isinstance(c, dict)}
    ready = conds.get("Ready")
    derived = []
    if ready == "Unknown":
        derived.append(TAINT_UNREACHABLE)
    elif ready != "True":
        derived.append(TAINT_NOT_READY)
    for (ctype, cstatus), key in CONDITION_TAINTS.items():
        if conds.get(ctype) == cstatus:
            derived.append(key)
    for key in derived:
        if (key, "NoSchedule") not in have:
            taints.append(Taint(key, "", "NoSchedule"))
    return taints, ready == "True"


class NodeInfo:
    """A node and the aggregates of the pods bound or assumed on it."""

    __slots__ = (
        "affinity_pods",
        "alloc",
        "anti_affinity_pods",
        "generation",
        "hard_taints",
        "images",
        "labels",
        "name",
        "node",
        "nz_cpu",
        "nz_memory",
        "pods",
        "prefer_taints",
        "ready",
        "requested",
        "unschedulable",
        "used_ports",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.node: Obj | None = None
        self.labels: dict[str, str] = {}
        self.unschedulable = False
        self.ready = False
        self.hard_taints: tuple[Taint, ...] = ()
        self.prefer_taints: tuple[Taint, ...] = ()
        self.alloc = Allocatable()
        self.requested = Resources()
        self.nz_cpu = 0
        self.nz_memory = 0
        self.pods: dict[str, PodInfo] = {}
        self.used_ports: dict[tuple[str, int], dict[str, int]] = {}  # (proto, port) -> {ip: count}
        self.images: dict[str, int] = {}  # normalized image name -> size in bytes
        self.anti_affinity_pods = 0
        self.affinity_pods = 0
        self.generation = 0

    def set_node(self, node: Obj) -> None:
        self.node = node
        md = node.get("metadata") or {}
        spec = node.get("spec") or {}
        self.labels = dict(md.get("labels") or {})
        self.unschedulable = bool(spec.get("unschedulable"))
        taints, self.ready = _node_taints(node)
        self.hard_taints = tuple(t for t in taints if t.effect in ("NoSchedule", "NoExecute"))
        self.prefer_taints = tuple(t for t in taints if t.effect == "PreferNoSchedule")
        self.alloc = node_allocatable(node)
        images: dict[str, int] = {}
        for img in (node.get("status") or {}).get("images") or []:
            size = int(img.get("sizeBytes") or 0)
            for n in img.get("names") or []:
                images[str(n)] = size
        self.images = images
        self.generation += 1

    def add_pod(self, p: PodInfo) -> None:
        self.pods[p.key] = p
        self.requested.add(p.requests)
        self.nz_cpu += p.nz_cpu
        self.nz_memory += p.nz_memory
        for ip, proto, port in p.host_ports:
            ips = self.used_ports.setdefault((proto, port), {})
            ips[ip] = ips.get(ip, 0) + 1
        if p.required_anti_affinity:
            self.anti_affinity_pods += 1
        if p.has_scoring_affinity:
            self.affinity_pods += 1
        self.generation += 1

    def remove_pod(self, key: str) -> PodInfo | None:
        p = self.pods.pop(key, None)
        if p is None:
            return None
        r = self.requested
        r.cpu -= p.requests.cpu
        r.memory -= p.requests.memory
        r.ephemeral -= p.requests.ephemeral
        for k, v in p.requests.scalar.items():
            r.scalar[k] = r.scalar.get(k, 0) - v
        self.nz_cpu -= p.nz_cpu
        self.nz_memory -= p.nz_memory
        for ip, proto, port in p.host_ports:
            ips = self.used_ports.get((proto, port))
            if ips is not None:
                ips[ip] -= 1
                if ips[ip] <= 0:
                    del ips[ip]
                if not ips:
                    del self.used_ports[(proto, port)]
        if p.required_anti_affinity:
            self.anti_affinity_pods -= 1
        if p.has_scoring_affinity:
            self.affinity_pods -= 1
        self.generation += 1
        return p


__all__ = [
    "EVERYTHING", "HOSTNAME", "AffinityTerm", "NodeInfo", "PodInfo", "SpreadConstraint", "Taint",
    "Toleration", "normalized_image_name", "pod_info", "pod_key", "tolerated",
]
