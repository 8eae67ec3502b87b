"""The pure pod CIDR allocator of node IPAM."""

from __future__ import annotations

import pytest

from peapod.controlplane.controllers.nodeipam import CidrSet, CidrSetFullError, pod_cidrs


def test_blocks_are_distinct_until_full() -> None:
    s = CidrSet("10.42.0.0/22", 24)
    got = [s.allocate() for _ in range(4)]
    assert got == ["10.42.0.0/24", "10.42.1.0/24", "10.42.2.0/24", "10.42.3.0/24"]
    with pytest.raises(CidrSetFullError):
        s.allocate()


def test_occupied_blocks_are_skipped_and_released_ones_come_back_last() -> None:
    s = CidrSet("10.42.0.0/22", 24)
    s.occupy("10.42.0.0/24")
    s.occupy("10.42.2.0/23")  # a wider range covers two blocks
    assert s.allocate() == "10.42.1.0/24"
    s.release("10.42.0.0/24")
    with pytest.raises(CidrSetFullError):
        s.allocate(), s.allocate()
    assert len(s) == 4


def test_round_robin_does_not_hand_a_just_released_block_out_again() -> None:
    s = CidrSet("10.42.0.0/22", 24)
    first = s.allocate()
    s.release(first)
    assert s.allocate() == "10.42.1.0/24"


def test_ranges_outside_or_of_another_family_are_ignored() -> None:
    s = CidrSet("10.42.0.0/16", 24)
    for c in ("10.77.0.0/16", "fd00::/64", "garbage"):
        s.occupy(c)
        assert not s.allocated(c)
    assert len(s) == 0
    s.occupy("10.0.0.0/8")  # a supernet of the cluster CIDR takes it all
    with pytest.raises(CidrSetFullError):
        s.allocate()


def test_ipv6_and_bad_masks() -> None:
    assert CidrSet("fd00:42::/56", 64).allocate() == "fd00:42::/64"
    for cidr, mask in (("10.42.0.0/16", 8), ("10.42.0.0/16", 33), ("0.0.0.0/4", 30)):
        with pytest.raises(ValueError):
            CidrSet(cidr, mask)
    with pytest.raises(ValueError):
        CidrSet("10.42.0.1/16", 24)  # host bits set


def test_pod_cidrs_of_a_node() -> None:
    assert pod_cidrs({"spec": {"podCIDR": "10.1.0.0/24"}}) == ["10.1.0.0/24"]
    assert pod_cidrs({"spec": {"podCIDR": "10.1.0.0/24", "podCIDRs": ["10.1.0.0/24", "fd00::/64"]}}) == \
        ["10.1.0.0/24", "fd00::/64"]
    assert pod_cidrs({"spec": {}}) == [] == pod_cidrs({})
