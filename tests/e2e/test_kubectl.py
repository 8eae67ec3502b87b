"""The real kubectl against a real `peapod up`: the everyday commands behave as on any cluster."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from peapod.testing.cluster import PeapodCluster
from tests.e2e.conftest import write

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: registry.local/web:1
        ports:
        - containerPort: 8080
        env:
        - {name: A, value: "1"}
"""

POD = """
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {app}}}
spec:
  containers:
  - name: main
    image: busybox:1
    command: ["sleep", "3600"]
"""


def test_apply_twice_then_configured_then_server_side(cluster: PeapodCluster, namespace: str,
                                                      tmp_path: Path) -> None:
    f = write(tmp_path, "d.yaml", DEPLOYMENT)
    r = cluster.kubectl("apply", "-n", namespace, "-f", str(f), check=True)
    assert r.stdout.strip() == "deployment.apps/web created"
    r = cluster.kubectl("apply", "-n", namespace, "-f", str(f), check=True)
    assert r.stdout.strip() == "deployment.apps/web unchanged"
    write(tmp_path, "d.yaml", DEPLOYMENT.replace("web:1", "web:2").replace('{name: A, value: "1"}',
                                                                             '{name: B, value: "2"}'))
    r = cluster.kubectl("apply", "-n", namespace, "-f", str(f), check=True)
    assert r.stdout.strip() == "deployment.apps/web configured"
    d = cluster.kubectl("get", "-n", namespace, "deployment", "web", "-o", "json", check=True).json()
    c = d["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "registry.local/web:2"
    assert c["env"] == [{"name": "B", "value": "2"}]
    assert d["metadata"]["generation"] == 2
    assert "kubectl.kubernetes.io/last-applied-configuration" in d["metadata"]["annotations"]
    # Server-side apply of another manifest, then taking over a field with --force-conflicts.
    cm = write(tmp_path, "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\ndata: {k: v}\n")
    r = cluster.kubectl("apply", "--server-side", "-n", namespace, "-f", str(cm), check=True)
    assert r.stdout.strip() == "configmap/ssa serverside-applied"
    got = cluster.kubectl("get", "-n", namespace, "cm", "ssa", "-o", "json", "--show-managed-fields",
                          check=True).json()
    managers = {m["manager"]: m for m in got["metadata"]["managedFields"]}
    assert managers["kubectl"]["operation"] == "Apply"
    assert "f:k" in managers["kubectl"]["fieldsV1"]["f:data"]
    cluster.kubectl("patch", "-n", namespace, "cm", "ssa", "--type=merge", "-p", '{"data":{"k":"other"}}',
                    check=True)
    r = cluster.kubectl("apply", "--server-side", "-n", namespace, "-f", str(cm))
    assert r.returncode != 0
    assert "conflict" in r.stderr.lower() and ".data.k" in r.stderr
    r = cluster.kubectl("apply", "--server-side", "--force-conflicts", "-n", namespace, "-f", str(cm),
                        check=True)
    assert cluster.kubectl("get", "-n", namespace, "cm", "ssa", "-o", "jsonpath={.data.k}").stdout == "v"


def test_create_get_output_formats_and_selectors(cluster: PeapodCluster, namespace: str,
                                                 tmp_path: Path) -> None:
    for name, app in (("a1", "alpha"), ("b1", "beta"), ("b2", "beta")):
        f = write(tmp_path, f"{name}.yaml", POD.format(name=name, app=app))
        r = cluster.kubectl("create", "-n", namespace, "-f", str(f), check=True)
        assert r.stdout.strip() == f"pod/{name} created"
    r = cluster.kubectl("get", "-n", namespace, "pods", check=True)
    header = r.stdout.splitlines()[0].split()
    assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [ln.split()[0] for ln in r.stdout.splitlines()[1:]] == ["a1", "b1", "b2"]
    assert r.stdout.splitlines()[1].split()[1:3] == ["0/1", "Pending"]
    wide = cluster.kubectl("get", "-n", namespace, "pods", "-o", "wide", check=True).stdout
    assert wide.splitlines()[0].split()[5:7] == ["IP", "NODE"]
    assert cluster.kubectl("get", "-n", namespace, "pods", "-l", "app=beta", "-o", "name",
                           check=True).stdout.split() == ["pod/b1", "pod/b2"]
    assert cluster.kubectl("get", "-n", namespace, "pods", "-l", "app in (alpha),app!=beta", "-o", "name",
                           check=True).stdout.split() == ["pod/a1"]
    assert cluster.kubectl("get", "-n", namespace, "pods", "--field-selector", "metadata.name=b2", "-o",
                           "name", check=True).stdout.split() == ["pod/b2"]
    assert cluster.kubectl("get", "-n", namespace, "pods", "--field-selector", "status.phase=Running",
                           check=True).stderr.strip() == f"No resources found in {namespace} namespace."
    y = yaml.safe_load(cluster.kubectl("get", "-n", namespace, "pod", "a1", "-o", "yaml", check=True).stdout)
    assert y["kind"] == "Pod" and y["spec"]["restartPolicy"] == "Always"
    assert y["spec"]["containers"][0]["terminationMessagePath"] == "/dev/termination-log"
    assert y["status"]["phase"] == "Pending" and y["status"]["qosClass"] == "BestEffort"
    j = cluster.kubectl("get", "-n", namespace, "pods", "-o", "json", check=True).json()
    assert j["kind"] == "List" and len(j["items"]) == 3
    jp = cluster.kubectl("get", "-n", namespace, "pods", "-o", "jsonpath={.items[*].metadata.name}",
                         check=True).stdout
    assert jp == "a1 b1 b2"
    r = cluster.kubectl("get", "-n", namespace, "pods", "--field-selector", "spec.bogus=x")
    assert r.returncode != 0 and "field label not supported" in r.stderr


def test_get_watch_streams_changes(cluster: PeapodCluster, namespace: str) -> None:
    cmd = ["kubectl", f"--kubeconfig={cluster.kubeconfig}", f"--cache-dir={cluster.data_dir / 'kc-w'}",
           "get", "configmaps", "-n", namespace, "-w", "--output-watch-events", "-o",
           "custom-columns=EVENT:.type,NAME:.object.metadata.name", "--no-headers"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        cluster.kubectl("create", "configmap", "w1", "-n", namespace, "--from-literal=a=b", check=True)
        cluster.kubectl("delete", "configmap", "w1", "-n", namespace, check=True)
        lines: list[str] = []
        deadline = time.monotonic() + 20
        assert proc.stdout is not None
        while time.monotonic() < deadline and not any("DELETED" in ln and "w1" in ln for ln in lines):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
        events = [ln.split() for ln in lines if "w1" in ln]
        assert ["ADDED", "w1"] in events and ["DELETED", "w1"] in events, lines
    finally:
        proc.terminate()
        proc.wait(10)


def test_describe_label_annotate_patch_replace(cluster: PeapodCluster, namespace: str,
                                               tmp_path: Path) -> None:
    f = write(tmp_path, "p.yaml", POD.format(name="d1", app="desc"))
    cluster.kubectl("create", "-n", namespace, "-f", str(f), check=True)
    api = cluster.python_client()
    from kubernetes import client

    pod = client.CoreV1Api(api).read_namespaced_pod("d1", namespace)
    client.CoreV1Api(api).create_namespaced_event(namespace, {
        "metadata": {"generateName": "d1."},
        "involvedObject": {"kind": "Pod", "namespace": namespace, "name": "d1", "uid": pod.metadata.uid,
                           "apiVersion": "v1"},
        "reason": "Tested", "message": "hello from the test", "type": "Normal",
        "source": {"component": "e2e"}, "count": 1,
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z",
    })
    out = cluster.kubectl("describe", "-n", namespace, "pod", "d1", check=True).stdout
    assert "Name:" in out and "d1" in out and "busybox:1" in out
    assert "Tested" in out and "hello from the test" in out
    assert cluster.kubectl("label", "-n", namespace, "pod", "d1", "tier=x", check=True).stdout.strip() == \
        "pod/d1 labeled"
    assert cluster.kubectl("annotate", "-n", namespace, "pod", "d1", "note=y", check=True).stdout.strip() == \
        "pod/d1 annotated"
    r = cluster.kubectl("patch", "-n", namespace, "pod", "d1", "-p", '{"metadata":{"labels":{"s":"1"}}}',
                        check=True)
    assert r.stdout.strip() == "pod/d1 patched"
    cluster.kubectl("patch", "-n", namespace, "pod", "d1", "--type=merge", "-p",
                    '{"metadata":{"annotations":{"m":"2"}}}', check=True)
    cluster.kubectl("patch", "-n", namespace, "pod", "d1", "--type=json", "-p",
                    '[{"op":"replace","path":"/spec/containers/0/image","value":"busybox:2"}]', check=True)
    got = cluster.kubectl("get", "-n", namespace, "pod", "d1", "-o", "json", check=True).json()
    assert got["metadata"]["labels"] == {"app": "desc", "tier": "x", "s": "1"}
    assert got["metadata"]["annotations"]["note"] == "y" and got["metadata"]["annotations"]["m"] == "2"
    assert got["spec"]["containers"][0]["image"] == "busybox:2"
    # Immutable pod fields are refused with Kubernetes' message.
    r = cluster.kubectl("patch", "-n", namespace, "pod", "d1", "--type=json", "-p",
                        '[{"op":"replace","path":"/spec/restartPolicy","value":"Never"}]')
    assert r.returncode != 0 and "Forbidden: pod updates may not change fields" in r.stderr
    # replace with a stale object conflicts; with the fresh one it succeeds.
    cm = write(tmp_path, "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: r1}\ndata: {a: '1'}\n")
    cluster.kubectl("create", "-n", namespace, "-f", str(cm), check=True)
    write(tmp_path, "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: r1}\ndata: {a: '2'}\n")
    r = cluster.kubectl("replace", "-n", namespace, "-f", str(cm), check=True)
    assert r.stdout.strip() == "configmap/r1 replaced"
    assert cluster.kubectl("get", "-n", namespace, "cm", "r1", "-o", "jsonpath={.data.a}").stdout == "2"
    stale = cluster.kubectl("get", "-n", namespace, "cm", "r1", "-o", "json", check=True).json()
    cluster.kubectl("label", "-n", namespace, "cm", "r1", "bump=1", check=True)
    stale["data"]["a"] = "3"
    write(tmp_path, "stale.json", json.dumps(stale))
    r = cluster.kubectl("replace", "-n", namespace, "-f", str(tmp_path / "stale.json"))
    assert r.returncode != 0 and "the object has been modified" in r.stderr


def test_scale_and_wait_for_condition(cluster: PeapodCluster, namespace: str, tmp_path: Path) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", str(write(tmp_path, "d.yaml", DEPLOYMENT)), check=True)
    r = cluster.kubectl("scale", "-n", namespace, "deployment", "web", "--replicas=3", check=True)
    assert r.stdout.strip() == "deployment.apps/web scaled"
    assert cluster.kubectl("get", "-n", namespace, "deploy", "web", "-o", "jsonpath={.spec.replicas}",
                           check=True).stdout == "3"
    cluster.kubectl("create", "-n", namespace, "-f", str(write(tmp_path, "p.yaml", POD.format(
        name="w1", app="wait"))), check=True)
    status = {"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}
    proc = subprocess.Popen(
        ["kubectl", f"--kubeconfig={cluster.kubeconfig}", f"--cache-dir={cluster.data_dir / 'kc-wait'}",
         "wait", "-n", namespace, "--for=condition=Ready", "pod/w1", "--timeout=30s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(1.0)
    cluster.kubectl("patch", "-n", namespace, "pod", "w1", "--subresource=status", "--type=merge", "-p",
                    json.dumps(status), check=True)
    out, err = proc.communicate(timeout=40)
    assert proc.returncode == 0, err
    assert out.strip() == "pod/w1 condition met"


def _owned_configmap(cluster: PeapodCluster, namespace: str, tmp_path: Path, name: str, owner: str) -> None:
    uid = cluster.kubectl("get", "-n", namespace, "cm", owner, "-o", "jsonpath={.metadata.uid}",
                          check=True).stdout
    child = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": uid, "blockOwnerDeletion": True}]}}
    cluster.kubectl("create", "-n", namespace, "-f", str(write(tmp_path, f"{name}.json", json.dumps(child))),
                    check=True)


def _exists(cluster: PeapodCluster, namespace: str, name: str) -> bool:
    return cluster.kubectl("get", "-n", namespace, "cm", name).returncode == 0


def _eventually(pred, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("cascade", ["background", "foreground", "orphan"])
def test_delete_cascade_variants(
    cluster: PeapodCluster, namespace: str, tmp_path: Path, cascade: str
) -> None:
    cluster.kubectl("create", "configmap", "owner", "-n", namespace, check=True)
    _owned_configmap(cluster, namespace, tmp_path, "child", "owner")
    r = cluster.kubectl("delete", "-n", namespace, "cm", "owner", f"--cascade={cascade}", "--wait=true",
                        check=True)
    assert r.stdout.strip() == 'configmap "owner" deleted'
    assert not _exists(cluster, namespace, "owner")
    if cascade == "orphan":
        time.sleep(1.0)
        child = cluster.kubectl("get", "-n", namespace, "cm", "child", "-o", "json", check=True).json()
        assert not child["metadata"].get("ownerReferences")
    elif cascade == "foreground":
        # The owner is gone only after its blocking dependent.
        assert not _exists(cluster, namespace, "child")
    else:
        assert _eventually(lambda: not _exists(cluster, namespace, "child"))


def test_delete_grace_period_and_namespace(cluster: PeapodCluster, tmp_path: Path) -> None:
    cluster.kubectl("create", "namespace", "gone", check=True)
    pod = write(tmp_path, "p.yaml", POD.format(name="g1", app="g"))
    cluster.kubectl("create", "-n", "gone", "-f", str(pod), check=True)
    r = cluster.kubectl("delete", "-n", "gone", "pod", "g1", "--grace-period=0", "--force", check=True)
    assert 'pod "g1" force deleted' in r.stdout
    cluster.kubectl("create", "configmap", "left", "-n", "gone", check=True)
    r = cluster.kubectl("delete", "namespace", "gone", "--timeout=60s", check=True)
    assert r.stdout.strip() == 'namespace "gone" deleted'
    r = cluster.kubectl("get", "namespace", "gone")
    assert r.returncode != 0 and 'namespaces "gone" not found' in r.stderr


def test_explain_and_api_resources(cluster: PeapodCluster) -> None:
    out = cluster.kubectl("explain", "pods.spec.containers.image", check=True).stdout
    assert "FIELD: image" in out or "FIELD:    image" in out
    assert "Container image name" in out
    out = cluster.kubectl("explain", "deployment.spec.strategy", check=True).stdout
    assert "rollingUpdate" in out
    out = cluster.kubectl("api-resources", check=True).stdout
    rows: dict[str, list[str]] = {}
    for ln in out.splitlines()[1:]:  # the first row of a name: core pods/nodes, not metrics.k8s.io's
        rows.setdefault(ln.split()[0], ln.split())
    assert rows["pods"][1] == "po" and rows["pods"][-1] == "Pod"
    assert rows["deployments"][1:3] == ["deploy", "apps/v1"]
    assert "leases" in rows and "events" in rows and "namespaces" in rows


def test_create_namespace_and_configmap_protobuf(cluster: PeapodCluster) -> None:
    # kubectl 1.32+ sends these as protobuf.
    r = cluster.kubectl("create", "namespace", "pb", check=True, version="1.33")
    assert r.stdout.strip() == "namespace/pb created"
    r = cluster.kubectl("create", "configmap", "pbcm", "-n", "pb", "--from-literal=k=v", "--from-literal=x=y",
                        check=True, version="1.33")
    assert r.stdout.strip() == "configmap/pbcm created"
    cm = cluster.kubectl("get", "cm", "pbcm", "-n", "pb", "-o", "json", check=True).json()
    assert cm["data"] == {"k": "v", "x": "y"}
    r = cluster.kubectl("create", "secret", "generic", "pbs", "-n", "pb", "--from-literal=p=q", check=True,
                        version="1.33")
    assert r.stdout.strip() == "secret/pbs created"
    r = cluster.kubectl("create", "deployment", "pbd", "-n", "pb", "--image=busybox:1", "--replicas=2",
                        check=True, version="1.33")
    assert r.stdout.strip() == "deployment.apps/pbd created"
    d = cluster.kubectl("get", "deploy", "pbd", "-n", "pb", "-o", "json", check=True).json()
    assert d["spec"]["replicas"] == 2
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1"
    r = cluster.kubectl("auth", "can-i", "create", "pods", version="1.33")
    assert r.stdout.strip() == "yes"


def test_bad_manifests_name_the_field(cluster: PeapodCluster, namespace: str, tmp_path: Path) -> None:
    no_image = "apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec:\n  containers:\n  - name: c\n"
    r = cluster.kubectl("apply", "-n", namespace, "-f", str(write(tmp_path, "b1.yaml", no_image)))
    assert r.returncode != 0
    assert 'The Pod "bad" is invalid: spec.containers[0].image: Required value' in r.stderr
    unknown = POD.format(name="bad2", app="x").replace("command:", "commandz:")
    r = cluster.kubectl("create", "-n", namespace, "-f", str(write(tmp_path, "b2.yaml", unknown)))
    assert r.returncode != 0
    assert 'unknown field "spec.containers[0].commandz"' in r.stderr
    bad_name = POD.format(name="Bad_Name", app="x")
    r = cluster.kubectl("create", "-n", namespace, "-f", str(write(tmp_path, "b3.yaml", bad_name)))
    assert r.returncode != 0 and 'metadata.name: Invalid value: "Bad_Name"' in r.stderr
    sel = DEPLOYMENT.replace("matchLabels: {app: web}", "matchLabels: {app: other}")
    r = cluster.kubectl("apply", "-n", namespace, "-f", str(write(tmp_path, "b4.yaml", sel)))
    assert r.returncode != 0
    assert "spec.template.metadata.labels: Invalid value" in r.stderr
    assert "`selector` does not match template `labels`" in r.stderr
    # Nothing was stored.
    assert cluster.kubectl("get", "-n", namespace, "pods,deployments", "-o", "name").stdout.strip() == ""


def test_unauthenticated_is_refused(cluster: PeapodCluster, tmp_path: Path) -> None:
    cfg = yaml.safe_load(cluster.kubeconfig.read_text())
    cfg["users"][0]["user"]["token"] = "wrong"
    bad = tmp_path / "bad.kubeconfig"
    bad.write_text(yaml.safe_dump(cfg))
    p = subprocess.run(["kubectl", f"--kubeconfig={bad}", "get", "pods"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert "You must be logged in to the server" in p.stderr
