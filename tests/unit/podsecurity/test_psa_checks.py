"""Tables for each Pod Security check: which pods pass, and kube's exact reason and detail for the rest."""

from __future__ import annotations

from typing import Any

import pytest

from peapod.api.podsecurity import check_ids, check_pod


def c(name: str = "c", **sc: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "image": "busybox"}
    if sc:
        out["securityContext"] = sc
    return out


def spec(*containers: dict[str, Any], init: tuple[dict[str, Any], ...] = (), **fields: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"containers": list(containers or [c()]), **fields}
    if init:
        s["initContainers"] = list(init)
    return s


# A pod that passes restricted; cases below change one thing at a time.
GOOD_SC = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
GOOD_POD_SC = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def good(*containers: dict[str, Any], **fields: Any) -> dict[str, Any]:
    s = spec(*(containers or (c(**GOOD_SC),)), **fields)
    s.setdefault("securityContext", dict(GOOD_POD_SC))
    return s


BASELINE_CASES: list[tuple[str, dict[str, Any], dict[str, Any], list[str]]] = [
    ("plain pod", spec(), {}, []),
    # hostProcess
    ("hostProcess pod", spec(securityContext={"windowsOptions": {"hostProcess": True}}), {},
     ["hostProcess (pod must not set securityContext.windowsOptions.hostProcess=true)"]),
    ("hostProcess pod and containers",
     spec(c("a", windowsOptions={"hostProcess": True}), c("b", windowsOptions={"hostProcess": True}),
          securityContext={"windowsOptions": {"hostProcess": True}}), {},
     ['hostProcess (pod and containers "a", "b" must not set securityContext.windowsOptions.hostProcess=true)']),
    ("hostProcess false", spec(c(windowsOptions={"hostProcess": False})), {}, []),
    # host namespaces
    ("hostNetwork", spec(hostNetwork=True), {}, ["host namespaces (hostNetwork=true)"]),
    ("all host namespaces", spec(hostNetwork=True, hostPID=True, hostIPC=True), {},
     ["host namespaces (hostNetwork=true, hostPID=true, hostIPC=true)"]),
    ("host namespaces false", spec(hostNetwork=False, hostPID=False, hostIPC=False), {}, []),
    # privileged
    ("privileged", spec(c("a", privileged=True)), {},
     ['privileged (container "a" must not set securityContext.privileged=true)']),
    ("privileged init and container", spec(c("a", privileged=True), init=(c("i", privileged=True),)), {},
     ['privileged (containers "i", "a" must not set securityContext.privileged=true)']),
    ("privileged false", spec(c(privileged=False)), {}, []),
    # capabilities
    ("default capabilities", spec(c(capabilities={"add": ["CHOWN", "NET_BIND_SERVICE", "KILL"]})), {}, []),
    ("non-default capabilities",
     spec(c("a", capabilities={"add": ["SYS_ADMIN", "CHOWN"]}), c("b", capabilities={"add": ["NET_RAW"]})), {},
     ['non-default capabilities (containers "a", "b" must not include "NET_RAW", "SYS_ADMIN" in '
      "securityContext.capabilities.add)"]),
    # hostPath volumes
    ("hostPath volume", spec(volumes=[{"name": "h", "hostPath": {"path": "/"}}, {"name": "e", "emptyDir": {}}]), {},
     ['hostPath volumes (volume "h")']),
    ("hostPath volumes", spec(volumes=[{"name": "a", "hostPath": {"path": "/"}}, {"name": "b", "hostPath": {}}]),
     {}, ['hostPath volumes (volumes "a", "b")']),
    # hostPorts
    ("hostPort", spec({"name": "c", "image": "x", "ports": [{"containerPort": 80, "hostPort": 80}]}), {},
     ['hostPort (container "c" uses hostPort 80)']),
    ("hostPorts", spec(
        {"name": "a", "image": "x", "ports": [{"containerPort": 1, "hostPort": 8080}, {"containerPort": 2}]},
        {"name": "b", "image": "x", "ports": [{"containerPort": 1, "hostPort": 10000}]}), {},
     ['hostPort (containers "a", "b" use hostPorts 10000, 8080)']),
    ("hostPort zero", spec({"name": "a", "image": "x", "ports": [{"containerPort": 1, "hostPort": 0}]}), {}, []),
    # AppArmor
    ("apparmor runtime default", spec(securityContext={"appArmorProfile": {"type": "RuntimeDefault"}}), {}, []),
    ("apparmor localhost", spec(c(appArmorProfile={"type": "Localhost", "localhostProfile": "p"})), {}, []),
    ("apparmor unconfined pod", spec(securityContext={"appArmorProfile": {"type": "Unconfined"}}), {},
     ['forbidden AppArmor profile (pod must not set AppArmor profile type to "Unconfined")']),
    ("apparmor unconfined container", spec(c("foo", appArmorProfile={"type": "Unconfined"})), {},
     ['forbidden AppArmor profile (container "foo" must not set AppArmor profile type to "Unconfined")']),
    ("apparmor annotations", spec(), {"annotations": {
        "container.apparmor.security.beta.kubernetes.io/": "bogus",
        "container.apparmor.security.beta.kubernetes.io/a": "",
        "container.apparmor.security.beta.kubernetes.io/b": "runtime/default",
        "container.apparmor.security.beta.kubernetes.io/c": "localhost/",
        "container.apparmor.security.beta.kubernetes.io/d": "localhost/foo",
        "container.apparmor.security.beta.kubernetes.io/e": "unconfined",
        "container.apparmor.security.beta.kubernetes.io/f": "unknown",
        "other": "unconfined",
    }}, ['forbidden AppArmor profiles (annotations must not set AppArmor profile type to '
         '"container.apparmor.security.beta.kubernetes.io/="bogus"", '
         '"container.apparmor.security.beta.kubernetes.io/e="unconfined"", '
         '"container.apparmor.security.beta.kubernetes.io/f="unknown"")']),
    # SELinux
    ("selinux allowed", spec(c(seLinuxOptions={"type": "container_t", "level": "s0:c1"}),
                             securityContext={"seLinuxOptions": {"type": "container_init_t"}}), {}, []),
    ("selinux type", spec(c("a", seLinuxOptions={"type": "spc_t"})), {},
     ['seLinuxOptions (container "a" set forbidden securityContext.seLinuxOptions: type "spc_t")']),
    ("selinux user and role", spec(c("a", seLinuxOptions={"user": "u"}),
                                   securityContext={"seLinuxOptions": {"role": "r", "type": "bar"}}), {},
     ['seLinuxOptions (pod and container "a" set forbidden securityContext.seLinuxOptions: type "bar"; '
      "user may not be set; role may not be set)"]),
    # procMount
    ("procMount default", spec(c(procMount="Default")), {}, []),
    ("procMount unmasked", spec(c("a", procMount="Unmasked")), {},
     ['procMount (container "a" must not set securityContext.procMount to "Unmasked")']),
    # seccomp (baseline only forbids Unconfined)
    ("seccomp unset", spec(), {}, []),
    ("seccomp localhost", spec(c(seccompProfile={"type": "Localhost", "localhostProfile": "p.json"})), {}, []),
    ("seccomp unconfined", spec(c("a", seccompProfile={"type": "Unconfined"}),
                                securityContext={"seccompProfile": {"type": "Unconfined"}}), {},
     ['seccompProfile (pod and container "a" must not set securityContext.seccompProfile.type to "Unconfined")']),
    # sysctls
    ("safe sysctls", spec(securityContext={"sysctls": [
        {"name": n, "value": "1"} for n in ("kernel.shm_rmid_forced", "net.ipv4.tcp_keepalive_time",
                                            "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_rmem")]}), {}, []),
    ("unsafe sysctls", spec(securityContext={"sysctls": [
        {"name": "kernel.msgmax", "value": "1"}, {"name": "net.ipv4.ping_group_range", "value": "0 1"},
        {"name": "net.core.somaxconn", "value": "1"}]}), {},
     ["forbidden sysctls (kernel.msgmax, net.core.somaxconn)"]),
]


