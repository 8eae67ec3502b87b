"""Pod + container + image -> ContainerConfig, with Kubernetes' rules. Pure: the caller reads files.

* command/args vs the image: ``command`` replaces the image Entrypoint (and drops its Cmd);
  ``args`` alone replaces the image Cmd; ``$(VAR)`` in both is expanded from the container's env.
* user: ``securityContext.runAsUser``/``runAsGroup`` (container over pod), else the image USER
  (``uid``, ``uid:gid``, ``name``, ``name:group`` resolved through the rootfs /etc/passwd and
  /etc/group); supplementalGroups, fsGroup and the user's groups from /etc/group are added.
* resources: requests.cpu -> cpu.shares (min 2), limits.cpu -> CFS quota over a 100 ms period,
  limits.memory -> memory limit; oom_score_adj by QoS class like kubelet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from peapod.api.defaults import qos_class
from peapod.api.quantity import cpu_millicores, memory_bytes
from peapod.node.envvars import merge_image_env
from peapod.node.images.model import ImageConfig
from peapod.node.runtime.types import ContainerConfig, Device, Mount, Namespaces, Resources
from peapod.node.volumes.subpath import expand

Obj = Mapping[str, Any]

CPU_PERIOD = 100_000
MIN_SHARES = 2
MIN_QUOTA = 1000


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


def cgroup_resources(container: Obj) -> Resources:
    res = container.get("resources") or {}
    requests = res.get("requests") or {}
    limits = res.get("limits") or {}
    cpu_req = requests.get("cpu", limits.get("cpu"))
    milli = cpu_millicores(cpu_req) if cpu_req is not None else 0
    shares = max(MIN_SHARES, milli * 1024 // 1000) if milli else MIN_SHARES
    quota = period = None
    if limits.get("cpu") is not None:
        lim = cpu_millicores(limits["cpu"])
        if lim > 0:
            quota, period = max(MIN_QUOTA, lim * CPU_PERIOD // 1000), CPU_PERIOD
    mem = memory_bytes(limits["memory"]) if limits.get("memory") is not None else None
    return Resources(cpu_shares=shares, cpu_quota=quota, cpu_period=period, memory_limit=mem)


def oom_score_adj(pod: Obj, container: Obj, node_memory: int) -> int:
    """kubelet's GetContainerOOMScoreAdjust."""
    qos = (pod.get("status") or {}).get("qosClass") or qos_class(dict(pod))
    if qos == "Guaranteed":
        return -997
    if qos == "BestEffort":
        return 1000
    req = ((container.get("resources") or {}).get("requests") or {}).get("memory")
    if req is None or node_memory <= 0:
        return 999
    score = 1000 - (1000 * memory_bytes(req)) // node_memory
    return int(min(max(score, 2), 999))


# ---- the whole config -------------------------------------------------------------------------


def _seccomp(pod: Obj, container: Obj) -> str | None:
    prof = _sc(pod, container, "seccompProfile") or {}
    typ = prof.get("type")
    if typ in (None, "", "RuntimeDefault"):
        return "RuntimeDefault"  # like kubelet --seccomp-default
    if typ == "Unconfined":
        return "Unconfined"
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
    sysctls = {s["name"]: str(s.get("value", "")) for s in
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
        seccomp=None if privileged else _seccomp(pod, c),
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
        oom_score_adj=oom_score_adj(pod, c, inp.node_memory),
        annotations=dict(inp.annotations),
    )
