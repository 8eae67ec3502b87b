"""``peapod cluster up/down``: several test hosts on one machine (network namespaces on a bridge), a real
etcd cluster, two API servers behind a loopback proxy and an agent inside each host.

Modules: ``plan`` (names, addresses, command lines; pure), ``state`` (``DATA/cluster.json``, every resource
and PID made), ``procs`` (spawn, probe and stop processes by PID), ``hostnet`` (bridge, netns, veths),
``supervisor`` (API proxy and registry forwarders), ``lifecycle`` (up and down).
"""


class ClusterError(Exception):
    """A problem the user can fix (printed as one line by the CLI)."""
