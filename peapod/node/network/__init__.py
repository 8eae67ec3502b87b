"""Pod networking: the PodNetwork protocol, CNI invocation, /etc/hosts and resolv.conf."""

from peapod.node.network.cni import DEFAULT_POD_CIDR, CniConfig, CniInvoker, CniNetwork, build_conflist
from peapod.node.network.types import NetworkError, NetworkStatus, PodNetwork, PortMapping

__all__ = [
    "DEFAULT_POD_CIDR", "CniConfig", "CniInvoker", "CniNetwork", "NetworkError", "NetworkStatus",
    "PodNetwork", "PortMapping", "build_conflist",
]
