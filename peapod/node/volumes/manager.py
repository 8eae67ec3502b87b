"""The volume manager: prepare a pod's volumes on the host, describe each container's mounts, tear down.

Everything is derived from the pod spec and what is on disk (directories, ``..data`` links, the mount
table), so each call is idempotent and safe after an agent restart.

Layout under the pod dir (kubelet's)::

    volumes/kubernetes.io~empty-dir/<name>     emptyDir (tmpfs mounted there for medium Memory)
    volumes/kubernetes.io~configmap/<name>     disk, AtomicWriter layout
    volumes/kubernetes.io~secret/<name>        tmpfs, AtomicWriter layout
    volumes/kubernetes.io~downward-api/<name>  tmpfs, AtomicWriter layout
    volumes/kubernetes.io~projected/<name>     tmpfs, AtomicWriter layout
    volume-subpaths/<volume>/<container>/<i>   bind mounts of checked subPaths (i = volumeMount index)
    containers/<container>/<8 hex>             termination-message files
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peapod.api.quantity import memory_bytes
from peapod.clock import Clock, RealClock
from peapod.node.runtime.types import Mount

from . import emptydir
from .atomic_writer import AtomicWriter
from .hostpath import check_host_path
from .mounter import LinuxMounter, Mounter
from .ownership import fs_group_change_policy, pod_fs_group, root_matches, set_volume_ownership
from .payload import DEFAULT_MODE, configmap_payload, downward_payload, projected_payload, secret_payload
from .subpath import SubPathError, bind_subpath, expand_subpath_expr, safe_mkdir, validate_subpath
from .types import (
    CONFIGMAP,
    DOWNWARD_API,
    EMPTY_DIR,
    PROJECTED,
    SECRET,
    SUBPATHS_DIR,
    VOLUMES_DIR,
    FileProjection,
    PreparedVolume,
    VolumeError,
    VolumesNotReady,
    VolumeSources,
)

# kind -> (plugin dir, memory-backed, read-only attribute); hostPath has no directory of its own.
_PLUGINS: dict[str, tuple[str, bool, bool]] = {
    "emptyDir": (EMPTY_DIR, False, False),
    "configMap": (CONFIGMAP, False, True),
    "secret": (SECRET, True, True),
    "downwardAPI": (DOWNWARD_API, True, True),
    "projected": (PROJECTED, True, True),
}
_API_DATA = ("configMap", "secret", "downwardAPI", "projected")

PROPAGATION = {None: "rprivate", "": "rprivate", "None": "rprivate", "HostToContainer": "rslave",
               "Bidirectional": "rshared"}


def volume_kind(vol: Mapping[str, Any]) -> str:
    for key, value in vol.items():
        if key != "name" and value is not None:
            return key
    return ""


def _volumes(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list((pod.get("spec") or {}).get("volumes") or [])


def describe_volume(vol: Mapping[str, Any], pod_dir: Path) -> PreparedVolume:
    """Where a volume lives on the host, without touching anything (VolumeError if unsupported)."""
    name, kind = vol["name"], volume_kind(vol)
    if kind == "hostPath":
        return PreparedVolume(name, kind, Path(vol["hostPath"].get("path", "")), pod_dir=pod_dir)
    if kind not in _PLUGINS:
        raise VolumeError(f"unsupported volume type {kind or '(none)'}", volume=name)
    plugin, memory, read_only = _PLUGINS[kind]
    if kind == "emptyDir":
        medium = vol["emptyDir"].get("medium") or ""
        if medium not in ("", "Memory"):
            raise VolumeError(f"emptyDir medium {medium} is not supported", volume=name)
        memory = medium == "Memory"
    path = Path(pod_dir) / VOLUMES_DIR / plugin / name
    return PreparedVolume(name, kind, path, read_only=read_only, tmpfs=memory, pod_dir=Path(pod_dir))


def discover_volumes(pod: Mapping[str, Any], pod_dir: Path) -> dict[str, PreparedVolume]:
    """The pod's volumes that are already set up on disk (after an agent restart)."""
    out = {}
    for vol in _volumes(pod):
        try:
            pv = describe_volume(vol, pod_dir)
        except VolumeError:
            continue
        if pv.kind == "hostPath" or pv.path.is_dir():
            out[pv.name] = pv
    return out


