"""The multi-node flags of `peapod server` and `peapod agent`: parsed, checked, and plumbed through."""

from __future__ import annotations

import pytest

from peapod.cli.main import CliError, build_parser
from peapod.cli.up import control_plane_from_args


def test_server_flags_reach_the_control_plane() -> None:
    args = build_parser().parse_args([
        "server", "--cluster-cidr", "10.50.0.0/16", "--node-cidr-mask-size", "25",
        "--node-monitor-grace-period", "6", "--default-not-ready-toleration-seconds", "4",
        "--default-unreachable-toleration-seconds", "5", "--leader-elect-lease-duration", "4",
        "--leader-elect-renew-deadline", "3", "--leader-elect-retry-period", "0.5"])
    cp = control_plane_from_args(args)
    o = cp.controller_options
    assert (o.cluster_cidr, o.node_cidr_mask_size, o.node_monitor_grace_period) == ("10.50.0.0/16", 25, 6.0)
    assert (cp.default_not_ready_toleration_seconds, cp.default_unreachable_toleration_seconds) == (4, 5)
    assert (cp.leader_elect_lease_duration, cp.leader_elect_renew_deadline, cp.leader_elect_retry_period) == \
        (4.0, 3.0, 0.5)


def test_defaults_are_kubernetes_ones() -> None:
    cp = control_plane_from_args(build_parser().parse_args(["server"]))
    assert cp.controller_options.cluster_cidr == "10.42.0.0/16" and cp.controller_options.node_cidr_mask_size == 24
    assert cp.default_not_ready_toleration_seconds == cp.default_unreachable_toleration_seconds == 300
    assert (cp.leader_elect_lease_duration, cp.leader_elect_renew_deadline) == (15.0, 10.0)


@pytest.mark.parametrize("flags", [
    ["--cluster-cidr", "10.50.0.1/16"], ["--node-cidr-mask-size", "8"],
    ["--leader-elect-lease-duration", "3", "--leader-elect-renew-deadline", "3"],
    ["--node-monitor-grace-period", "0"], ["--default-unreachable-toleration-seconds", "-1"],
])
def test_bad_server_flags_are_one_line_errors(flags: list[str]) -> None:
    with pytest.raises(CliError):
        control_plane_from_args(build_parser().parse_args(["server", *flags]))


def test_agent_flags() -> None:
    args = build_parser().parse_args([
        "agent", "--server", "https://10.0.0.1:6443", "--token-file", "/t", "--node-name", "n1", "--data-dir", "/d",
        "--node-ip", "10.0.0.2", "--bind", "0.0.0.0", "--port", "10251", "--network", "vxlan", "--bridge", "br9",
        "--insecure-registry", "r:5000", "--allowed-registry", "r", "--keep-pods", "--log-format", "json"])
    assert (args.network, args.port, args.insecure_registry, args.allowed_registry, args.keep_pods) == \
        ("vxlan", 10251, ["r:5000"], ["r"], True)
    assert build_parser().parse_args(["agent", "--server", "https://h:1", "--node-name", "n"]).network == "none"
