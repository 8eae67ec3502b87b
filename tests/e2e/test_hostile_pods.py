"""Pod specs that try to escape to the host: refused by admission or defeated at runtime.

- baseline (the default level) refuses hostPath (even to /), privileged containers and capabilities
  beyond the baseline set; a ``privileged`` namespace admits them (checked with a server dry-run, so
  nothing of the host is really handed to a container);
- ``workingDir`` through /proc (runc CVE-2024-21626: /proc/self/fd/N of a leaked host fd, or
  /proc/self/cwd, /proc/1/root) never leaves the container's root;
- a container that swaps its subPath for a symlink to / between restarts (kubelet CVE-2017-1002101
  and CVE-2021-25741) never gets the host's root mounted.

Each container looks for a marker file this test creates in the host's /tmp: finding it would be
host access.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from peapod.testing.cluster import PeapodCluster
from peapod.testing.registry import LoopbackRegistry
from tests.e2e.conftest import write

pytestmark = pytest.mark.skipif(
    subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0", reason="needs root"
)

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def cluster(node_cluster: PeapodCluster) -> PeapodCluster:
    return node_cluster


@pytest.fixture(scope="module")
def marker() -> Iterator[Path]:
    """A file only the host has: a container that can read it reached the host's filesystem."""
    p = Path("/tmp") / f"peapod-hostile-{uuid.uuid4().hex}"
    p.write_text("host\n")
    try:
        yield p
    finally:
        p.unlink()


def _pod(name: str, image: str, script: str, **spec: Any) -> Obj:
    container: Obj = {"name": "c", "image": image, "command": ["sh", "-c", script]}
    container.update(spec.pop("container", {}))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": spec.pop("restartPolicy", "Never"), "containers": [container], **spec}}


def _apply(cluster: PeapodCluster, ns: str, tmp: Path, obj: Obj, *extra: str) -> subprocess.CompletedProcess[str]:
    f = write(tmp, f"{obj['metadata']['name']}.json", json.dumps(obj))
    return cluster.kubectl("apply", "-n", ns, "-f", str(f), *extra)


def _get(cluster: PeapodCluster, ns: str, name: str) -> Obj:
    return json.loads(cluster.kubectl("get", "-n", ns, "pod", name, "-o", "json", check=True).stdout)


def _wait(cluster: PeapodCluster, ns: str, name: str, cond: Any, timeout: float = 60.0) -> Obj:
    deadline = time.monotonic() + timeout
    while True:
        p = _get(cluster, ns, name)
        if cond(p):
            return p
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}: {json.dumps(p.get('status'), indent=1)}\n{cluster.log_tail()}")
        time.sleep(0.3)


def _state(p: Obj) -> Obj:
    statuses = (p.get("status") or {}).get("containerStatuses") or [{}]
    return statuses[0]


# -- admission ----------------------------------------------------------------------------------

HOSTILE_SPECS: list[tuple[str, Obj, str]] = [
    ("hostpath-root", {"volumes": [{"name": "host", "hostPath": {"path": "/"}}],
                       "container": {"volumeMounts": [{"name": "host", "mountPath": "/host"}]}},
     'hostPath volumes (volume "host")'),
    ("privileged", {"container": {"securityContext": {"privileged": True}}},
     'privileged (container "c" must not set securityContext.privileged=true)'),
    ("sys-admin", {"container": {"securityContext": {"capabilities": {"add": ["SYS_ADMIN", "NET_ADMIN"]}}}},
     'non-default capabilities (container "c" must not include "NET_ADMIN", "SYS_ADMIN" in '
     "securityContext.capabilities.add)"),
    ("host-pid", {"hostPID": True}, "host namespaces (hostPID=true)"),
]


@pytest.mark.parametrize(("name", "spec", "why"), HOSTILE_SPECS, ids=[c[0] for c in HOSTILE_SPECS])
def test_baseline_refuses_and_privileged_admits(cluster: PeapodCluster, namespace: str, registry: LoopbackRegistry,
                                                tmp_path: Path, name: str, spec: Obj, why: str) -> None:
    obj = _pod(name, registry.ref("busybox", "1"), "true", **json.loads(json.dumps(spec)))
    res = _apply(cluster, namespace, tmp_path, obj)
    assert res.returncode != 0
    assert f'pods "{name}" is forbidden: violates PodSecurity "baseline:latest": {why}' in res.stderr, res.stderr
    assert cluster.kubectl("get", "-n", namespace, "pod", name).returncode != 0
    priv = f"{namespace}-priv"
    cluster.kubectl("create", "namespace", priv, check=True)
    cluster.kubectl("label", "namespace", priv, "pod-security.kubernetes.io/enforce=privileged", check=True)
    res = _apply(cluster, priv, tmp_path, obj, "--dry-run=server")
    assert res.returncode == 0, res.stderr
    cluster.kubectl("delete", "namespace", priv, "--wait=false", check=True)