@pytest.mark.parametrize(("name", "pod_spec", "meta", "expected"), BASELINE_CASES, ids=[x[0] for x in BASELINE_CASES])
def test_baseline(name: str, pod_spec: dict[str, Any], meta: dict[str, Any], expected: list[str]) -> None:
    assert [str(v) for v in check_pod("baseline", pod_spec, meta)] == expected


RESTRICTED_CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("compliant", good(), []),
    ("compliant with NET_BIND_SERVICE and allowed volumes",
     good(c(allowPrivilegeEscalation=False, capabilities={"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}),
          volumes=[{"name": n, t: {}} for n, t in (
              ("a", "configMap"), ("b", "csi"), ("c", "downwardAPI"), ("d", "emptyDir"), ("e", "ephemeral"),
              ("f", "persistentVolumeClaim"), ("g", "projected"), ("h", "secret"))]), []),
    ("container-level settings suffice",
     good(c(allowPrivilegeEscalation=False, capabilities={"drop": ["ALL"]}, runAsNonRoot=True,
            seccompProfile={"type": "Localhost", "localhostProfile": "x"}), securityContext={}), []),
    ("bare pod", spec(), [
        'allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false)',
        'unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"])',
        'runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true)',
        'seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to '
        '"RuntimeDefault" or "Localhost")',
    ]),
    ("allowPrivilegeEscalation true", good(c("a", **{**GOOD_SC, "allowPrivilegeEscalation": True}), c("b", **GOOD_SC)),
     ['allowPrivilegeEscalation != false (container "a" must set securityContext.allowPrivilegeEscalation=false)']),
    ("capabilities: drop without ALL, add more",
     good(c("a", allowPrivilegeEscalation=False, capabilities={"drop": ["NET_RAW"], "add": ["SYS_ADMIN", "CHOWN"]}),
          c("b", allowPrivilegeEscalation=False, capabilities={"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]})),
     ['unrestricted capabilities (container "a" must set securityContext.capabilities.drop=["ALL"]; '
      'container "a" must not include "CHOWN", "SYS_ADMIN" in securityContext.capabilities.add)']),
    ("runAsNonRoot false", good(c("a", **GOOD_SC, runAsNonRoot=False),
                                securityContext={"runAsNonRoot": False, "seccompProfile": {"type": "RuntimeDefault"}}),
     ['runAsNonRoot != true (pod and container "a" must not set securityContext.runAsNonRoot=false)']),
    ("runAsNonRoot false on a container only", good(c("a", **GOOD_SC, runAsNonRoot=False), c("b", **GOOD_SC)),
     ['runAsNonRoot != true (container "a" must not set securityContext.runAsNonRoot=false)']),
    ("runAsUser 0", good(c("a", **GOOD_SC, runAsUser=0), c("b", **GOOD_SC, runAsUser=1000),
                         securityContext={**GOOD_POD_SC, "runAsUser": 0}),
     ['runAsUser=0 (pod and container "a" must not set runAsUser=0)']),
    ("seccomp unconfined container", good(c("a", **GOOD_SC, seccompProfile={"type": "Unconfined"})),
     ['seccompProfile (container "a" must not set securityContext.seccompProfile.type to "Unconfined")']),
    ("seccomp missing on one container",
     good(c("a", **GOOD_SC, seccompProfile={"type": "RuntimeDefault"}), c("b", **GOOD_SC),
          securityContext={"runAsNonRoot": True}),
     ['seccompProfile (pod or container "b" must set securityContext.seccompProfile.type to '
      '"RuntimeDefault" or "Localhost")']),
    ("restricted volume types", good(volumes=[
        {"name": "h", "hostPath": {"path": "/"}}, {"name": "n", "nfs": {"server": "s", "path": "/"}},
        {"name": "g", "gitRepo": {"repository": "r"}}, {"name": "i", "image": {"reference": "x"}},
        {"name": "ok", "emptyDir": {}}]),
     ['restricted volume types (volumes "h", "n", "g", "i" use restricted volume types '
      '"gitRepo", "hostPath", "nfs", "unknown")']),
    ("one restricted volume", good(volumes=[{"name": "h", "hostPath": {"path": "/"}}]),
     ['restricted volume types (volume "h" uses restricted volume type "hostPath")']),
    ("windows pods skip the linux-only checks", spec(os={"name": "windows"}, securityContext={"runAsNonRoot": True}),
     []),
    ("baseline checks still apply, baseline first", good(c("a", **GOOD_SC, privileged=True), hostPID=True), [
        "host namespaces (hostPID=true)",
        'privileged (container "a" must not set securityContext.privileged=true)',
    ]),
    ("ephemeral containers count", good(ephemeralContainers=[{"name": "e", "image": "x"}]), [
        'allowPrivilegeEscalation != false (container "e" must set securityContext.allowPrivilegeEscalation=false)',
        'unrestricted capabilities (container "e" must set securityContext.capabilities.drop=["ALL"])',
    ]),
]


@pytest.mark.parametrize(("name", "pod_spec", "expected"), RESTRICTED_CASES, ids=[x[0] for x in RESTRICTED_CASES])
def test_restricted(name: str, pod_spec: dict[str, Any], expected: list[str]) -> None:
    assert [str(v) for v in check_pod("restricted", pod_spec, {})] == expected


def test_privileged_level_checks_nothing() -> None:
    assert check_pod("privileged", spec(c(privileged=True), hostNetwork=True), {}) == []
    assert check_ids("privileged") == []


def test_violation_ids_and_reasons() -> None:
    (v,) = check_pod("baseline", spec(hostIPC=True), {})
    assert (v.check, v.reason, v.detail) == ("hostNamespaces", "host namespaces", "hostIPC=true")


def test_restricted_overrides_overlapping_baseline_checks() -> None:
    ids = check_ids("restricted")
    assert "capabilities_baseline" not in ids and "hostPathVolumes" not in ids
    assert "seccompProfile_baseline" not in ids
    # A hostPath volume is reported once, as a restricted volume type.
    s = good(c("a", allowPrivilegeEscalation=False, capabilities={"drop": ["ALL"], "add": ["SYS_ADMIN"]}),
             volumes=[{"name": "h", "hostPath": {"path": "/"}}])
    assert [v.check for v in check_pod("restricted", s, {})] == ["capabilities_restricted", "restrictedVolumes"]
    assert [v.check for v in check_pod("baseline", s, {})] == ["capabilities_baseline", "hostPathVolumes"]


@pytest.mark.parametrize(("version", "allowed"), [
    ("v1.26", False), ("v1.27", True), ("v1.31", True), ("latest", True), ("v1.99", True)])
def test_versioned_sysctls(version: str, allowed: bool) -> None:
    s = spec(securityContext={"sysctls": [{"name": "net.ipv4.ip_local_reserved_ports", "value": "1"}]})
    assert (check_pod("baseline", s, {}, version) == []) is allowed


def test_versioned_restricted_checks() -> None:
    s = good(c(**GOOD_SC, runAsUser=0), os={"name": "windows"})
    # runAsUser exists from v1.23; allowPrivilegeEscalation etc. skip windows pods from v1.25.
    assert "runAsUser" not in check_ids("restricted", "v1.22")
    assert "runAsUser" in check_ids("restricted", "v1.23")
    assert [v.check for v in check_pod("restricted", s, {}, "v1.25")] == ["runAsUser"]
    bare_windows = spec(os={"name": "windows"}, securityContext={"runAsNonRoot": True})
    assert [v.check for v in check_pod("restricted", bare_windows, {}, "v1.24")] == [
        "allowPrivilegeEscalation", "capabilities_restricted", "seccompProfile_restricted"]
    # Before v1.22 restricted relied on the baseline capability check.
    assert "capabilities_baseline" in check_ids("restricted", "v1.21")
