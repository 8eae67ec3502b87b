"""The oldest kubectl on the machine (1.27: v2beta1 discovery, SPDY, no protobuf bodies) works too."""

from __future__ import annotations

from pathlib import Path

from peapod.testing.cluster import PeapodCluster
from tests.e2e.conftest import write

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: old, labels: {v: '127'}}\ndata: {a: b}\n"


def test_kubectl_127_everyday_commands(cluster: PeapodCluster, namespace: str, tmp_path: Path) -> None:
    def k(*args: str):  # type: ignore[no-untyped-def]
        return cluster.kubectl(*args, version="1.27")

    f = write(tmp_path, "cm.yaml", CM)
    assert k("apply", "-n", namespace, "-f", str(f)).stdout.strip() == "configmap/old created"
    assert k("apply", "-n", namespace, "-f", str(f)).stdout.strip() == "configmap/old unchanged"
    assert k("get", "-n", namespace, "cm", "-l", "v=127", "-o", "name").stdout.split() == ["configmap/old"]
    r = k("get", "-n", namespace, "configmaps")
    assert r.returncode == 0 and r.stdout.splitlines()[0].split() == ["NAME", "DATA", "AGE"]
    assert "Data" in k("describe", "-n", namespace, "cm", "old").stdout
    r = k("create", "configmap", "made", "-n", namespace, "--from-literal=x=y")
    assert r.stdout.strip() == "configmap/made created", r.stderr
    assert k("api-resources").stdout.count("deployments") == 1
    r = k("apply", "--server-side", "-n", namespace, "-f", str(f))
    assert r.returncode == 0, r.stderr
    r = k("delete", "-n", namespace, "cm", "old", "made")
    assert r.returncode == 0 and 'configmap "old" deleted' in r.stdout
