"""Pod volumes on the node: emptyDir, hostPath, configMap, secret, downwardAPI, projected; safe subPath.

The agent calls :func:`prepare_volumes` before starting containers, :func:`container_mounts` per
container (its result goes to ``ContainerConfig.mounts``), :func:`refresh_volumes` periodically for
API-data volumes (through :mod:`peapod.node.volumerefresh`), and :func:`teardown_volumes` when the
pod is gone.
"""

from .atomic_writer import AtomicWriter
from .downward import field_value, format_map, resource_field_value
from .emptydir import emptydir_overuse, emptydir_usage, memory_volume_size
from .fake import FakeMounter, FakeVolumeSources
from .manager import (
    RefreshResult,
    container_mounts,
    discover_volumes,
    prepare_volumes,
    refresh_volumes,
    teardown_volumes,
    update_volumes,
)
from .mounter import LinuxMounter, Mounter
from .termination import create_termination_log, read_termination_message, termination_mount
from .types import DownwardValues, FileProjection, PreparedVolume, VolumeError, VolumesNotReady, VolumeSources

__all__ = [
    "AtomicWriter",
    "DownwardValues",
    "FakeMounter",
    "FakeVolumeSources",
    "FileProjection",
    "LinuxMounter",
    "Mounter",
    "PreparedVolume",
    "RefreshResult",
    "VolumeError",
    "VolumeSources",
    "VolumesNotReady",
    "container_mounts",
    "create_termination_log",
    "discover_volumes",
    "emptydir_overuse",
    "emptydir_usage",
    "field_value",
    "format_map",
    "memory_volume_size",
    "prepare_volumes",
    "read_termination_message",
    "refresh_volumes",
    "resource_field_value",
    "teardown_volumes",
    "termination_mount",
    "update_volumes",
]