class _Preparer:
    def __init__(self, pod: Mapping[str, Any], pod_dir: Path, sources: VolumeSources | None,
                 mounter: Mounter, clock: Clock) -> None:
        self.pod, self.pod_dir, self.sources = pod, Path(pod_dir), sources
        self.mounter, self.clock = mounter, clock
        self.fs_group = pod_fs_group(dict(pod))
        self.policy = fs_group_change_policy(dict(pod))
        self.namespace = (pod.get("metadata") or {}).get("namespace", "default")

    def _node_memory(self) -> int:
        alloc = self.sources.downward.node_allocatable if self.sources is not None else {}
        return memory_bytes(alloc["memory"]) if alloc.get("memory") else emptydir.node_memory_bytes()

    def _memory_size(self, size_limit: str | None) -> int:
        return emptydir.memory_volume_size(self.pod, size_limit, self._node_memory())

    def _ownership(self, root: Path, read_only: bool) -> None:
        if self.fs_group is None:
            return
        if self.policy == "OnRootMismatch" and root_matches(root, self.fs_group, read_only=read_only):
            return
        set_volume_ownership(root, self.fs_group, read_only=read_only)

    async def prepare(self, vol: Mapping[str, Any]) -> tuple[PreparedVolume, bool]:
        pv = describe_volume(vol, self.pod_dir)
        kind = pv.kind
        if kind == "hostPath":
            check_host_path(pv.path.as_posix(), vol["hostPath"].get("type"))
            return pv, False
        if kind == "emptyDir":
            return self._empty_dir(pv, vol["emptyDir"]), False
        size = None
        if pv.tmpfs:
            size = self._memory_size(None)
            pv = PreparedVolume(pv.name, kind, pv.path, read_only=True, tmpfs=True, size_limit=size,
                                pod_dir=pv.pod_dir)
            emptydir.setup_memory_dir(pv.path, size, self.mounter)
        else:
            emptydir.setup_dir(pv.path)
        payload = await self._payload(kind, vol[kind])
        return pv, self._publish(pv, payload)

    def _publish(self, pv: PreparedVolume, payload: Mapping[str, FileProjection]) -> bool:
        writer = AtomicWriter(pv.path, now=self.clock.now)
        return writer.write(payload, set_perms=lambda _ts: self._ownership(pv.path, True),
                            pinned=_subpath_pins(self.pod_dir, pv.name, self.mounter))

    def is_set_up(self, pv: PreparedVolume) -> bool:
        """An API-data volume that prepare() published and that is still in place (not torn down)."""
        if AtomicWriter(pv.path).current_dir() is None:
            return False
        return not pv.tmpfs or self.mounter.is_mountpoint(pv.path)

    async def refresh(self, vol: Mapping[str, Any], proceed: Callable[[], bool]) -> bool | None:
        """Re-render one set-up API-data volume; None when it is not set up or ``proceed()`` said stop
        once the payload was read (nothing is written then)."""
        pv = describe_volume(vol, self.pod_dir)
        if pv.kind not in _API_DATA or not self.is_set_up(pv):
            return None
        payload = await self._payload(pv.kind, vol[pv.kind])
        # No await from here on: what proceed() saw still holds while the files are written.
        if not proceed():
            return None
        return self._publish(pv, payload)

    def _empty_dir(self, pv: PreparedVolume, src: Mapping[str, Any]) -> PreparedVolume:
        limit = src.get("sizeLimit")
        if pv.tmpfs:
            size = self._memory_size(limit)
            emptydir.setup_memory_dir(pv.path, size, self.mounter)
        else:
            size = memory_bytes(limit) if limit else None
            emptydir.setup_dir(pv.path)
        if self.fs_group is not None and not root_matches(pv.path, self.fs_group, read_only=False):
            set_volume_ownership(pv.path, self.fs_group, read_only=False)
        return PreparedVolume(pv.name, pv.kind, pv.path, tmpfs=pv.tmpfs, size_limit=size, pod_dir=pv.pod_dir)

    async def _payload(self, kind: str, src: Mapping[str, Any]) -> dict[str, FileProjection]:
        if self.sources is None:
            raise ValueError("no volume sources")
        if kind == "projected":
            return await projected_payload(src, self.pod, self.sources, fs_group=self.fs_group)
        mode = src.get("defaultMode")
        mode = DEFAULT_MODE if mode is None else int(mode)
        if kind == "configMap":
            return await configmap_payload(src, self.namespace, self.sources, mode)
        if kind == "secret":
            return await secret_payload(src, self.namespace, self.sources, mode)
        return downward_payload(src.get("items") or [], self.pod, self.sources.downward, mode)


