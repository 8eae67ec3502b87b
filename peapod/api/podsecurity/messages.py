"""The texts kube-apiserver's PodSecurity admission answers with, from check violations."""

from __future__ import annotations

from peapod.api.podsecurity.checks import Violation
from peapod.api.podsecurity.levels import LevelVersion


def details(violations: list[Violation]) -> str:
    """``reason (detail), reason (detail)``: kube's AggregateCheckResult.ForbiddenDetail."""
    return ", ".join(str(v) for v in violations)


def reasons(violations: list[Violation]) -> str:
    """``reason, reason``: kube's ForbiddenReason (used for existing pods on namespace label changes)."""
    return ", ".join(v.reason for v in violations)


def format_violation(level: str, version: str, violations: list[Violation]) -> str:
    """``violates PodSecurity "restricted:latest": ...``"""
    return f'violates PodSecurity "{LevelVersion(level, version)}": {details(violations)}'


def format_forbidden(level: str, version: str, violations: list[Violation], name: str = "") -> str:
    """The Forbidden message of a rejected pod: ``pods "x" is forbidden: violates PodSecurity ...``."""
    who = f'pods "{name}"' if name else "pods"
    return f"{who} is forbidden: {format_violation(level, version, violations)}"


def format_warning(level: str, version: str, violations: list[Violation]) -> str:
    """The warn-mode text (sent as ``Warning: 299 - "..."``) and the audit text."""
    return f'would violate PodSecurity "{LevelVersion(level, version)}": {details(violations)}'


def existing_pods_warnings(namespace: str, enforce: LevelVersion, pods: list[tuple[str, list[Violation]]],
                           total: int | None = None) -> list[str]:
    """Warnings for a namespace whose enforce level tightens, like kube's EvaluatePodsInNamespace.

    ``pods`` are (name, violations) in evaluation order; pods with identical reasons are grouped under
    the lexically first name: ``a (and 2 other pods): host namespaces, privileged``.
    """
    out: list[str] = []
    if total is not None and total > len(pods):
        out.append(
            f"new PodSecurity enforce level only checked against the first {len(pods)} of {total} existing pods"
        )
    groups: dict[str, tuple[str, int]] = {}
    for name, violations in pods:
        if not violations:
            continue
        key = reasons(violations)
        first, count = groups.get(key, (name, 0))
        groups[key] = (min(first, name), count + 1)
    if not groups:
        return out
    out.append(f'existing pods in namespace "{namespace}" violate the new PodSecurity enforce level "{enforce}"')
    lines = []
    for key, (first, count) in groups.items():
        if count == 1:
            lines.append(f"{first}: {key}")
        elif count == 2:
            lines.append(f"{first} (and 1 other pod): {key}")
        else:
            lines.append(f"{first} (and {count - 1} other pods): {key}")
    return out + sorted(lines)
