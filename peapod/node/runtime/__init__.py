"""Running containers for real: OCI bundles, conmon + runc, cgroups, pod sandboxes, CRI logs."""

from peapod.node.runtime.types import (
    HOST,
    NEW,
    ContainerConfig,
    ContainerNotFound,
    ContainerRuntime,
    ContainerRuntimeError,
    ContainerState,
    ContainerStatus,
    Device,
    ExecProcess,
    Mount,
    Namespaces,
    Resources,
)

__all__ = [
    "HOST", "NEW", "ContainerConfig", "ContainerNotFound", "ContainerRuntime", "ContainerRuntimeError",
    "ContainerState", "ContainerStatus", "Device", "ExecProcess", "Mount", "Namespaces", "Resources",
]
