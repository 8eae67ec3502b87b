"""Namespace labels to policy, and the messages built from violations."""

from __future__ import annotations

import pytest

from peapod.api.podsecurity import (
    LevelVersion,
    Policy,
    Violation,
    check_pod,
    compare_levels,
    existing_pods_warnings,
    format_forbidden,
    format_warning,
    parse_level,
    parse_version,
    policy_from_labels,
)

E = "pod-security.kubernetes.io/enforce"
DEFAULTS = Policy.default("baseline")


@pytest.mark.parametrize(("raw", "expected"), [
    ("privileged", ("privileged", None)), ("restricted", ("restricted", None)),
    ("Restricted", ("restricted", "must be one of privileged, baseline, restricted")),
    ("", ("restricted", "must be one of privileged, baseline, restricted")),
])
def test_parse_level(raw: str, expected: tuple[str, str | None]) -> None:
    assert parse_level(raw) == expected


@pytest.mark.parametrize(("raw", "ok"), [
    ("latest", True), ("v1.0", True), ("v1.33", True), ("v1.100", True),
    ("v1.01", False), ("1.30", False), ("v2.1", False), ("v1", False), ("", False),
])
def test_parse_version(raw: str, ok: bool) -> None:
    version, err = parse_version(raw)
    assert (err is None) is ok
    assert version == (raw if ok else "latest")
    if not ok:
        assert err == 'must be "latest" or "v1.x"'


def test_compare_levels() -> None:
    assert compare_levels("restricted", "baseline") == 1
    assert compare_levels("privileged", "baseline") == -1
    assert compare_levels("baseline", "baseline") == 0


def test_policy_defaults_and_labels() -> None:
    assert policy_from_labels(None, DEFAULTS) == (DEFAULTS, [])
    assert DEFAULTS.enforce == LevelVersion("baseline", "latest") and DEFAULTS.warn.level == "privileged"
    policy, errs = policy_from_labels({
        E: "restricted", "pod-security.kubernetes.io/warn": "baseline",
        "pod-security.kubernetes.io/warn-version": "v1.30", "other": "x",
    }, DEFAULTS)
    assert errs == []
    assert policy == Policy(LevelVersion("restricted"), LevelVersion("privileged"), LevelVersion("baseline", "v1.30"))


def test_invalid_labels_fail_closed_for_enforce_and_open_for_warn() -> None:
    policy, errs = policy_from_labels({
        E: "strict", "pod-security.kubernetes.io/warn": "nope", "pod-security.kubernetes.io/audit-version": "x",
    }, DEFAULTS)
    assert policy.enforce == LevelVersion("restricted") and policy.warn.level == "privileged"
    assert [e.message() for e in errs] == [
        'metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": '
        "must be one of privileged, baseline, restricted",
        'metadata.labels[pod-security.kubernetes.io/audit-version]: Invalid value: "x": must be "latest" or "v1.x"',
        'metadata.labels[pod-security.kubernetes.io/warn]: Invalid value: "nope": '
        "must be one of privileged, baseline, restricted",
    ]


def test_policy_equivalence() -> None:
    a = Policy(LevelVersion("privileged", "v1.20"), LevelVersion("privileged"), LevelVersion("privileged"))
    assert a.fully_privileged() and a.equivalent(Policy.default("privileged"))
    assert not DEFAULTS.equivalent(Policy.default("restricted"))


V = [Violation("allowPrivilegeEscalation", "allowPrivilegeEscalation != false",
               'container "c" must set securityContext.allowPrivilegeEscalation=false'),
     Violation("x", "reason only", "")]


def test_format_forbidden_and_warning() -> None:
    assert format_forbidden("restricted", "latest", V, "x") == (
        'pods "x" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false '
        '(container "c" must set securityContext.allowPrivilegeEscalation=false), reason only'
    )
    assert format_warning("baseline", "v1.30", V[:1]).startswith(
        'would violate PodSecurity "baseline:v1.30": allowPrivilegeEscalation != false (container "c"'
    )


def test_existing_pods_warnings_group_and_sort() -> None:
    bare = check_pod("restricted", {"containers": [{"name": "c"}]}, {})
    host = check_pod("restricted", {"containers": [{"name": "c"}], "hostNetwork": True}, {})
    out = existing_pods_warnings("ns", LevelVersion("restricted"), [
        ("web-2", bare), ("web-1", bare), ("web-3", bare), ("ok", []), ("agent", host), ("b", bare[:1]),
    ])
    assert out == [
        'existing pods in namespace "ns" violate the new PodSecurity enforce level "restricted:latest"',
        "agent: host namespaces, allowPrivilegeEscalation != false, unrestricted capabilities, "
        "runAsNonRoot != true, seccompProfile",
        "b: allowPrivilegeEscalation != false",
        "web-1 (and 2 other pods): allowPrivilegeEscalation != false, unrestricted capabilities, "
        "runAsNonRoot != true, seccompProfile",
    ]
    assert existing_pods_warnings("ns", LevelVersion("baseline"), [("ok", [])]) == []
    assert existing_pods_warnings("ns", LevelVersion("baseline"), [("a", V), ("b", V)], total=5)[:1] == [
        "new PodSecurity enforce level only checked against the first 2 of 5 existing pods"
    ]
