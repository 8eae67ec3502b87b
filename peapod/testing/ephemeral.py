"""An ephemeral peapod cluster for tests: start it in a temporary directory, use it, leave no trace.

::

    with ephemeral_cluster(tmp_dir) as c:             # `peapod up` in a fresh data dir under tmp_dir
        c.apply("manifest.yaml", namespace="demo")    # kubectl apply -f (files, YAML text, dicts)
        c.wait("pod/web", "condition=Ready", namespace="demo")
        c.core_v1.list_namespaced_pod("demo")         # the official kubernetes client, configured
        c.kubectl("get", "pods", "-A", check=True)

:class:`EphemeralCluster` is a :class:`~peapod.testing.cluster.PeapodCluster` (so every harness
method works) with the helpers tests need. Leaving "no trace" means: the process is stopped by its
PID (peapod removes its pods, their mounts, network namespaces, cgroups and the bridge on SIGTERM),
``peapod down`` sweeps whatever a crash left, and the data dir is removed, but only once no mount is
left under it, so a bind mount left by a bug can never make the removal reach into the host.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import yaml

from peapod.testing.cluster import KubectlResult, PeapodCluster, peapod_executable
from peapod.testing.waiting import wait_until

T = TypeVar("T")
Manifest = str | Path | Mapping[str, Any] | Iterable[Mapping[str, Any]]


def manifest_text(manifest: Manifest, substitutions: Mapping[str, str] | None = None) -> str:
    """YAML text for ``kubectl -f -``: a path, YAML/JSON text, one object or a list of objects;
    each ``substitutions`` key is replaced by its value (e.g. an image name by a local registry's)."""
    if isinstance(manifest, Path):
        text = manifest.read_text()
    elif isinstance(manifest, str):
        text = Path(manifest).read_text() if "\n" not in manifest and Path(manifest).is_file() else manifest
    elif isinstance(manifest, Mapping):
        text = json.dumps(manifest)
    else:
        text = yaml.safe_dump_all([dict(o) for o in manifest], sort_keys=False)
    for old, new in (substitutions or {}).items():
        text = text.replace(old, new)
    return text


@dataclass
class EphemeralCluster(PeapodCluster):
    """A :class:`PeapodCluster` with an official Python client and manifest helpers."""

    substitutions: dict[str, str] = field(default_factory=dict)
    """Replacements applied to every manifest given to :meth:`apply`/:meth:`delete` (e.g. image names)."""

    @cached_property
    def api_client(self) -> Any:
        """``kubernetes.client.ApiClient`` configured from this cluster's kubeconfig (closed at stop)."""
        return self.python_client()

    @property
    def core_v1(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api_client)

    @property
    def apps_v1(self) -> Any:
        from kubernetes import client

        return client.AppsV1Api(self.api_client)

    def apply(self, manifest: Manifest, *, namespace: str | None = None, server_side: bool = False,
              substitutions: Mapping[str, str] | None = None, timeout: float = 60.0) -> KubectlResult:
        """``kubectl apply -f`` the manifest (see :func:`manifest_text`); raises on failure."""
        args = ["apply", "-f", "-"] + (["--server-side"] if server_side else [])
        return self.kubectl(*self._ns(namespace), *args, input=self._text(manifest, substitutions),
                            timeout=timeout, check=True)

    def delete(self, manifest: Manifest, *, namespace: str | None = None, wait: bool = True,
               substitutions: Mapping[str, str] | None = None, timeout: float = 120.0) -> KubectlResult:
        """``kubectl delete -f`` the manifest (missing objects are fine)."""
        return self.kubectl(*self._ns(namespace), "delete", "--ignore-not-found", f"--wait={str(wait).lower()}",
                            "-f", "-", input=self._text(manifest, substitutions), timeout=timeout, check=True)

    def get(self, *what: str, namespace: str | None = None) -> Any:
        """``kubectl get WHAT -o json``, decoded."""
        return self.kubectl(*self._ns(namespace), "get", *what, "-o", "json", check=True).json()

    def wait(self, target: str, condition: str = "condition=Ready", *, namespace: str | None = None,
             timeout: float = 60.0) -> KubectlResult:
        """``kubectl wait TARGET --for=CONDITION`` (``condition=Ready``, ``delete``,
        ``jsonpath={.status.phase}=Succeeded``...); raises with kubectl's message on timeout."""
        return self.kubectl(*self._ns(namespace), "wait", target, f"--for={condition}", f"--timeout={timeout:g}s",
                            timeout=timeout + 30, check=True)

    def wait_for(self, condition: Callable[[], T], timeout: float = 60.0, what: str = "the condition holds",
                 interval: float = 0.25) -> T:
        """Poll any Python condition (see :func:`wait_until`)."""
        return wait_until(condition, timeout, what, interval)

    def create_namespace(self, name: str) -> str:
        self.kubectl("create", "namespace", name, check=True)
        return name

    def stop(self, timeout: float = 60.0) -> int | None:
        if "api_client" in self.__dict__:
            self.__dict__.pop("api_client").close()
        return super().stop(timeout)

    def _text(self, manifest: Manifest, substitutions: Mapping[str, str] | None) -> str:
        return manifest_text(manifest, {**self.substitutions, **(substitutions or {})})

    @staticmethod
    def _ns(namespace: str | None) -> list[str]:
        return ["-n", namespace] if namespace else []


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (from /proc/self/mountinfo; octal escapes decoded)."""
    root = os.path.realpath(path)
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point == root or point.startswith(root + "/"):
            out.append(point)
    return out


def remove_traces(cluster: PeapodCluster) -> list[str]:
    """After ``stop()``: sweep what a crash may have left (``peapod down``, only when peapod did not
    exit cleanly or left a mount or its bridge), then remove the data dir. Returns the mounts still
    there (the data dir is then kept: a removal never crosses a mount)."""
    clean_exit = cluster.proc is None or cluster.proc.returncode == 0
    bridge_left = bool(cluster.bridge) and Path("/sys/class/net", cluster.bridge).exists()
    if (cluster.data_dir / "node").exists() and (not clean_exit or bridge_left or mounts_under(cluster.data_dir)):
        subprocess.run([*peapod_executable(), "down", "--data-dir", str(cluster.data_dir), "--bridge", cluster.bridge],
                       capture_output=True, text=True, timeout=120)
    left = mounts_under(cluster.data_dir)
    if not left:
        shutil.rmtree(cluster.data_dir, ignore_errors=True)
    return left


@contextlib.contextmanager
def ephemeral_cluster(base_dir: Path | None = None, *, command: str = "up",
                      allowed_registries: Iterable[str] = (), extra_args: Iterable[str] = (),
                      keep: bool = False, startup_timeout: float = 60.0,
                      substitutions: Mapping[str, str] | None = None) -> Iterator[EphemeralCluster]:
    """Start ``peapod COMMAND`` (``up``: a single node that runs pods; ``server``: the control plane
    alone) in a fresh data dir under ``base_dir`` (default: the system temp dir), yield it, and on exit
    stop it and remove every trace (``keep=True`` leaves the data dir, with its log, for inspection)."""
    if base_dir is not None:
        Path(base_dir).mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="peapod-", dir=base_dir))
    cluster = EphemeralCluster(data_dir, command=command, allowed_registries=tuple(allowed_registries),
                               extra_args=list(extra_args), substitutions=dict(substitutions or {}))
    try:
        cluster.start(timeout=startup_timeout)
        yield cluster
    finally:
        code = cluster.stop()
        if code not in (0, None):
            print(f"peapod exited with {code}; last log lines:\n{cluster.log_tail()}")
        if not keep:
            left = remove_traces(cluster)
            if left:
                raise RuntimeError(f"peapod left mounts under {data_dir} (kept the directory): {left}")
