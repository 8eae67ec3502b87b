"""Pod Security Standards (privileged, baseline, restricted) as pure checks over pod JSON.

The admission step that applies them to requests is ``peapod.apiserver.admission``.
"""

from peapod.api.podsecurity.checks import CHECKS, Violation, check_ids, check_pod
from peapod.api.podsecurity.levels import (
    AUDIT_LABEL,
    AUDIT_VERSION_LABEL,
    BASELINE,
    ENFORCE_LABEL,
    ENFORCE_VERSION_LABEL,
    LATEST,
    LEVELS,
    PRIVILEGED,
    RESTRICTED,
    WARN_LABEL,
    WARN_VERSION_LABEL,
    LevelVersion,
    Policy,
    compare_levels,
    parse_level,
    parse_version,
    policy_from_labels,
)
from peapod.api.podsecurity.messages import (
    existing_pods_warnings,
    format_forbidden,
    format_violation,
    format_warning,
)

__all__ = [
    "AUDIT_LABEL", "AUDIT_VERSION_LABEL", "BASELINE", "CHECKS", "ENFORCE_LABEL", "ENFORCE_VERSION_LABEL",
    "LATEST", "LEVELS", "PRIVILEGED", "RESTRICTED", "WARN_LABEL", "WARN_VERSION_LABEL", "LevelVersion",
    "Policy", "Violation", "check_ids", "check_pod", "compare_levels", "existing_pods_warnings",
    "format_forbidden", "format_violation", "format_warning", "parse_level", "parse_version",
    "policy_from_labels",
]
