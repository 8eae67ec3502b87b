"""`peapod run-example`: reading an example and the pure helpers of its progress and usage lines.
The whole run (a real cluster, build, deploy, Ctrl-C) is tests/e2e/test_make_run.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from peapod.cli.example import availability, http_target, load_example, pod_summary, selector_string, usage_lines
from peapod.cli.main import CliError

WEBAPP = Path(__file__).resolve().parents[3] / "examples" / "webapp"


def test_the_webapp_example_is_the_classic_multi_container_pod() -> None:
    ex = load_example(WEBAPP)
    assert ex.image == "localhost/peapod/webapp:latest" and ex.containerfile == WEBAPP / "Containerfile"
    [dep] = ex.deployments
    spec = dep["spec"]["template"]["spec"]
    web, sidecar = spec["containers"]
    assert {web["image"], sidecar["image"]} == {ex.image}
    assert {web["imagePullPolicy"], sidecar["imagePullPolicy"]} <= {"IfNotPresent", "Never"}
    assert web["readinessProbe"]["httpGet"] and web["livenessProbe"] and sidecar["livenessProbe"]
    for c in (web, sidecar):
        assert c["resources"]["requests"] and c["resources"]["limits"]
        assert [m["name"] for m in c["volumeMounts"]] == ["shared"]
    assert spec["volumes"] == [{"name": "shared", "emptyDir": {"sizeLimit": "8Mi"}}]
    containerfile = (WEBAPP / "Containerfile").read_text()
    assert "FROM localhost/peapod/busybox:latest" in containerfile and "\nRUN " in containerfile


def test_an_example_needs_manifests(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="no such example"):
        load_example(tmp_path / "nope")
    with pytest.raises(CliError, match="no Kubernetes manifests"):
        load_example(tmp_path)
    (tmp_path / "a.yaml").write_text("kind: Pod\n")
    with pytest.raises(CliError, match="apiVersion and kind"):
        load_example(tmp_path)
    (tmp_path / "a.yaml").write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n---\n")
    ex = load_example(tmp_path)
    assert ex.containerfile is None and len(ex.objects) == 1 and ex.deployments == []


def dep(replicas: int = 2, available: int = 0, updated: int = 0, generation: int = 1, observed: int = 1) -> dict:
    return {"metadata": {"generation": generation}, "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "availableReplicas": available, "updatedReplicas": updated}}


@pytest.mark.parametrize(("d", "want"), [
    (dep(), (0, 2)),
    (dep(available=2, updated=2), (2, 2)),
    (dep(available=2, updated=1), (1, 2)),  # an old revision's pods do not count
    (dep(available=2, updated=2, generation=2), (0, 2)),  # the controller has not seen the change yet
    ({"metadata": {}, "spec": {}, "status": {}}, (0, 1)),
])
def test_availability(d: dict, want: tuple[int, int]) -> None:
    assert availability(d) == want


def pod(name: str, phase: str, *statuses: dict) -> dict:
    return {"metadata": {"name": name}, "spec": {"containers": [{}, {}]},
            "status": {"phase": phase, "containerStatuses": list(statuses)}}


def test_pod_summary_names_the_reason_a_container_waits() -> None:
    assert pod_summary([]) == "no pods yet"
    waiting = {"ready": False, "state": {"waiting": {"reason": "ErrImageNeverPull"}}}
    creating = {"ready": False, "state": {"waiting": {"reason": "ContainerCreating"}}}
    running = {"ready": True, "state": {"running": {}}}
    assert pod_summary([pod("b", "Running", running, running), pod("a", "Pending", waiting, creating)]) == \
        "a: ErrImageNeverPull 0/2 ready; b: Running 2/2 ready"


def test_http_target_and_usage() -> None:
    [d] = load_example(WEBAPP).deployments
    url = http_target(d, "10.77.0.5")
    assert url == "http://10.77.0.5:8080/cgi-bin/hello"
    assert selector_string(d) == "app=webapp"
    lines = usage_lines(kubeconfig=Path("/d/kubeconfig"), data_dir=Path("/d"), deployment="webapp", url=url)
    assert "  export KUBECONFIG=/d/kubeconfig" in lines and "  kubectl get pods -o wide" in lines
    assert f"  curl {url}" in lines and "  curl http://127.0.0.1:8080/cgi-bin/hello" in lines
    assert any("kubectl port-forward deployment/webapp 8080:8080" in ln for ln in lines)
    bare = {"metadata": {}, "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}}
    assert http_target(bare, "10.0.0.1") == "http://10.0.0.1:80/"