async def _run(pod: Mapping[str, Any], pod_dir: Path, sources: VolumeSources, mounter: Mounter | None,
               clock: Clock | None, kinds: tuple[str, ...] | None,
               ) -> tuple[dict[str, PreparedVolume], list[str]]:
    p = _Preparer(pod, pod_dir, sources, mounter or LinuxMounter(), clock or RealClock())
    out: dict[str, PreparedVolume] = {}
    changed: list[str] = []
    errors: list[VolumeError] = []
    for vol in _volumes(pod):
        if kinds is not None and volume_kind(vol) not in kinds:
            continue
        try:
            pv, did = await p.prepare(vol)
        except VolumeError as e:
            errors.append(e)
            continue
        except (ValueError, OSError) as e:
            errors.append(VolumeError(str(e), volume=vol["name"]))
            continue
        out[pv.name] = pv
        if did:
            changed.append(pv.name)
    if errors:
        raise VolumesNotReady(errors)
    return out, changed


async def prepare_volumes(pod: Mapping[str, Any], pod_dir: Path, *, sources: VolumeSources,
                          mounter: Mounter | None = None, clock: Clock | None = None,
                          ) -> dict[str, PreparedVolume]:
    """Set up every volume of the pod (idempotent); VolumesNotReady lists each volume that failed."""
    return (await _run(pod, pod_dir, sources, mounter, clock, None))[0]


@dataclass
class RefreshResult:
    """What :func:`refresh_volumes` did: volumes whose files changed, volumes that failed (their old
    files stay), volumes left alone (not set up yet, or torn down)."""

    changed: list[str] = field(default_factory=list)
    errors: list[VolumeError] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


async def refresh_volumes(pod: Mapping[str, Any], pod_dir: Path, *, sources: VolumeSources,
                          mounter: Mounter | None = None, clock: Clock | None = None,
                          proceed: Callable[[], bool] | None = None) -> RefreshResult:
    """Re-render the pod's configMap, secret, downwardAPI and projected volumes that are set up.

    Only volumes :func:`prepare_volumes` published and that are still in place are touched: nothing
    is created or mounted here, so a refresh racing a teardown cannot leave anything behind.
    ``proceed()`` is asked after each volume's sources were read and right before its files are
    written (no await in between); False stops the refresh (the pod began terminating). subPath
    binds keep showing the files they were made from (kubelet does not update subPath mounts).
    """
    p = _Preparer(pod, pod_dir, sources, mounter or LinuxMounter(), clock or RealClock())
    go = proceed or (lambda: True)
    out = RefreshResult()
    for vol in _volumes(pod):
        if volume_kind(vol) not in _API_DATA:
            continue
        if not go():
            break
        try:
            did = await p.refresh(vol, go)
        except VolumeError as e:
            out.errors.append(e)
            continue
        except (ValueError, OSError) as e:
            out.errors.append(VolumeError(str(e), volume=vol["name"]))
            continue
        if did is None:
            out.skipped.append(vol["name"])
        elif did:
            out.changed.append(vol["name"])
    return out


async def update_volumes(pod: Mapping[str, Any], pod_dir: Path, *, sources: VolumeSources,
                         mounter: Mounter | None = None, clock: Clock | None = None) -> list[str]:
    """Re-render the set-up API-data volumes (see :func:`refresh_volumes`); returns the names whose
    files changed, VolumesNotReady if any failed. Readers switch from old to new files atomically."""
    res = await refresh_volumes(pod, pod_dir, sources=sources, mounter=mounter, clock=clock)
    if res.errors:
        raise VolumesNotReady(res.errors)
    return res.changed


def _subpath_pins(pod_dir: Path, volume: str, mounter: Mounter) -> Callable[[Path], bool] | None:
    """Whether an old payload directory holds what a subPath bind of ``volume`` shows (by inode)."""
    base = Path(pod_dir) / SUBPATHS_DIR / volume
    if not base.is_dir():
        return None
    shown: set[tuple[int, int]] = set()
    for mp in mounter.mounts_under(base):
        try:
            st = os.stat(mp)
        except OSError:
            continue
        shown.add((st.st_dev, st.st_ino))
    if not shown:
        return None

    def pinned(old: Path) -> bool:
        for dirpath, dirnames, filenames in os.walk(old):
            for name in [".", *dirnames, *filenames]:
                try:
                    st = os.lstat(os.path.join(dirpath, name))
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) in shown:
                    return True
        return False

    return pinned


