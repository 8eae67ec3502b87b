"""The Pod Security Standards checks (baseline and restricted), as k8s.io/pod-security-admission words them.

Each check reads a pod's metadata and spec (plain JSON dicts, already defaulted and validated) and
returns ``None`` when the pod passes, or a :class:`Violation` with the check's reason and detail.
Containers are visited in kube's order: init containers, containers, then ephemeral containers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from peapod.api.podsecurity.levels import BASELINE, PRIVILEGED, RESTRICTED, version_minor


@dataclass(frozen=True)
class Violation:
    """One failed check: ``reason (detail)`` in kube's messages."""

    check: str  # the check id, e.g. "allowPrivilegeEscalation"
    reason: str  # e.g. "allowPrivilegeEscalation != false"
    detail: str  # e.g. 'container "c" must set securityContext.allowPrivilegeEscalation=false'

    def __str__(self) -> str:
        return f"{self.reason} ({self.detail})" if self.detail else self.reason


Meta = dict[str, Any]
Spec = dict[str, Any]
CheckFn = Callable[[Meta, Spec], "tuple[str, str] | None"]


# -- helpers -------------------------------------------------------------------------------------


def join_quote(items: list[str]) -> str:
    return '"' + '", "'.join(items) + '"' if items else ""


def pluralize(singular: str, plural: str, count: int) -> str:
    return singular if count == 1 else plural


def go_quote(value: str) -> str:
    """Go's %q for the strings found in labels and annotations."""
    return json.dumps(value, ensure_ascii=False)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def containers(spec: Spec) -> Iterator[dict[str, Any]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in _list(spec.get(key)):
            if isinstance(c, dict):
                yield c


def _name(c: dict[str, Any]) -> str:
    return str(c.get("name", ""))


def _sc(obj: dict[str, Any]) -> dict[str, Any]:
    return _dict(obj.get("securityContext"))


def _named(kind: str, names: list[str]) -> str:
    """'container "a"' or 'containers "a", "b"'."""
    return f"{pluralize(kind, kind + 's', len(names))} {join_quote(names)}"


def _is_windows(spec: Spec) -> bool:
    return _dict(spec.get("os")).get("name") == "windows"


def _uniq_sorted(values: set[str]) -> list[str]:
    return sorted(values)


# -- baseline ------------------------------------------------------------------------------------


def windows_host_process(meta: Meta, spec: Spec) -> tuple[str, str] | None:
    setters = []
    if _dict(_sc(spec).get("windowsOptions")).get("hostProcess") is True:
        setters.append("pod")
    bad = [_name(c) for c in containers(spec) if _dict(_sc(c).get("windowsOptions")).get("hostProcess") is True]
    if bad:
        setters.append(_named("container", bad))
    if not setters:
        return None
    return "hostProcess", f"{' and '.join(setters)} must not set securityContext.windowsOptions.hostProcess=true"


def host_namespaces(meta: Meta, spec: Spec) -> tuple[str, str] | None:
    found = [f"{f}=true" for f in ("hostNetwork", "hostPID", "hostIPC") if spec.get(f) is True]
    return ("host namespaces", ", ".join(found)) if found else None


def privileged(meta: Meta, spec: Spec) -> tuple[str, str] | None:
    bad = [_name(c) for c in containers(spec) if _sc(c).get("privileged") is True]
    if not bad:
        return None
    return "privileged", f"{_named('container', bad)} must not set securityContext.privileged=true"


BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})


def capabilities_baseline(meta: Meta, spec: Spec) -> tuple[str, str] | None:
    bad: list[str] = []
    caps: set[str] = set()
    for c in containers(spec):
        added = [str(x) for x in _list(_dict(_sc(c).get("capabilities")).get("add"))]
        extra = {x for x in added if x not in BASELINE_CAPABILITIES}
        if extra:
            bad.append(_name(c))
            caps |= extra
    if not bad:
        return None
    return (
        "non-default capabilities",
        f"{_named('container', bad)} must not include {join_quote(_uniq_sorted(caps))} "
        "in securityContext.capabilities.add",
    )


