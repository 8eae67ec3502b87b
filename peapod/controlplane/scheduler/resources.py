"""Resource arithmetic: a pod's effective requests and a node's allocatable, as plain integers.

cpu is in millicores, everything else in units (bytes for memory, ephemeral-storage, hugepages).
The pod rule is kube's ``PodRequests``: sum of app containers plus sidecars (restartable init
containers), the max with each init container (plus the sidecars started before it), plus
``spec.overhead``. The "non-zero" variant counts 100m cpu / 200Mi memory for containers that
request none, which the scoring plugins use so best-effort pods still spread out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from peapod.api.quantity import parse_quantity

DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024
CPU, MEMORY, EPHEMERAL, PODS = "cpu", "memory", "ephemeral-storage", "pods"


@lru_cache(maxsize=4096)
def _milli(value: str) -> int:
    try:
        return math.ceil(parse_quantity(value) * 1000)
    except ValueError:
        return 0


@lru_cache(maxsize=4096)
def _units(value: str) -> int:
    try:
        return math.ceil(parse_quantity(value))
    except ValueError:
        return 0


def quantity_value(name: str, value: Any) -> int:
    text = str(value)
    return _milli(text) if name == CPU else _units(text)


def is_scalar_resource(name: str) -> bool:
    """Extended resources, hugepages and prefixed native resources (kube's IsScalarResourceName)."""
    return "/" in name or name.startswith("hugepages-")


@dataclass(slots=True)
class Resources:
    cpu: int = 0
    memory: int = 0
    ephemeral: int = 0
    scalar: dict[str, int] = field(default_factory=dict)

    def add(self, other: Resources) -> None:
        self.cpu += other.cpu
        self.memory += other.memory
        self.ephemeral += other.ephemeral
        for k, v in other.scalar.items():
            self.scalar[k] = self.scalar.get(k, 0) + v

    def max_with(self, other: Resources) -> None:
        self.cpu = max(self.cpu, other.cpu)
        self.memory = max(self.memory, other.memory)
        self.ephemeral = max(self.ephemeral, other.ephemeral)
        for k, v in other.scalar.items():
            self.scalar[k] = max(self.scalar.get(k, 0), v)

    def copy(self) -> Resources:
        return Resources(self.cpu, self.memory, self.ephemeral, dict(self.scalar))

    def is_zero(self) -> bool:
        return not (self.cpu or self.memory or self.ephemeral or any(self.scalar.values()))


def resource_list(rl: Any) -> Resources:
    """A v1.ResourceList dict -> Resources (unknown non-scalar names are ignored, like kube)."""
    out = Resources()
    if not isinstance(rl, dict):
        return out
    for name, value in rl.items():
        if name == CPU:
            out.cpu = quantity_value(CPU, value)
        elif name == MEMORY:
            out.memory = quantity_value(MEMORY, value)
        elif name == EPHEMERAL:
            out.ephemeral = quantity_value(EPHEMERAL, value)
        elif is_scalar_resource(name):
            out.scalar[name] = quantity_value(name, value)
    return out


def container_requests(c: dict[str, Any], *, non_zero: bool = False) -> Resources:
    res = c.get("resources") or {}
    requests = dict(res.get("requests") or {})
    # API defaulting copies limits into missing requests; do it here too for undefaulted objects.
    for name, value in (res.get("limits") or {}).items():
        requests.setdefault(name, value)
    r = resource_list(requests)
    if non_zero:
        if CPU not in requests:
            r.cpu = DEFAULT_MILLI_CPU
        if MEMORY not in requests:
            r.memory = DEFAULT_MEMORY
    return r


def pod_requests(spec: dict[str, Any], *, non_zero: bool = False) -> Resources:
    total = Resources()
    for c in spec.get("containers") or []:
        total.add(container_requests(c, non_zero=non_zero))
    sidecars = Resources()
    init_max = Resources()
    for c in spec.get("initContainers") or []:
        req = container_requests(c, non_zero=non_zero)
        if c.get("restartPolicy") == "Always":
            total.add(req)
            sidecars.add(req)
            req = sidecars.copy()
        else:
            req.add(sidecars)
        init_max.max_with(req)
    total.max_with(init_max)
    overhead = spec.get("overhead")
    if overhead:
        total.add(resource_list(overhead))
    return total


@dataclass(slots=True)
class Allocatable:
    cpu: int = 0
    memory: int = 0
    ephemeral: int = 0
    pods: int = 0
    scalar: dict[str, int] = field(default_factory=dict)


def node_allocatable(node: dict[str, Any]) -> Allocatable:
    status = node.get("status") or {}
    rl = status.get("allocatable")
    if not rl:
        rl = status.get("capacity") or {}
    r = resource_list(rl)
    pods = quantity_value(PODS, rl.get(PODS, 0)) if isinstance(rl, dict) else 0
    return Allocatable(r.cpu, r.memory, r.ephemeral, pods, r.scalar)