def _propagation(mount: Mapping[str, Any], container: Mapping[str, Any]) -> str:
    mode = mount.get("mountPropagation")
    if mode not in PROPAGATION:
        raise VolumeError(f'invalid MountPropagation mode: "{mode}"', reason="CreateContainerConfigError")
    if mode == "Bidirectional" and not ((container.get("securityContext") or {}).get("privileged")):
        raise VolumeError("Bidirectional mount propagation is available only to privileged containers",
                          reason="CreateContainerConfigError")
    return PROPAGATION[mode]


def container_mounts(pod: Mapping[str, Any], container: Mapping[str, Any],
                     prepared: Mapping[str, PreparedVolume], *, env: Mapping[str, str],
                     mounter: Mounter | None = None) -> list[Mount]:
    """The container's volume mounts, in volumeMounts order, for ContainerConfig.mounts.

    subPath/subPathExpr are resolved safely and bind-mounted under the pod dir now; errors are
    VolumeError with reason CreateContainerConfigError and kubelet's message.
    """
    out: list[Mount] = []
    cname = container.get("name", "")
    for index, vm in enumerate(container.get("volumeMounts") or []):
        name = vm.get("name", "")
        pv = prepared.get(name)
        if pv is None:
            raise VolumeError(f'cannot find volume "{name}" to mount into container "{cname}"',
                              reason="CreateContainerConfigError")
        propagation = _propagation(vm, container)
        read_only = bool(vm.get("readOnly")) or pv.read_only
        options: tuple[str, ...] = ()
        if vm.get("recursiveReadOnly") in ("Enabled", "IfPossible") and read_only:
            options = ("rro",)
        source = pv.path
        sub = vm.get("subPath") or ""
        if vm.get("subPathExpr"):
            try:
                sub = expand_subpath_expr(vm["subPathExpr"], env)
            except SubPathError as e:
                raise VolumeError(str(e), volume=name, reason="CreateContainerConfigError") from e
        if sub:
            source = _subpath_source(pv, sub, cname, index, mounter or LinuxMounter())
        out.append(Mount(destination=vm.get("mountPath", ""), source=str(source), type="bind",
                         read_only=read_only, options=options, propagation=propagation))
    return out


def _subpath_source(pv: PreparedVolume, sub: str, cname: str, index: int, mounter: Mounter) -> Path:
    try:
        validate_subpath(sub)
        if pv.pod_dir is None:
            raise SubPathError("subPath needs the pod directory")
        full = os.path.join(pv.path, sub)
        if not os.path.lexists(full):
            try:
                safe_mkdir(pv.path, sub)
            except (SubPathError, OSError) as e:
                raise SubPathError(f'failed to create subPath directory for volumeMount "{pv.name}" of '
                                   f'container "{cname}"') from e
        target = pv.pod_dir / SUBPATHS_DIR / pv.name / cname / str(index)
        return bind_subpath(pv.path, sub, target, mounter)
    except SubPathError as e:
        raise VolumeError(str(e), volume=pv.name, reason="CreateContainerConfigError") from e
    except OSError as e:
        raise VolumeError(f"error preparing subPath `{sub}` of volume {pv.name}: {e}", volume=pv.name,
                          reason="CreateContainerConfigError") from e


def teardown_volumes(pod_uid: str, pod_dir: Path, *, mounter: Mounter | None = None) -> None:
    """Unmount and remove every volume and subPath bind of the pod. hostPath sources are never touched.

    Nothing is deleted while a mount remains under the pod dir (deleting through a mount would delete
    the mounted files), so a failed unmount raises VolumeError and a retry finishes the job.
    """
    m = mounter or LinuxMounter()
    pod_dir = Path(pod_dir)
    if not pod_dir.exists():
        return
    for _ in range(8):  # stacked mounts on one path come off one per pass
        remaining = m.mounts_under(pod_dir)
        if not remaining:
            break
        for mp in remaining:
            try:
                m.unmount(mp)
            except OSError as e:
                raise VolumeError(f"pod {pod_uid}: unmount {mp} failed: {e}", reason="TeardownFailed") from e
    remaining = m.mounts_under(pod_dir)
    if remaining:
        raise VolumeError(f"pod {pod_uid}: mounts remain under {pod_dir}: {', '.join(map(str, remaining))}",
                          reason="TeardownFailed")
    for sub in (SUBPATHS_DIR, VOLUMES_DIR):
        if (pod_dir / sub).exists():
            shutil.rmtree(pod_dir / sub)
