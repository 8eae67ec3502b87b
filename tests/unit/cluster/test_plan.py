"""The cluster plan: names within IFNAMSIZ, addresses, free networks, command lines."""

from __future__ import annotations

import ipaddress
import random

import pytest

from peapod.cluster import plan
from peapod.cluster.state import ClusterState, EtcdMember, Host, Proc, Server

NET = ipaddress.IPv4Network


def test_names_fit_linux_interface_names_and_addresses_follow_the_index() -> None:
    subnet = NET("10.9.8.0/24")
    h = plan.host_plan("abc123", 3, subnet)
    assert (h.node_name, h.netns, h.veth, h.pod_bridge, h.ip) == (
        "node-3", "ppcabc123-3", "ppcabc123v3", "ppcabc123b3", "10.9.8.13")
    assert plan.bridge_name("abc123") == "ppcabc123"
    assert plan.gateway(subnet) == "10.9.8.1"
    assert all(len(n) <= plan.IFNAMSIZ for n in (h.veth, h.pod_bridge, plan.host_plan("abc123", 99, subnet).veth))
    with pytest.raises(ValueError):
        plan.host_plan("abc123", 250, subnet)
    with pytest.raises(ValueError):
        plan.host_plan("abc123456789", 1, subnet)


def test_chosen_networks_avoid_the_machines_and_each_other() -> None:
    used = [NET("10.0.0.0/9"), NET("10.200.0.0/16")]  # half of 10/8 and one more block taken
    for seed in range(50):
        hosts, pods = plan.choose_networks(used, random.Random(seed))
        assert hosts.prefixlen == 24 and pods.prefixlen == 16
        assert not plan.overlaps(hosts, used) and not plan.overlaps(pods, used)
        assert not hosts.overlaps(pods)
        assert hosts.subnet_of(plan.SUBNET_POOL) and pods.subnet_of(plan.SUBNET_POOL)


def test_given_networks_are_checked_not_replaced() -> None:
    rng = random.Random(1)
    hosts, pods = plan.choose_networks([], rng, subnet="10.1.2.0/24", cluster_cidr="10.50.0.0/16")
    assert (str(hosts), str(pods)) == ("10.1.2.0/24", "10.50.0.0/16")
    hosts, pods = plan.choose_networks([], rng, subnet="10.50.3.0/24")
    assert str(hosts) == "10.50.3.0/24" and not pods.overlaps(hosts)
    with pytest.raises(ValueError, match="overlaps a network in use"):
        plan.choose_networks([NET("10.1.0.0/16")], rng, subnet="10.1.2.0/24")
    with pytest.raises(ValueError, match="overlaps"):
        plan.choose_networks([], rng, subnet="10.50.3.0/24", cluster_cidr="10.50.0.0/16")
    with pytest.raises(ValueError):
        plan.choose_networks([], rng, subnet="10.1.2.1/24")  # host bits set


def test_no_free_network_is_an_error() -> None:
    with pytest.raises(ValueError, match="no free"):
        plan.choose_networks([NET("10.0.0.0/8")], random.Random(0), attempts=20)


def test_etcd_command_line_names_every_member_and_the_state() -> None:
    ms = [plan.EtcdMemberPlan(f"etcd-{i}", 2000 + i, 3000 + i, f"/d/etcd-{i}") for i in range(3)]
    argv = plan.etcd_argv("/usr/bin/etcd", ms[1], ms, "tok", new_cluster=False)
    assert argv[argv.index("--initial-cluster") + 1] == (
        "etcd-0=http://127.0.0.1:3000,etcd-1=http://127.0.0.1:3001,etcd-2=http://127.0.0.1:3002")
    assert argv[argv.index("--initial-cluster-state") + 1] == "existing"
    assert argv[argv.index("--listen-client-urls") + 1] == "http://127.0.0.1:2001"
    assert plan.store_spec(ms) == "etcd://127.0.0.1:2000,127.0.0.1:2001,127.0.0.1:2002"


def test_agent_runs_in_its_hosts_network_namespace_only_and_pulls_only_from_the_given_registries() -> None:
    h = plan.host_plan("abc123", 1, NET("10.9.8.0/24"))
    argv = plan.agent_argv(["peapod"], netns=h.netns, server="https://10.9.8.1:7000", token_file="/t", host=h,
                           data_dir="/d/n1", network="vxlan", registries=["127.0.0.1:5000"])
    assert argv[:3] == ["nsenter", "--net=/run/netns/ppcabc123-1", "--"]
    assert argv[3:5] == ["peapod", "agent"]
    pairs = dict(zip(argv[5::2], argv[6::2], strict=False))
    assert pairs["--node-ip"] == pairs["--bind"] == "10.9.8.11"
    assert pairs["--network"] == "vxlan" and pairs["--bridge"] == "ppcabc123b1"
    assert argv.count("--allowed-registry") == 1 and "127.0.0.1:5000" in argv
    server = plan.server_argv(["peapod"], store="etcd://x", data_dir="/s", bind="10.9.8.1", port=7001,
                              cluster_cidr="10.50.0.0/16", extra=["--node-monitor-grace-period", "4"])
    assert server[:2] == ["peapod", "server"] and server[-2:] == ["--node-monitor-grace-period", "4"]


def test_state_round_trips_through_its_file(tmp_path) -> None:
    p = Proc(pid=12, start_time=34, argv=["a"], log="/l")
    st = ClusterState(data_dir=str(tmp_path), cluster_id="abc123", network="host-gw", subnet="10.9.8.0/24",
                      gateway="10.9.8.1", cluster_cidr="10.50.0.0/16", bridge="ppcabc123",
                      etcd=[EtcdMember("etcd-0", 1, 2, "/e", p)], servers=[Server("server-0", 3, "/s", None)],
                      hosts=[Host(1, "node-1", "ns", "v", "10.9.8.11", "b", "/n", agent=p)], supervisor=p,
                      api_port=5, agent_api_port=6)
    st.save()
    back = ClusterState.load(tmp_path)
    assert back == st
    assert back.host("node-1") is back.host(1)
    assert back.api_url == "https://127.0.0.1:5" and back.agent_api_url == "https://10.9.8.1:6"