def test_baseline_capabilities_are_admitted(cluster: PeapodCluster, namespace: str, registry: LoopbackRegistry,
                                            tmp_path: Path) -> None:
    obj = _pod("chown", registry.ref("busybox", "1"), "true",
               container={"securityContext": {"capabilities": {"add": ["CHOWN", "NET_BIND_SERVICE", "KILL"]}}})
    res = _apply(cluster, namespace, tmp_path, obj, "--dry-run=server")
    assert res.returncode == 0, res.stderr


# -- workingDir through /proc ------------------------------------------------------------------

WORKDIRS = ["/proc/self/fd/3", "/proc/self/fd/4", "/proc/self/fd/5", "/proc/self/fd/6", "/proc/self/fd/7",
            "/proc/self/fd/8", "/proc/self/cwd", "/proc/1/root", "/proc/self/root/../../.."]


def test_proc_working_dirs_stay_in_the_container(cluster: PeapodCluster, namespace: str,
                                                  registry: LoopbackRegistry, tmp_path: Path, marker: Path) -> None:
    rel = "../" * 12 + marker.relative_to("/").as_posix()
    probe = (f'if [ -e {rel} ] || [ -e {marker} ] || [ -e /proc/self/cwd/{rel} ]; then echo ESCAPED; '
             'else echo confined; fi; pwd')
    names = []
    for i, wd in enumerate(WORKDIRS):
        obj = _pod(f"wd-{i}", registry.ref("busybox", "1"), probe, container={"workingDir": wd})
        assert _apply(cluster, namespace, tmp_path, obj).returncode == 0
        names.append(obj["metadata"]["name"])

    def settled(p: Obj) -> bool:
        st = _state(p).get("state") or {}
        waiting = (st.get("waiting") or {}).get("reason", "")
        return "terminated" in st or waiting not in ("", "ContainerCreating", "PodInitializing")

    for name, wd in zip(names, WORKDIRS, strict=True):
        p = _wait(cluster, namespace, name, settled)
        st = _state(p)["state"]
        logs = cluster.kubectl("logs", "-n", namespace, name).stdout
        assert "ESCAPED" not in logs, (wd, logs)
        if (st.get("terminated") or {}).get("exitCode") == 0:
            assert logs.startswith("confined"), (wd, logs)  # it ran, inside its own root
        else:  # refused by the runtime: a clean failure, no host access
            reason = (st.get("terminated") or st.get("waiting") or {}).get("reason", "")
            assert reason in ("StartError", "RunContainerError", "CreateContainerError", "Error",
                              "ContainerCannotRun"), (wd, st)
    # The host is untouched and nothing of those pods is left running after they go.
    assert marker.read_text() == "host\n"


# -- subPath swapped for a symlink between restarts ----------------------------------------------


def test_subpath_symlink_swap_between_restarts(cluster: PeapodCluster, namespace: str,
                                               registry: LoopbackRegistry, tmp_path: Path, marker: Path) -> None:
    # The attacker sees the whole volume at /vol and its "sub" directory at /mnt. Each run it checks
    # whether /mnt is the host's root, then replaces "sub" with a symlink to / and exits, so the next
    # start would bind-mount the host's / if the agent followed the link.
    script = (
        f"if [ -e /mnt{marker} ]; then echo ESCAPED >> /vol/log; else echo confined >> /vol/log; fi; "
        "rm -rf /vol/sub; ln -s / /vol/sub; exit 1"
    )
    obj = _pod("swap", registry.ref("busybox", "1"), script, restartPolicy="Always",
               volumes=[{"name": "v", "emptyDir": {}}],
               container={"volumeMounts": [{"name": "v", "mountPath": "/vol"},
                                           {"name": "v", "mountPath": "/mnt", "subPath": "sub"}]})
    obj["spec"]["containers"].append({
        "name": "watch", "image": registry.ref("busybox", "1"), "command": ["sleep", "3600"],
        "volumeMounts": [{"name": "v", "mountPath": "/vol"}],
    })
    assert _apply(cluster, namespace, tmp_path, obj).returncode == 0

    def refused(p: Obj) -> bool:
        c = next((s for s in (p.get("status") or {}).get("containerStatuses") or [] if s["name"] == "c"), {})
        return ((c.get("state") or {}).get("waiting") or {}).get("reason") == "CreateContainerConfigError"

    p = _wait(cluster, namespace, "swap", refused, timeout=90)
    c = next(s for s in p["status"]["containerStatuses"] if s["name"] == "c")
    assert c["state"]["waiting"]["message"].startswith('subpath "/" not within volume path'), c
    log = cluster.kubectl("exec", "-n", namespace, "swap", "-c", "watch", "--", "cat", "/vol/log",
                          check=True).stdout.split()
    assert log and set(log) == {"confined"}, log
    events = cluster.kubectl("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=swap",
                             "-o", "json", check=True).stdout
    assert "ESCAPED" not in events
    assert marker.read_text() == "host\n"
