"""Container probes (liveness, readiness, startup) with kubelet's semantics.

- :class:`ProbeManager` -- workers per (pod, container, probe type) and the results cache.
- :class:`Prober` -- runs one exec/httpGet/tcpSocket/grpc probe; network probes connect from inside
  the pod's network namespace (:mod:`peapod.node.netns`).
"""

from peapod.node.probes.handlers import Prober
from peapod.node.probes.manager import ProbeManager, ProbeUpdate, RestartRequest, probed_containers
from peapod.node.probes.types import (
    K8S_VERSION,
    Outcome,
    ProbeResult,
    ProbeSpec,
    ProbeType,
    Result,
    Target,
)

__all__ = [
    "K8S_VERSION", "Outcome", "ProbeManager", "ProbeResult", "ProbeSpec", "ProbeType", "ProbeUpdate",
    "Prober", "RestartRequest", "Result", "Target", "probed_containers",
]
