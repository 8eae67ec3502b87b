"""/etc/hosts and /etc/resolv.conf rendering (kubelet's rules)."""

from __future__ import annotations

import os

import pytest

from peapod.node.network.hostfiles import (
    parse_resolv_conf,
    render_hosts,
    render_resolv_conf,
    write_pod_file,
)

NODE_RESOLV = "# comment\nnameserver 10.0.0.2\nnameserver 10.0.0.3\nsearch corp.example lab\noptions edns0\n"


def test_managed_hosts() -> None:
    text = render_hosts(pod_ips=["10.77.0.5"], hostname="web", host_aliases=[
        {"ip": "1.2.3.4", "hostnames": ["a", "b"]}, {"ip": "5.6.7.8"}])
    assert text.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
    assert "10.77.0.5\tweb\n" in text
    assert text.endswith("\n# Entries added by HostAliases.\n1.2.3.4\ta\tb\n")


def test_hosts_with_subdomain() -> None:
    text = render_hosts(pod_ips=["10.0.0.1"], hostname="w-0", subdomain="svc", namespace="ns")
    assert "10.0.0.1\tw-0.svc.ns.svc.cluster.local\tw-0\n" in text


def test_host_network_hosts_is_the_nodes() -> None:
    text = render_hosts(pod_ips=["1.1.1.1"], hostname="x", host_network=True, node_hosts="127.0.0.1 node",
                        host_aliases=[{"ip": "9.9.9.9", "hostnames": ["z"]}])
    assert text == "127.0.0.1 node\n\n# Entries added by HostAliases.\n9.9.9.9\tz\n"


def test_parse_resolv_conf() -> None:
    rc = parse_resolv_conf(NODE_RESOLV + "domain last.example\n")
    assert rc.nameservers == ["10.0.0.2", "10.0.0.3"] and rc.searches == ["last.example"]
    assert rc.options == ["edns0"]


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"dns_policy": "ClusterFirst", "cluster_dns": ["10.96.0.10"], "namespace": "ns"},
         "search ns.svc.cluster.local svc.cluster.local cluster.local corp.example lab\n"
         "nameserver 10.96.0.10\noptions ndots:5\n"),
        ({"dns_policy": "ClusterFirst"},  # no cluster DNS: the node's
         "search corp.example lab\nnameserver 10.0.0.2\nnameserver 10.0.0.3\noptions edns0\n"),
        ({"dns_policy": "ClusterFirst", "cluster_dns": ["10.96.0.10"], "host_network": True},
         "search corp.example lab\nnameserver 10.0.0.2\nnameserver 10.0.0.3\noptions edns0\n"),
        ({"dns_policy": "ClusterFirstWithHostNet", "cluster_dns": ["10.96.0.10"], "host_network": True},
         "search default.svc.cluster.local svc.cluster.local cluster.local corp.example lab\n"
         "nameserver 10.96.0.10\noptions ndots:5\n"),
        ({"dns_policy": "Default"},
         "search corp.example lab\nnameserver 10.0.0.2\nnameserver 10.0.0.3\noptions edns0\n"),
        ({"dns_policy": "None", "dns_config": {
            "nameservers": ["1.1.1.1"], "searches": ["x"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "rotate"}]}},
         "search x\nnameserver 1.1.1.1\noptions ndots:2 rotate\n"),
        ({"dns_policy": "ClusterFirst", "cluster_dns": ["10.96.0.10"],
          "dns_config": {"nameservers": ["10.96.0.10", "8.8.8.8", "9.9.9.9", "7.7.7.7"],
                         "options": [{"name": "ndots", "value": "1"}]}},
         "search default.svc.cluster.local svc.cluster.local cluster.local corp.example lab\n"
         "nameserver 10.96.0.10\nnameserver 8.8.8.8\nnameserver 9.9.9.9\noptions ndots:1\n"),
        ({"dns_policy": "None"}, ""),
    ],
)
def test_resolv_conf(kw: dict, expected: str) -> None:
    assert render_resolv_conf(node_resolv=NODE_RESOLV, **kw) == expected


def test_write_pod_file_keeps_inode(tmp_path) -> None:
    p = tmp_path / "hosts"
    write_pod_file(p, "a much longer first version\n")
    ino = os.stat(p).st_ino
    write_pod_file(p, "short\n")
    assert p.read_text() == "short\n" and os.stat(p).st_ino == ino
