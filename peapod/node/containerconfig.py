"""Pod + container + image -> ContainerConfig, with Kubernetes' rules. Pure: the caller reads files.

* command/args vs the image: ``command`` replaces the image Entrypoint (and drops its Cmd);
  ``args`` alone replaces the image Cmd; ``$(VAR)`` in both is expanded from the container's env.
* user: ``securityContext.runAsUser``/``runAsGroup`` (container over pod), else the image USER
  (``uid``, ``uid:gid``, ``name``, ``name:group`` resolved through the rootfs /etc/passwd and
  /etc/group); supplementalGroups, fsGroup and the user's groups from /etc/group are added.
* resources: requests.cpu -> cpu.shares (min 2), limits.cpu -> CFS quota over a 100 ms period,
  limits.memory -> memory limit; oom_score_adj by QoS class like kubelet. :func:`pod_resources`
  is the pod-level cgroup (kubelet's ResourceConfigForPod).
* security: seccompProfile RuntimeDefault (also the default), Unconfined, or Localhost (the
  profile is read by the caller from ``<agent data>/seccomp/<localhostProfile>``,
  :func:`localhost_profile_path`); sysctls outside kubelet's safe set fail the pod at admission
  (:func:`forbidden_sysctl`, reason SysctlForbidden).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peapod.api.defaults import qos_class
from peapod.api.quantity import cpu_millicores, memory_bytes
from peapod.node.envvars import merge_image_env
from peapod.node.images.model import ImageConfig
from peapod.node.runtime.attach import STDIN_ONCE_ANNOTATION
from peapod.node.runtime.types import ContainerConfig, Device, Mount, Namespaces, Resources
from peapod.node.volumes.subpath import expand

Obj = Mapping[str, Any]

CPU_PERIOD = 100_000
MIN_SHARES = 2
MIN_QUOTA = 1000
GUARANTEED_OOM_SCORE_ADJ = -997
BESTEFFORT_OOM_SCORE_ADJ = 1000
SYSTEM_NODE_CRITICAL = "system-node-critical"
SYSTEM_CRITICAL_PRIORITY = 2_000_000_000

# kubelet's SafeSysctlAllowlist (v1.33) with the namespace each belongs to.
SAFE_SYSCTLS: dict[str, str] = {
    "kernel.shm_rmid_forced": "ipc",
    "net.ipv4.ip_local_port_range": "net",
    "net.ipv4.tcp_syncookies": "net",
    "net.ipv4.ping_group_range": "net",
    "net.ipv4.ip_unprivileged_port_start": "net",
    "net.ipv4.ip_local_reserved_ports": "net",
    "net.ipv4.tcp_keepalive_time": "net",
    "net.ipv4.tcp_fin_timeout": "net",
    "net.ipv4.tcp_keepalive_intvl": "net",
    "net.ipv4.tcp_keepalive_probes": "net",
    "net.ipv4.tcp_rmem": "net",
    "net.ipv4.tcp_wmem": "net",
}


class ConfigError(Exception):
    """The container cannot be configured; ``reason`` is the waiting reason kubelet shows."""

    def __init__(self, message: str, reason: str = "CreateContainerConfigError") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PodFiles:
    """Where the pod's shared things are on the host (the sandbox's paths)."""

    namespaces: Namespaces = field(default_factory=Namespaces)
    hostname: str | None = None
    shm_path: str | None = None
    hosts_path: str | None = None
    resolv_conf_path: str | None = None
    hostname_path: str | None = None


@dataclass(frozen=True)
class ContainerInputs:
    pod: Obj
    container: Obj
    image: ImageConfig
    rootfs: str
    env: Sequence[tuple[str, str]] = ()  # envvars.build_env
    mounts: Sequence[Mount] = ()  # volume mounts (volumes.container_mounts)
    files: PodFiles = field(default_factory=PodFiles)
    cgroups_path: str | None = None
    termination_log_path: str | None = None
    passwd: str = ""  # the rootfs /etc/passwd
    group: str = ""  # the rootfs /etc/group
    annotations: Mapping[str, str] = field(default_factory=dict)
    node_memory: int = 0  # bytes, for Burstable oom_score_adj
    host_devices: Sequence[Device] = ()  # for privileged containers
    localhost_seccomp: Mapping[str, Any] | None = None  # the loaded Localhost profile (read_localhost_profile)
    min_oom_score_adj: int = -1000  # the lowest the agent may set (oom_score_floor)


def pod_ref(pod: Obj) -> str:
    md = pod.get("metadata") or {}
    return f"{md.get('name', '')}_{md.get('namespace', 'default')}({md.get('uid', '')})"


# ---- command line ------------------------------------------------------------------------


def command_line(container: Obj, image: ImageConfig, env: Mapping[str, str]) -> list[str]:
    """The process args (kubelet's ExpandContainerCommandAndArgs + containerd's image merge)."""

    def lookup(name: str) -> str:
        return env[name] if name in env else f"$({name})"

    command = [expand(c, lookup) for c in container.get("command") or []]
    args = [expand(a, lookup) for a in container.get("args") or []]
    if command:
        argv = command + args
    else:
        argv = list(image.entrypoint or ()) + (args if args else list(image.cmd or ()))
    if not argv:
        raise ConfigError("no command specified", reason="CreateContainerError")
    return argv


# ---- user ----------------------------------------------------------------------------------


def _parse_db(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            rows.append(line.split(":"))
    return rows


def _lookup_user(passwd: str, name: str) -> tuple[int, int] | None:
    for row in _parse_db(passwd):
        if len(row) >= 4 and row[0] == name:
            try:
                return int(row[2]), int(row[3])
            except ValueError:
                return None
    return None


def _user_by_uid(passwd: str, uid: int) -> tuple[str, int] | None:
    for row in _parse_db(passwd):
        if len(row) >= 4 and row[2] == str(uid):
            try:
                return row[0], int(row[3])
            except ValueError:
                return None
    return None


def _lookup_group(group: str, name: str) -> int | None:
    for row in _parse_db(group):
        if len(row) >= 3 and row[0] == name:
            try:
                return int(row[2])
            except ValueError:
                return None
    return None


def _member_groups(group: str, user: str) -> list[int]:
    out = []
    for row in _parse_db(group):
        if len(row) >= 4 and user in row[3].split(","):
            try:
                out.append(int(row[2]))
            except ValueError:
                continue
    return out


def _sc(pod: Obj, container: Obj, key: str) -> Any:
    c = (container.get("securityContext") or {}).get(key)
    if c is not None:
        return c
    return ((pod.get("spec") or {}).get("securityContext") or {}).get(key)


def resolve_user(pod: Obj, container: Obj, image_user: str, passwd: str,
                 group: str) -> tuple[int, int, list[int]]:
    """(uid, gid, additional gids). Raises ConfigError for unknown names and runAsNonRoot breaches."""
    run_as_user = _sc(pod, container, "runAsUser")
    run_as_group = _sc(pod, container, "runAsGroup")
    non_root = _sc(pod, container, "runAsNonRoot")
    cname = container.get("name", "")
    user_part, _, group_part = (image_user or "").partition(":")
    username = ""
    if run_as_user is not None:
        uid = int(run_as_user)
        found = _user_by_uid(passwd, uid)
        gid = found[1] if found else 0
        username = found[0] if found else ""
    elif user_part:
        if user_part.isdigit():
            uid = int(user_part)
            found = _user_by_uid(passwd, uid)
            gid = found[1] if found else 0
            username = found[0] if found else ""
        else:
            if non_root:
                raise ConfigError(
                    f"container has runAsNonRoot and image has non-numeric user ({user_part}), cannot "
                    f'verify user is non-root (pod: "{pod_ref(pod)}", container: {cname})')
            got = _lookup_user(passwd, user_part)
            if got is None:
                raise ConfigError(f'unable to find user {user_part}: no matching entries in passwd file',
                                  reason="CreateContainerError")
            uid, gid = got
            username = user_part
        if group_part:
            if group_part.isdigit():
                gid = int(group_part)
            else:
                g = _lookup_group(group, group_part)
                if g is None:
                    raise ConfigError(f"unable to find group {group_part}: no matching entries in group file",
                                      reason="CreateContainerError")
                gid = g
    else:
        uid, gid, username = 0, 0, "root"
    if run_as_group is not None:
        gid = int(run_as_group)
    if non_root and run_as_user is not None and uid == 0:
        raise ConfigError(f'container\'s runAsUser breaks non-root policy (pod: "{pod_ref(pod)}", '
                          f"container: {cname})")
    if non_root and uid == 0:
        raise ConfigError(f'container has runAsNonRoot and image will run as root (pod: "{pod_ref(pod)}", '
                          f"container: {cname})")
    extra: list[int] = []
    psc = (pod.get("spec") or {}).get("securityContext") or {}
    if username and psc.get("supplementalGroupsPolicy") != "Strict":
        extra += _member_groups(group, username)
    extra += [int(g) for g in psc.get("supplementalGroups") or []]
    if psc.get("fsGroup") is not None:
        extra.append(int(psc["fsGroup"]))
    seen: list[int] = []
    for g in extra:
        if g != gid and g not in seen:
            seen.append(g)
    return uid, gid, seen


# ---- resources ------------------------------------------------------------------------------


def milli_cpu_to_shares(milli: int) -> int:
    """kubelet's MilliCPUToShares: cgroup v1 cpu.shares (v2 weight: cgroups.shares_to_weight)."""
    if milli <= 0:
        return MIN_SHARES
    return max(MIN_SHARES, milli * 1024 // 1000)


def milli_cpu_to_quota(milli: int, period: int = CPU_PERIOD) -> int | None:
    """kubelet's MilliCPUToQuota: the CFS quota (us per ``period``); None when there is no limit."""
    if milli <= 0:
        return None
    return max(MIN_QUOTA, milli * period // 1000)


def cgroup_resources(container: Obj) -> Resources:
    """One container's cgroup: shares from requests.cpu (which default to limits), CFS quota from
    limits.cpu, memory limit (and no swap) from limits.memory."""
    res = container.get("resources") or {}
    requests = res.get("requests") or {}
    limits = res.get("limits") or {}
    cpu_req = requests.get("cpu", limits.get("cpu"))
    shares = milli_cpu_to_shares(cpu_millicores(cpu_req) if cpu_req is not None else 0)
    quota = milli_cpu_to_quota(cpu_millicores(limits["cpu"])) if limits.get("cpu") is not None else None
    mem = memory_bytes(limits["memory"]) if limits.get("memory") is not None else None
    return Resources(cpu_shares=shares, cpu_quota=quota, cpu_period=CPU_PERIOD if quota else None,
                     memory_limit=mem)


def _amount(res: Obj, key: str, name: str) -> int:
    """requests/limits[name] of a container (cpu in millicores, else bytes); requests default to limits."""
    block = dict(res.get(key) or {})
    if key == "requests":
        block = {**(res.get("limits") or {}), **block}
    v = block.get(name)
    if v is None:
        return 0
    return cpu_millicores(v) if name == "cpu" else memory_bytes(v)


def pod_amount(pod: Obj, key: str, name: str) -> int:
    """resourcehelper.PodRequests/PodLimits for one resource: the app containers and sidecars summed,
    or the largest init container (plus the sidecars started before it) if that is more."""
    spec = pod.get("spec") or {}
    total = sum(_amount(c.get("resources") or {}, key, name) for c in spec.get("containers") or [])
    sidecars = init_max = 0
    for c in spec.get("initContainers") or []:
        v = _amount(c.get("resources") or {}, key, name)
        if c.get("restartPolicy") == "Always":
            total += v
            sidecars += v
            init_max = max(init_max, sidecars)
        else:
            init_max = max(init_max, v + sidecars)
    overhead = ((spec.get("overhead") or {}).get(name))
    extra = 0 if overhead is None else (cpu_millicores(overhead) if name == "cpu" else memory_bytes(overhead))
    return max(total, init_max) + extra


def _all_limit(pod: Obj, name: str) -> bool:
    spec = pod.get("spec") or {}
    cs = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    return bool(cs) and all(_amount(c.get("resources") or {}, "limits", name) > 0 for c in cs)


def pod_resources(pod: Obj, *, pids_limit: int | None = None) -> Resources:
    """The pod-level cgroup (kubelet's ResourceConfigForPod): shares from the pod's cpu requests;
    CFS quota and memory limit only when every container declares that limit; BestEffort pods get
    the minimum shares. ``pids_limit``: the node's per-pod process cap (kubelet --pod-max-pids)."""
    qos = (pod.get("status") or {}).get("qosClass") or qos_class(dict(pod))
    if qos == "BestEffort":
        return Resources(cpu_shares=MIN_SHARES, pids_limit=pids_limit)
    shares = milli_cpu_to_shares(pod_amount(pod, "requests", "cpu"))
    quota = mem = None
    if qos == "Guaranteed" or _all_limit(pod, "cpu"):
        quota = milli_cpu_to_quota(pod_amount(pod, "limits", "cpu"))
    if qos == "Guaranteed" or _all_limit(pod, "memory"):
        mem = pod_amount(pod, "limits", "memory") or None
    return Resources(cpu_shares=shares, cpu_quota=quota, cpu_period=CPU_PERIOD if quota else None,
                     memory_limit=mem, pids_limit=pids_limit)


def _is_node_critical(pod: Obj) -> bool:
    spec = pod.get("spec") or {}
    return spec.get("priorityClassName") == SYSTEM_NODE_CRITICAL and \
        int(spec.get("priority") or 0) >= SYSTEM_CRITICAL_PRIORITY


def _burstable_score(memory_request: int, node_memory: int) -> int:
    return 1000 - (1000 * memory_request) // node_memory


def oom_score_adj(pod: Obj, container: Obj, node_memory: int) -> int:
    """kubelet's GetContainerOOMScoreAdjust: Guaranteed (and node-critical) -997, BestEffort 1000,
    Burstable 1000 - 1000*request/capacity kept within [3, 999]; a sidecar never scores above the
    pod's smallest regular container."""
    if _is_node_critical(pod):
        return GUARANTEED_OOM_SCORE_ADJ
    qos = (pod.get("status") or {}).get("qosClass") or qos_class(dict(pod))
    if qos == "Guaranteed":
        return GUARANTEED_OOM_SCORE_ADJ
    if qos == "BestEffort":
        return BESTEFFORT_OOM_SCORE_ADJ
    if node_memory <= 0:
        return BESTEFFORT_OOM_SCORE_ADJ - 1
    score = _burstable_score(_amount(container.get("resources") or {}, "requests", "memory"), node_memory)
    spec = pod.get("spec") or {}
    sidecar = container.get("restartPolicy") == "Always" and any(
        c is container or c.get("name") == container.get("name") for c in spec.get("initContainers") or [])
    if sidecar and spec.get("containers"):
        smallest = min(_amount(c.get("resources") or {}, "requests", "memory") for c in spec["containers"])
        score = min(score, _burstable_score(smallest, node_memory))
    if score < 1000 + GUARANTEED_OOM_SCORE_ADJ:
        return 1000 + GUARANTEED_OOM_SCORE_ADJ
    if score == BESTEFFORT_OOM_SCORE_ADJ:
        return score - 1
    return int(score)


CAP_SYS_RESOURCE = 24


def oom_score_floor(status: str, own_adj: str) -> int:
    """The lowest oom_score_adj this process can give a child: without CAP_SYS_RESOURCE the kernel
    refuses values below its own (runc then fails to create the container), so Guaranteed pods
    get the agent's value instead of -997. ``status``/``own_adj``: /proc/self/status and
    /proc/self/oom_score_adj."""
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            if int(line.split()[1], 16) & (1 << CAP_SYS_RESOURCE):
                return -1000
            break
    try:
        return int(own_adj.strip())
    except ValueError:
        return -1000


# ---- sysctls -------------------------------------------------------------------------------


def normalize_sysctl(name: str) -> str:
    """kubelet's NormalizeName: "net/ipv4/ip_forward" -> "net.ipv4.ip_forward" (a '/'-separated
    name may contain dots, which become slashes)."""
    first_dot, first_slash = name.find("."), name.find("/")
    if first_slash != -1 and (first_dot == -1 or first_slash < first_dot):
        return name.translate(str.maketrans("./", "/."))
    return name


def forbidden_sysctl(pod: Obj) -> str | None:
    """kubelet's sysctl admission: the message of the first sysctl outside the safe set (or in a
    namespace the pod shares with the host), None when all are allowed."""
    spec = pod.get("spec") or {}
    for s in (spec.get("securityContext") or {}).get("sysctls") or []:
        name = normalize_sysctl(str(s.get("name", "")))
        ns = SAFE_SYSCTLS.get(name)
        if ns is None:
            return f"forbidden sysctl: \"{name}\" not allowlisted"
        if (ns == "net" and spec.get("hostNetwork")) or (ns == "ipc" and spec.get("hostIPC")):
            return f"forbidden sysctl: \"{name}\" not allowed with host {ns} enabled"
    return None


# ---- seccomp -------------------------------------------------------------------------------


def localhost_profile_path(pod: Obj, container: Obj) -> str | None:
    """The localhostProfile of a container whose effective seccompProfile is Localhost."""
    prof = _sc(pod, container, "seccompProfile") or {}
    if prof.get("type") != "Localhost":
        return None
    return str(prof.get("localhostProfile") or "")


def read_localhost_profile(root: str | os.PathLike[str], rel: str) -> dict[str, Any]:
    """Load ``<root>/<rel>`` (a JSON OCI seccomp section, as kubelet's --seccomp-profile-root holds).
    Not pure. Raises ConfigError (CreateContainerError) when missing, outside ``root`` or invalid."""
    if not rel:
        raise ConfigError("localhostProfile must be set if seccompProfile type is Localhost.",
                          reason="CreateContainerError")
    base = os.path.realpath(root)
    path = os.path.realpath(os.path.join(base, rel))
    if not path.startswith(base + os.sep):
        raise ConfigError(f"seccomp profile {rel!r} is outside the profile root", reason="CreateContainerError")
    try:
        prof = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"failed to generate seccomp spec opts: failed to load seccomp profile {path!r}: {e}",
                          reason="CreateContainerError") from e
    if not isinstance(prof, dict) or not prof.get("defaultAction"):
        raise ConfigError(f"failed to generate seccomp spec opts: seccomp profile {path!r} has no defaultAction",
                          reason="CreateContainerError")
    return prof


# ---- the whole config -------------------------------------------------------------------------


def _seccomp(pod: Obj, container: Obj, localhost: Mapping[str, Any] | None) -> str | Mapping[str, Any]:
    prof = _sc(pod, container, "seccompProfile") or {}
    typ = prof.get("type")
    if typ in (None, "", "RuntimeDefault"):
        return "RuntimeDefault"  # like kubelet --seccomp-default
    if typ == "Unconfined":
        return "Unconfined"
    if typ == "Localhost":
        if localhost is None:
            raise ConfigError("localhost seccomp profile was not loaded", reason="CreateContainerError")
        return dict(localhost)
    raise ConfigError(f"seccomp profile type {typ!r} is not supported")


def build_container_config(inp: ContainerInputs) -> ContainerConfig:
    pod, c, img = inp.pod, inp.container, inp.image
    spec = pod.get("spec") or {}
    env_map = dict(inp.env)
    env = merge_image_env(list(img.env), list(inp.env))
    argv = command_line(c, img, env_map)
    uid, gid, extra_gids = resolve_user(pod, c, img.user, inp.passwd, inp.group)
    sc = c.get("securityContext") or {}
    privileged = bool(sc.get("privileged"))
    caps = sc.get("capabilities") or {}
    proc_unmasked = sc.get("procMount") == "Unmasked"
    allow_escalation = sc.get("allowPrivilegeEscalation")
    sysctls = {normalize_sysctl(s["name"]): str(s.get("value", "")) for s in
               ((spec.get("securityContext") or {}).get("sysctls") or []) if s.get("name")}
    return ContainerConfig(
        args=argv,
        rootfs=inp.rootfs,
        env=env,
        cwd=c.get("workingDir") or img.working_dir or "/",
        uid=uid,
        gid=gid,
        additional_gids=extra_gids,
        mounts=list(inp.mounts),
        namespaces=inp.files.namespaces,
        hostname=inp.files.hostname,
        cgroups_path=inp.cgroups_path,
        resources=cgroup_resources(c),
        cap_add=list(caps.get("add") or []),
        cap_drop=list(caps.get("drop") or []),
        privileged=privileged,
        no_new_privileges=allow_escalation is False and not privileged,
        readonly_rootfs=bool(sc.get("readOnlyRootFilesystem")),
        masked_paths=[] if proc_unmasked else None,
        readonly_paths=[] if proc_unmasked else None,
        seccomp=None if privileged else _seccomp(pod, c, inp.localhost_seccomp),
        devices=list(inp.host_devices) if privileged else [],
        shm_path=inp.files.shm_path,
        hosts_path=inp.files.hosts_path,
        resolv_conf_path=inp.files.resolv_conf_path,
        hostname_path=inp.files.hostname_path,
        termination_log_path=inp.termination_log_path,
        termination_message_path=c.get("terminationMessagePath") or "/dev/termination-log",
        terminal=bool(c.get("tty")),
        stdin=bool(c.get("stdin")),
        sysctls=sysctls,
        oom_score_adj=max(inp.min_oom_score_adj, oom_score_adj(pod, c, inp.node_memory)),
        annotations=_with_stdin_once(inp.annotations, c),
    )


def _with_stdin_once(annotations: Mapping[str, str], c: Mapping[str, Any]) -> dict[str, str]:
    """stdinOnce reaches conmon through the bundle (attach): stdin closes when the first client leaves."""
    out = dict(annotations)
    if c.get("stdin") and c.get("stdinOnce"):
        out[STDIN_ONCE_ANNOTATION] = "true"
    return out
