"""Probe kinds, results and the parsed probe spec (defaults as the API server applies them)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The Kubernetes minor version peapod speaks; kubelet's User-Agent is "kube-probe/<major>.<minor>".
K8S_VERSION = "1.33"
PROBE_USER_AGENT = f"kube-probe/{K8S_VERSION}"
LIFECYCLE_USER_AGENT = f"kube-lifecycle/{K8S_VERSION}"

# kubelet reads at most this much of a probe's output / response body.
MAX_OUTPUT = 10 * 1024


class ProbeType(enum.StrEnum):
    """Values are how kubelet names them in events ("Liveness probe failed: ...")."""

    LIVENESS = "Liveness"
    READINESS = "Readiness"
    STARTUP = "Startup"

    @property
    def field(self) -> str:
        return {"Liveness": "livenessProbe", "Readiness": "readinessProbe", "Startup": "startupProbe"}[self]


class Outcome(enum.Enum):
    """One probe run's result (kubelet's probe.Result). WARNING counts as success (+ an event)."""

    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"
    UNKNOWN = "unknown"


class Result(enum.Enum):
    """What the results cache holds (kubelet's results.Result)."""

    UNKNOWN = "unknown"
    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True)
class ProbeResult:
    """A probe run: ``outcome``, kubelet's ``output`` text, and ``error`` when it could not run
    (bad port, missing handler...): such results are thrown away, not counted."""

    outcome: Outcome
    output: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.outcome in (Outcome.SUCCESS, Outcome.WARNING)


@dataclass(frozen=True)
class ProbeSpec:
    """A container probe (``v1.Probe``) with API defaults filled in."""

    handler: Mapping[str, Any]  # {"exec": ...} | {"httpGet": ...} | {"tcpSocket": ...} | {"grpc": ...}
    initial_delay: float = 0
    period: float = 10
    timeout: float = 1
    success_threshold: int = 1
    failure_threshold: int = 3
    termination_grace_period: int | None = None

    @classmethod
    def from_dict(cls, probe: Mapping[str, Any]) -> ProbeSpec:
        handler = {k: probe[k] for k in ("exec", "httpGet", "tcpSocket", "grpc") if probe.get(k) is not None}
        return cls(
            handler=handler,
            initial_delay=max(0, int(probe.get("initialDelaySeconds") or 0)),
            period=max(1, int(probe.get("periodSeconds") or 10)),
            timeout=max(1, int(probe.get("timeoutSeconds") or 1)),
            success_threshold=max(1, int(probe.get("successThreshold") or 1)),
            failure_threshold=max(1, int(probe.get("failureThreshold") or 3)),
            termination_grace_period=probe.get("terminationGracePeriodSeconds"),
        )


@dataclass(frozen=True)
class Target:
    """Where a container instance can be reached: the agent fills this when the container runs."""

    container_id: str
    pod_ip: str | None = None
    netns_path: str | None = None  # None: the agent's own namespace (hostNetwork pods)
