"""Shared types of the volume plugins: errors, the prepared-volume record and the VolumeSources boundary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

# Plugin directory names under <pod_dir>/volumes, as kubelet spells them.
EMPTY_DIR = "kubernetes.io~empty-dir"
HOST_PATH = "kubernetes.io~host-path"
CONFIGMAP = "kubernetes.io~configmap"
SECRET = "kubernetes.io~secret"
DOWNWARD_API = "kubernetes.io~downward-api"
PROJECTED = "kubernetes.io~projected"

VOLUMES_DIR = "volumes"
SUBPATHS_DIR = "volume-subpaths"
CONTAINERS_DIR = "containers"


class VolumeError(Exception):
    """One volume could not be set up or mounted.

    ``str()`` is kubelet's event text: ``MountVolume.SetUp failed for volume "v" : <message>`` for
    setup failures (reason FailedMount), the bare message for container mount errors (reason
    CreateContainerConfigError).
    """

    def __init__(self, message: str, *, volume: str = "", reason: str = "FailedMount") -> None:
        self.message = message
        self.volume = volume
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.reason == "FailedMount" and self.volume:
            return f'MountVolume.SetUp failed for volume "{self.volume}" : {self.message}'
        return self.message


class VolumesNotReady(Exception):
    """Some of a pod's volumes failed; ``errors`` has one VolumeError per failed volume."""

    def __init__(self, errors: Sequence[VolumeError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors))


@dataclass(frozen=True)
class FileProjection:
    """One file of an API-data volume: content and permission bits."""

    data: bytes
    mode: int


@dataclass(frozen=True)
class PreparedVolume:
    """A volume ready on the host: ``path`` is what a container bind-mounts.

    ``read_only`` is the plugin's own attribute (configMap, secret, downwardAPI and projected volumes
    are always mounted read-only, like kubelet since CVE-2017-1002102).
    """

    name: str
    kind: str  # "emptyDir" | "hostPath" | "configMap" | "secret" | "downwardAPI" | "projected"
    path: Path
    read_only: bool = False
    tmpfs: bool = False
    size_limit: int | None = None  # bytes: tmpfs size, or the disk emptyDir's sizeLimit
    pod_dir: Path | None = None  # where subPath binds of this pod live


@dataclass(frozen=True)
class DownwardValues:
    """Values the agent knows that the pod object may not carry yet (status is written later)."""

    node_name: str = ""
    host_ip: str = ""
    host_ips: Sequence[str] = ()
    pod_ip: str = ""
    pod_ips: Sequence[str] = ()
    # Node allocatable, e.g. {"cpu": "2", "memory": "4Gi", "ephemeral-storage": "50Gi"}: the value
    # of an unset limit in resourceFieldRef, and the ceiling of memory-backed volumes.
    node_allocatable: Mapping[str, str] = field(default_factory=dict)


class VolumeSources(Protocol):
    """What the volume plugins read from the API, for one pod. The agent implements it.

    ``get_configmap``/``get_secret`` return the object as on the wire, or None when it does not exist
    (any other failure raises). ``request_token`` returns a service account token bound to the pod
    (TokenRequest); raise when none can be had.
    """

    downward: DownwardValues

    async def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def request_token(self, audience: str | None, expiration: int) -> str: ...
