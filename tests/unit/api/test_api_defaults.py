import copy

import pytest

from peapod.api.defaults import apply_defaults, default_pull_policy, qos_class


def _pod(**spec):
    base = {"containers": [{"name": "c", "image": "nginx"}]}
    base.update(spec)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": base,
    }


def test_pod_defaults():
    pod = _pod()
    apply_defaults("", "v1", "Pod", pod)
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["securityContext"] == {}
    assert spec["enableServiceLinks"] is True
    assert spec["serviceAccountName"] == spec["serviceAccount"] == "default"
    assert spec["priority"] == 0
    assert spec["preemptionPolicy"] == "PreemptLowerPriority"
    assert "tolerations" not in spec  # DefaultTolerationSeconds is admission (tests/unit/apiserver)
    c = spec["containers"][0]
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "File"
    assert c["imagePullPolicy"] == "Always"
    assert c["resources"] == {}
    assert pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}


def test_pod_defaults_idempotent_and_keep_user_values():
    pod = _pod(
        restartPolicy="Never",
        serviceAccountName="builder",
        tolerations=[{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}],
    )
    apply_defaults("", "v1", "Pod", pod)
    once = copy.deepcopy(pod)
    apply_defaults("", "v1", "Pod", pod)
    assert pod == once
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["serviceAccount"] == "builder"
    assert [t["key"] for t in pod["spec"]["tolerations"]] == ["node.kubernetes.io/not-ready"]


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.25", "IfNotPresent"),
        ("localhost:5000/app", "Always"),
        ("localhost:5000/app:v1", "IfNotPresent"),
        ("busybox@sha256:" + "a" * 64, "IfNotPresent"),
        ("busybox:latest@sha256:" + "a" * 64, "Always"),
    ],
)
def test_pull_policy(image, policy):
    assert default_pull_policy(image) == policy


def test_container_details():
    pod = _pod(
        containers=[
            {
                "name": "c",
                "image": "nginx:1",
                "ports": [{"containerPort": 80}],
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}},
                "livenessProbe": {"httpGet": {"port": 80}},
                "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 5},
                "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            }
        ],
        initContainers=[{"name": "i", "image": "busybox", "resources": {"limits": {"cpu": "1"}}}],
        volumes=[
            {"name": "a", "configMap": {"name": "cm"}},
            {"name": "b", "secret": {"secretName": "s"}},
            {"name": "c"},
            {"name": "d", "hostPath": {"path": "/x"}},
        ],
    )
    apply_defaults("", "v1", "Pod", pod)
    c = pod["spec"]["containers"][0]
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert c["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    assert c["livenessProbe"] == {
        "httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    assert c["readinessProbe"]["periodSeconds"] == 5
    assert c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] == "v1"
    assert pod["spec"]["initContainers"][0]["resources"]["requests"] == {"cpu": "1"}
    vols = pod["spec"]["volumes"]
    assert vols[0]["configMap"]["defaultMode"] == 420
    assert vols[1]["secret"]["defaultMode"] == 420
    assert vols[2]["emptyDir"] == {}
    assert vols[3]["hostPath"]["type"] == ""
    assert pod["status"]["qosClass"] == "Burstable"


def test_host_network_ports():
    pod = _pod(hostNetwork=True, containers=[{"name": "c", "image": "x", "ports": [{"containerPort": 8080}]}])
    apply_defaults("", "v1", "Pod", pod)
    assert pod["spec"]["containers"][0]["ports"][0]["hostPort"] == 8080


def _res(limits=None, requests=None):
    r = {}
    if limits is not None:
        r["limits"] = limits
    if requests is not None:
        r["requests"] = requests
    return {"spec": {"containers": [{"name": "c", "resources": r}]}}


@pytest.mark.parametrize(
    ("pod", "qos"),
    [
        (_res(), "BestEffort"),
        (_res(limits={"cpu": "1", "memory": "1Gi"}), "Guaranteed"),
        (
            _res(limits={"cpu": "1", "memory": "1Gi"}, requests={"cpu": "1000m", "memory": "1Gi"}),
            "Guaranteed",
        ),
        (_res(limits={"cpu": "1", "memory": "1Gi"}, requests={"cpu": "500m"}), "Burstable"),
        (_res(limits={"cpu": "1"}), "Burstable"),
        (_res(requests={"memory": "1Gi"}), "Burstable"),
        (_res(requests={"ephemeral-storage": "1Gi"}), "BestEffort"),
        (_res(requests={"cpu": "0"}), "BestEffort"),
    ],
)
def test_qos(pod, qos):
    assert qos_class(pod) == qos


def test_deployment_defaults():
    d = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    }
    apply_defaults("apps", "v1", "Deployment", d)
    spec = d["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    tspec = spec["template"]["spec"]
    assert tspec["restartPolicy"] == "Always" and tspec["dnsPolicy"] == "ClusterFirst"
    # Pod-only (admission) defaults do not apply to templates.
    for k in ("enableServiceLinks", "serviceAccountName", "priority", "tolerations"):
        assert k not in tspec
    assert "status" not in spec["template"]


def test_recreate_strategy_gets_no_rolling_update():
    d = {"spec": {"strategy": {"type": "Recreate"}, "template": {"spec": {"containers": []}}}}
    apply_defaults("apps", "v1", "Deployment", d)
    assert d["spec"]["strategy"] == {"type": "Recreate"}


def test_replicaset_secret_namespace_node_defaults():
    rs = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}}
    apply_defaults("apps", "v1", "ReplicaSet", rs)
    assert rs["spec"]["replicas"] == 1
    assert rs["spec"]["template"]["spec"]["schedulerName"] == "default-scheduler"
    s = {"metadata": {"name": "s"}}
    apply_defaults("", "v1", "Secret", s)
    assert s["type"] == "Opaque"
    ns = {"metadata": {"name": "n"}}
    apply_defaults("", "v1", "Namespace", ns)
    assert ns["spec"] == {"finalizers": ["kubernetes"]} and ns["status"] == {"phase": "Active"}
    node = {"metadata": {"name": "n"}, "status": {"capacity": {"cpu": "2"}}}
    apply_defaults("", "v1", "Node", node)
    assert node["status"]["allocatable"] == {"cpu": "2"}
    cm = {"metadata": {"name": "c"}, "data": {"a": "b"}}
    apply_defaults("", "v1", "ConfigMap", cm)
    assert cm == {"metadata": {"name": "c"}, "data": {"a": "b"}}
