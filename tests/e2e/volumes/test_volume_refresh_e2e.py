"""A real `peapod up` (runc, busybox): a running pod sees a ConfigMap update in its configMap volume
within the refresh period, while a subPath mount of the same key keeps the old value (as in Kubernetes),
and its service account token is not replaced before it is due."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from peapod.cli.up import VOLUME_REFRESH_ENV
from peapod.testing.cluster import PeapodCluster
from peapod.testing.pytest_plugin import PeapodLauncher
from peapod.testing.registry import LoopbackRegistry
from tests.e2e.conftest import write

PERIOD = 2.0
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture(scope="module")
def cluster(peapod_launcher: PeapodLauncher) -> Iterator[PeapodCluster]:
    """`peapod up` whose node refreshes volumes every PERIOD seconds (set for that process only)."""
    old = os.environ.get(VOLUME_REFRESH_ENV)
    os.environ[VOLUME_REFRESH_ENV] = str(PERIOD)
    try:
        started = peapod_launcher.start("up")
        c = started.__enter__()
    finally:
        if old is None:
            os.environ.pop(VOLUME_REFRESH_ENV, None)
        else:
            os.environ[VOLUME_REFRESH_ENV] = old
    try:
        yield c
    finally:
        started.__exit__(None, None, None)


def _wait_running(cluster: PeapodCluster, ns: str, pod: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cluster.kubectl("get", "-n", ns, "pod", pod, "-o", "jsonpath={.status.phase}").stdout == "Running":
            return
        time.sleep(0.3)
    raise AssertionError(cluster.kubectl("describe", "-n", ns, "pod", pod).stdout + cluster.log_tail())


def test_configmap_update_reaches_a_running_pod(cluster: PeapodCluster, namespace: str,
                                                registry: LoopbackRegistry, tmp_path: Path) -> None:
    image = registry.ref("busybox", "1")
    manifest = f"""
apiVersion: v1
kind: ConfigMap
metadata: {{name: app}}
data: {{level: info}}
---
apiVersion: v1
kind: Pod
metadata: {{name: reader}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {image}
    command: ["sleep", "3600"]
    volumeMounts:
    - {{name: cfg, mountPath: /etc/cfg}}
    - {{name: cfg, mountPath: /etc/level-pinned, subPath: level}}
  volumes:
  - {{name: cfg, configMap: {{name: app}}}}
"""
    cluster.kubectl("apply", "-n", namespace, "-f", str(write(tmp_path, "p.yaml", manifest)), check=True)
    _wait_running(cluster, namespace, "reader")

    def cat(path: str) -> str:
        return cluster.kubectl("exec", "-n", namespace, "reader", "--", "cat", path, check=True).stdout

    assert cat("/etc/cfg/level") == "info"
    assert cat("/etc/level-pinned") == "info"
    token = cat(f"{SA_DIR}/token")  # written at the start; far from due (kube's 3607 s tokens)

    updated = write(tmp_path, "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\n"
                                         "data: {level: debug}\n")
    cluster.kubectl("apply", "-n", namespace, "-f", str(updated), check=True)
    changed_at = time.monotonic()
    seen = ""
    while time.monotonic() - changed_at < 3 * PERIOD + 10:  # the period, plus kubectl exec's own time
        seen = cat("/etc/cfg/level")
        if seen == "debug":
            break
        time.sleep(0.2)
    assert seen == "debug", cluster.log_tail()
    assert cat("/etc/level-pinned") == "info"  # subPath mounts are not updated
    time.sleep(PERIOD)  # at least one more round: the token is still the one from the start
    assert cat(f"{SA_DIR}/token") == token
    cluster.kubectl("delete", "-n", namespace, "pod", "reader", "--wait=true", "--timeout=60s", check=True)