def host_path_volumes(meta: Meta, spec: Spec) -> tuple[str, str] | None:
    bad = [str(v.get("name", "")) for v in _list(spec.get("volumes")) if isinstance(v, dict) and v.get("hostPath")
           is not None]
    return ("hostPath volumes", _named("volume", bad)) if bad else None


def host_ports(meta: Meta, spec: Spec) -> tuple[str, str] | None:
    bad: list[str] = []
    ports: set[str] = set()
    for c in containers(spec):
        used = {str(p.get("hostPort")) for p in _list(c.get("ports")) if isinstance(p, dict) and p.get("hostPort")}
        if used:
            bad.append(_name(c))
            ports |= used
    if not bad:
        return None
    return (
        "hostPort",
        f"{_named('container', bad)} {pluralize('uses', 'use', len(bad))} "
        f"{pluralize('hostPort', 'hostPorts', len(ports))} {', '.join(_uniq_sorted(ports))}",
    )


APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"
_APPARMOR_TYPES = ("RuntimeDefault", "Localhost")


def _apparmor_annotation_ok(value: str) -> bool:
    return value in ("", "runtime/default") or value.startswith("localhost/")


def app_armor_profile(meta: Meta, spec: Spec) -> tuple[str, str] | None:
    setters: list[str] = []
    values: set[str] = set()
    pod_profile = _sc(spec).get("appArmorProfile")
    if isinstance(pod_profile, dict) and pod_profile.get("type") not in _APPARMOR_TYPES:
        setters.append("pod")
        values.add(str(pod_profile.get("type", "")))
    bad = []
    for c in containers(spec):
        profile = _sc(c).get("appArmorProfile")
        if isinstance(profile, dict) and profile.get("type") not in _APPARMOR_TYPES:
            bad.append(_name(c))
            values.add(str(profile.get("type", "")))
    if bad:
        setters.append(_named("container", bad))
    annotations = [
        f"{k}={go_quote(str(v))}"
        for k, v in _dict(meta.get("annotations")).items()
        if k.startswith(APPARMOR_ANNOTATION_PREFIX) and not _apparmor_annotation_ok(str(v))
    ]
    bad_values = _uniq_sorted(values)
    if annotations:
        bad_values += sorted(annotations)
        setters.append(pluralize("annotation", "annotations", len(annotations)))
    if not setters:
        return None
    return (
        pluralize("forbidden AppArmor profile", "forbidden AppArmor profiles", len(bad_values)),
        f"{' and '.join(setters)} must not set AppArmor profile type to {join_quote(bad_values)}",
    )


SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t"})


def se_linux_options(meta: Meta, spec: Spec) -> tuple[str, str] | None:
    bad_types: set[str] = set()
    flags = {"user": False, "role": False}

    def valid(opts: dict[str, Any]) -> bool:
        ok = True
        t = str(opts.get("type") or "")
        if t not in SELINUX_TYPES:
            ok = False
            bad_types.add(t)
        for f in ("user", "role"):
            if opts.get(f):
                ok = False
                flags[f] = True
        return ok

    setters: list[str] = []
    pod_opts = _sc(spec).get("seLinuxOptions")
    if isinstance(pod_opts, dict) and not valid(pod_opts):
        setters.append("pod")
    bad = []
    for c in containers(spec):
        opts = _sc(c).get("seLinuxOptions")
        if isinstance(opts, dict) and not valid(opts):
            bad.append(_name(c))
    if bad:
        setters.append(_named("container", bad))
    if not setters:
        return None
    data = []
    if bad_types:
        data.append(f"{pluralize('type', 'types', len(bad_types))} {join_quote(_uniq_sorted(bad_types))}")
    if flags["user"]:
        data.append("user may not be set")
    if flags["role"]:
        data.append("role may not be set")
    return (
        "seLinuxOptions",
        f"{' and '.join(setters)} set forbidden securityContext.seLinuxOptions: {'; '.join(data)}",
    )


