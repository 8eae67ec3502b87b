"""Pod Security levels, versions, namespace labels and the per-namespace policy.

Follows k8s.io/pod-security-admission/api: a namespace's ``pod-security.kubernetes.io/<mode>`` and
``<mode>-version`` labels pick a level and version for each of the enforce, audit and warn modes;
modes without labels fall back to the cluster defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from peapod.api import errors

PRIVILEGED, BASELINE, RESTRICTED = "privileged", "baseline", "restricted"
LEVELS = (PRIVILEGED, BASELINE, RESTRICTED)
LATEST = "latest"

# The newest Pod Security Standards version this implementation knows (kube v1.33).
MAX_MINOR = 33

LABEL_PREFIX = "pod-security.kubernetes.io/"
ENFORCE_LABEL = LABEL_PREFIX + "enforce"
ENFORCE_VERSION_LABEL = LABEL_PREFIX + "enforce-version"
AUDIT_LABEL = LABEL_PREFIX + "audit"
AUDIT_VERSION_LABEL = LABEL_PREFIX + "audit-version"
WARN_LABEL = LABEL_PREFIX + "warn"
WARN_VERSION_LABEL = LABEL_PREFIX + "warn-version"

_VERSION_RE = re.compile(r"^v1\.(0|[1-9][0-9]*)$")
_LEVEL_ERROR = "must be one of privileged, baseline, restricted"
_VERSION_ERROR = 'must be "latest" or "v1.x"'


def parse_level(value: str) -> tuple[str, str | None]:
    """(level, error): an invalid level reads as ``restricted`` (fail closed), like kube."""
    if value in LEVELS:
        return value, None
    return RESTRICTED, _LEVEL_ERROR


def parse_version(value: str) -> tuple[str, str | None]:
    """(version, error): ``latest`` or ``v1.N``; an invalid version reads as ``latest``."""
    if value == LATEST or _VERSION_RE.match(value):
        return value, None
    return LATEST, _VERSION_ERROR


def version_minor(version: str) -> int:
    """The minor version the checks are evaluated at: ``latest`` and newer versions mean ours."""
    m = _VERSION_RE.match(version)
    if m is None:
        return MAX_MINOR
    return min(int(m.group(1)), MAX_MINOR)


def compare_levels(a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` is less strict than, as strict as, or stricter than ``b``."""
    return (LEVELS.index(a) > LEVELS.index(b)) - (LEVELS.index(a) < LEVELS.index(b))


@dataclass(frozen=True)
class LevelVersion:
    level: str
    version: str = LATEST

    def __str__(self) -> str:
        return f"{self.level}:{self.version}"


@dataclass(frozen=True)
class Policy:
    enforce: LevelVersion
    audit: LevelVersion
    warn: LevelVersion

    @classmethod
    def default(cls, enforce: str = BASELINE) -> Policy:
        """The cluster default: ``enforce`` for enforce; audit and warn privileged (kube's defaults)."""
        return cls(LevelVersion(enforce), LevelVersion(PRIVILEGED), LevelVersion(PRIVILEGED))

    def fully_privileged(self) -> bool:
        return all(lv.level == PRIVILEGED for lv in (self.enforce, self.audit, self.warn))

    def equivalent(self, other: Policy) -> bool:
        """Same policy, where privileged at any version counts as one policy."""

        def same(a: LevelVersion, b: LevelVersion) -> bool:
            return a == b or (a.level == PRIVILEGED and b.level == PRIVILEGED)

        return (
            same(self.enforce, other.enforce) and same(self.audit, other.audit) and same(self.warn, other.warn)
        )


def _label_error(label: str, value: str, message: str) -> errors.FieldError:
    return errors.invalid(f"metadata.labels[{label}]", value, message)


def policy_from_labels(
    labels: dict[str, str] | None, defaults: Policy
) -> tuple[Policy, list[errors.FieldError]]:
    """Kube's PolicyToEvaluate: a usable policy always, plus the errors of invalid labels.

    An invalid enforce level means restricted; invalid audit/warn levels mean privileged (fail open).
    """
    labels = labels if isinstance(labels, dict) else {}
    errs: list[errors.FieldError] = []
    modes = {"enforce": defaults.enforce, "audit": defaults.audit, "warn": defaults.warn}
    for mode, level_label, version_label in (
        ("enforce", ENFORCE_LABEL, ENFORCE_VERSION_LABEL),
        ("audit", AUDIT_LABEL, AUDIT_VERSION_LABEL),
        ("warn", WARN_LABEL, WARN_VERSION_LABEL),
    ):
        level, version = modes[mode].level, modes[mode].version
        if level_label in labels:
            raw = str(labels[level_label])
            level, err = parse_level(raw)
            if err:
                errs.append(_label_error(level_label, raw, err))
                if mode != "enforce":
                    level = PRIVILEGED
        if version_label in labels:
            raw = str(labels[version_label])
            version, err = parse_version(raw)
            if err:
                errs.append(_label_error(version_label, raw, err))
        modes[mode] = LevelVersion(level, version)
    return Policy(modes["enforce"], modes["audit"], modes["warn"]), errs