def proc_mount(meta: Meta, spec: Spec) -> tuple[str, str] | None:
    bad: list[str] = []
    kinds: set[str] = set()
    for c in containers(spec):
        sc = _sc(c)
        if "procMount" in sc and sc["procMount"] is not None and sc["procMount"] != "Default":
            bad.append(_name(c))
            kinds.add(str(sc["procMount"]))
    if not bad:
        return None
    return (
        "procMount",
        f"{_named('container', bad)} must not set securityContext.procMount to {join_quote(_uniq_sorted(kinds))}",
    )


_SECCOMP_OK = ("RuntimeDefault", "Localhost")


def _seccomp_setters(spec: Spec) -> tuple[list[str], set[str], bool, list[str]]:
    """(explicit bad setters, bad values, pod sets a good profile, containers without a profile)."""
    setters: list[str] = []
    values: set[str] = set()
    pod_ok = False
    pod_profile = _sc(spec).get("seccompProfile")
    if isinstance(pod_profile, dict):
        if pod_profile.get("type") in _SECCOMP_OK:
            pod_ok = True
        else:
            setters.append("pod")
            values.add(str(pod_profile.get("type", "")))
    bad: list[str] = []
    unset: list[str] = []
    for c in containers(spec):
        profile = _sc(c).get("seccompProfile")
        if isinstance(profile, dict):
            if profile.get("type") not in _SECCOMP_OK:
                bad.append(_name(c))
                values.add(str(profile.get("type", "")))
        else:
            unset.append(_name(c))
    if bad:
        setters.append(_named("container", bad))
    return setters, values, pod_ok, unset


def _seccomp_must_not(setters: list[str], values: set[str]) -> tuple[str, str]:
    return (
        "seccompProfile",
        f"{' and '.join(setters)} must not set securityContext.seccompProfile.type to "
        f"{join_quote(_uniq_sorted(values))}",
    )


def seccomp_profile_baseline(meta: Meta, spec: Spec) -> tuple[str, str] | None:
    setters, values, _, _ = _seccomp_setters(spec)
    return _seccomp_must_not(setters, values) if setters else None


SYSCTLS_1_0 = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start",
})
SYSCTLS_1_27 = SYSCTLS_1_0 | {"net.ipv4.ip_local_reserved_ports"}
SYSCTLS_1_29 = SYSCTLS_1_27 | {
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
SYSCTLS_1_32 = SYSCTLS_1_29 | {"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"}


def _sysctls(allowed: frozenset[str]) -> CheckFn:
    def check(meta: Meta, spec: Spec) -> tuple[str, str] | None:
        bad = [
            str(s.get("name", ""))
            for s in _list(_sc(spec).get("sysctls"))
            if isinstance(s, dict) and s.get("name") not in allowed
        ]
        return ("forbidden sysctls", ", ".join(bad)) if bad else None

    return check


# -- restricted ----------------------------------------------------------------------------------


def _not_on_windows(check: CheckFn) -> CheckFn:
    """From v1.25 the Linux-only restricted checks skip pods with spec.os.name=windows."""

    def wrapped(meta: Meta, spec: Spec) -> tuple[str, str] | None:
        return None if _is_windows(spec) else check(meta, spec)

    return wrapped


def allow_privilege_escalation(meta: Meta, spec: Spec) -> tuple[str, str] | None:
    bad = [_name(c) for c in containers(spec) if _sc(c).get("allowPrivilegeEscalation") is not False]
    if not bad:
        return None
    return (
        "allowPrivilegeEscalation != false",
        f"{_named('container', bad)} must set securityContext.allowPrivilegeEscalation=false",
    )


def capabilities_restricted(meta: Meta, spec: Spec) -> tuple[str, str] | None:
    missing_drop: list[str] = []
    adding: list[str] = []
    caps: set[str] = set()
    for c in containers(spec):
        capabilities = _sc(c).get("capabilities")
        if not isinstance(capabilities, dict):
            missing_drop.append(_name(c))
            continue
        if "ALL" not in [str(x) for x in _list(capabilities.get("drop"))]:
            missing_drop.append(_name(c))
        extra = {str(x) for x in _list(capabilities.get("add")) if x != "NET_BIND_SERVICE"}
        if extra:
            adding.append(_name(c))
            caps |= extra
    details = []
    if missing_drop:
        details.append(f'{_named("container", missing_drop)} must set securityContext.capabilities.drop=["ALL"]')
    if adding:
        details.append(
            f"{_named('container', adding)} must not include {join_quote(_uniq_sorted(caps))} "
            "in securityContext.capabilities.add"
        )
    return ("unrestricted capabilities", "; ".join(details)) if details else None


ALLOWED_VOLUME_TYPES = (
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
)
RESTRICTED_VOLUME_TYPES = (
    "hostPath", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "nfs", "iscsi", "glusterfs", "rbd",
    "flexVolume", "cinder", "cephfs", "flocker", "fc", "azureFile", "vsphereVolume", "quobyte", "azureDisk",
    "photonPersistentDisk", "portworxVolume", "scaleIO", "storageos",
)


def restricted_volumes(meta: Meta, spec: Spec) -> tuple[str, str] | None:
    bad: list[str] = []
    kinds: set[str] = set()
    for v in _list(spec.get("volumes")):
        if not isinstance(v, dict) or any(v.get(t) is not None for t in ALLOWED_VOLUME_TYPES):
            continue
        bad.append(str(v.get("name", "")))
        kinds.add(next((t for t in RESTRICTED_VOLUME_TYPES if v.get(t) is not None), "unknown"))
    if not bad:
        return None
    return (
        "restricted volume types",
        f"{_named('volume', bad)} {pluralize('uses', 'use', len(bad))} "
        f"{pluralize('restricted volume type', 'restricted volume types', len(kinds))} "
        f"{join_quote(_uniq_sorted(kinds))}",
    )


def run_as_non_root(meta: Meta, spec: Spec) -> tuple[str, str] | None:
    setters: list[str] = []
    pod_value = _sc(spec).get("runAsNonRoot")
    if pod_value is False:
        setters.append("pod")
    bad: list[str] = []
    unset: list[str] = []
    for c in containers(spec):
        value = _sc(c).get("runAsNonRoot")
        if value is False:
            bad.append(_name(c))
        elif value is None and pod_value is not True:
            unset.append(_name(c))
    if bad:
        setters.append(_named("container", bad))
    if setters:
        return "runAsNonRoot != true", f"{' and '.join(setters)} must not set securityContext.runAsNonRoot=false"
    if unset:
        return (
            "runAsNonRoot != true",
            f"pod or {_named('container', unset)} must set securityContext.runAsNonRoot=true",
        )
    return None


def _is_zero(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value == 0


def run_as_user(meta: Meta, spec: Spec) -> tuple[str, str] | None:
    setters = ["pod"] if _is_zero(_sc(spec).get("runAsUser")) else []
    bad = [_name(c) for c in containers(spec) if _is_zero(_sc(c).get("runAsUser"))]
    if bad:
        setters.append(_named("container", bad))
    if not setters:
        return None
    return "runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0"


def seccomp_profile_restricted(meta: Meta, spec: Spec) -> tuple[str, str] | None:
    setters, values, pod_ok, unset = _seccomp_setters(spec)
    if setters:
        return _seccomp_must_not(setters, values)
    if unset and not pod_ok:
        return (
            "seccompProfile",
            f"pod or {_named('container', unset)} must set securityContext.seccompProfile.type to "
            '"RuntimeDefault" or "Localhost"',
        )
    return None


# -- registry --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Versioned:
    min_minor: int
    fn: CheckFn
    overrides: tuple[str, ...] = ()  # baseline check ids this restricted check replaces


@dataclass(frozen=True)
class Check:
    id: str
    level: str
    versions: tuple[Versioned, ...]  # increasing min_minor

    def at(self, minor: int) -> Versioned | None:
        found = None
        for v in self.versions:
            if v.min_minor <= minor:
                found = v
        return found


CHECKS: tuple[Check, ...] = (
    # baseline
    Check("windowsHostProcess", BASELINE, (Versioned(0, windows_host_process),)),
    Check("hostNamespaces", BASELINE, (Versioned(0, host_namespaces),)),
    Check("privileged", BASELINE, (Versioned(0, privileged),)),
    Check("capabilities_baseline", BASELINE, (Versioned(0, capabilities_baseline),)),
    Check("hostPathVolumes", BASELINE, (Versioned(0, host_path_volumes),)),
    Check("hostPorts", BASELINE, (Versioned(0, host_ports),)),
    Check("appArmorProfile", BASELINE, (Versioned(0, app_armor_profile),)),
    Check("seLinuxOptions", BASELINE, (Versioned(0, se_linux_options),)),
    Check("procMount", BASELINE, (Versioned(0, proc_mount),)),
    # Versions before 1.19 checked seccomp annotations; peapod evaluates the field at every version.
    Check("seccompProfile_baseline", BASELINE, (Versioned(0, seccomp_profile_baseline),)),
    Check("sysctls", BASELINE, (
        Versioned(0, _sysctls(SYSCTLS_1_0)),
        Versioned(27, _sysctls(SYSCTLS_1_27)),
        Versioned(29, _sysctls(SYSCTLS_1_29)),
        Versioned(32, _sysctls(SYSCTLS_1_32)),
    )),
    # restricted
    Check("restrictedVolumes", RESTRICTED, (Versioned(0, restricted_volumes, ("hostPathVolumes",)),)),
    Check("allowPrivilegeEscalation", RESTRICTED, (
        Versioned(8, allow_privilege_escalation),
        Versioned(25, _not_on_windows(allow_privilege_escalation)),
    )),
    Check("runAsNonRoot", RESTRICTED, (Versioned(0, run_as_non_root),)),
    Check("runAsUser", RESTRICTED, (Versioned(23, run_as_user),)),
    Check("seccompProfile_restricted", RESTRICTED, (
        Versioned(19, seccomp_profile_restricted, ("seccompProfile_baseline",)),
        Versioned(25, _not_on_windows(seccomp_profile_restricted), ("seccompProfile_baseline",)),
    )),
    Check("capabilities_restricted", RESTRICTED, (
        Versioned(22, capabilities_restricted, ("capabilities_baseline",)),
        Versioned(25, _not_on_windows(capabilities_restricted), ("capabilities_baseline",)),
    )),
)

# Kube evaluates baseline checks sorted by id, then restricted checks sorted by id; messages keep that order.
_ORDER = sorted(c.id for c in CHECKS if c.level == BASELINE) + sorted(
    c.id for c in CHECKS if c.level == RESTRICTED
)


def checks_for(level: str, version: str = "latest") -> list[tuple[str, CheckFn]]:
    """The (id, check) pairs evaluated for ``level`` at ``version``, in message order."""
    if level == PRIVILEGED:
        return []
    minor = version_minor(version)
    chosen: dict[str, Versioned] = {}
    for check in CHECKS:
        v = check.at(minor)
        if v is not None and (check.level == BASELINE or level == RESTRICTED):
            chosen[check.id] = v
    overridden = {o for v in chosen.values() for o in v.overrides}
    return [(cid, chosen[cid].fn) for cid in _ORDER if cid in chosen and cid not in overridden]


def check_pod(
    level: str, pod_spec: dict[str, Any] | None, pod_metadata: dict[str, Any] | None = None,
    version: str = "latest",
) -> list[Violation]:
    """Every violation of the Pod Security Standard ``level`` at ``version`` (empty: the pod passes)."""
    spec = _dict(pod_spec)
    meta = _dict(pod_metadata)
    out = []
    for cid, fn in checks_for(level, version):
        result = fn(meta, spec)
        if result is not None:
            out.append(Violation(cid, result[0], result[1]))
    return out


def check_ids(level: str, version: str = "latest") -> list[str]:
    return [cid for cid, _ in checks_for(level, version)]
