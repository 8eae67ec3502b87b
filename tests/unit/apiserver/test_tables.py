from datetime import UTC, datetime, timedelta

import pytest

from peapod.api.errors import ApiError
from peapod.api.resources import REGISTRY
from peapod.apiserver import tables

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def ts(seconds_ago):
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


PODS = REGISTRY.get("", "v1", "pods")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (5, "5s"),
        (119, "119s"),
        (120, "2m"),
        (200, "3m20s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 600, "3h10m"),
        (8 * 3600 + 5, "8h"),
        (47 * 3600, "47h"),
        (52 * 3600, "2d4h"),
        (48 * 3600, "2d"),
        (10 * 86400, "10d"),
        (800 * 86400, "2y70d"),
        (730 * 86400, "2y"),
        (3000 * 86400, "8y"),
    ],
)
def test_human_duration(seconds, text):
    assert tables.human_duration(seconds) == text


def pod(name="p", **status):
    return {
        "metadata": {
            "name": name,
            "namespace": "default",
            "creationTimestamp": ts(200),
            "labels": {"app": "x"},
        },
        "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
        "status": status,
    }


RUNNING = {"running": {"startedAt": ts(100)}}


def test_pod_table_shape():
    p = pod(
        phase="Running",
        podIPs=[{"ip": "10.1.0.5"}],
        containerStatuses=[
            {"name": "a", "ready": True, "restartCount": 0, "state": RUNNING},
            {
                "name": "b",
                "ready": True,
                "restartCount": 2,
                "state": RUNNING,
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": ts(300)}},
            },
        ],
    )
    t = tables.to_table(PODS, [p], now=NOW, list_meta={"resourceVersion": "7"})
    assert t["kind"] == "Table" and t["apiVersion"] == "meta.k8s.io/v1"
    assert t["metadata"] == {"resourceVersion": "7"}
    cols = [(c["name"], c["priority"]) for c in t["columnDefinitions"]]
    assert cols == [
        ("Name", 0),
        ("Ready", 0),
        ("Status", 0),
        ("Restarts", 0),
        ("Age", 0),
        ("IP", 1),
        ("Node", 1),
        ("Nominated Node", 1),
        ("Readiness Gates", 1),
    ]
    assert all(
        set(c) == {"name", "type", "format", "description", "priority"} for c in t["columnDefinitions"]
    )
    row = t["rows"][0]
    assert row["cells"] == [
        "p",
        "2/2",
        "Running",
        "2 (5m ago)",
        "3m20s",
        "10.1.0.5",
        "n1",
        "<none>",
        "<none>",
    ]
    assert row["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": p["metadata"],
    }


def test_include_object():
    p = pod(phase="Pending")
    assert tables.to_table(PODS, [p], now=NOW, include_object="Object")["rows"][0]["object"] is p
    assert "object" not in tables.to_table(PODS, [p], now=NOW, include_object="None")["rows"][0]
    with pytest.raises(ApiError):
        tables.to_table(PODS, [p], now=NOW, include_object="Bogus")


def status_of(p):
    return tables.to_table(PODS, [p], now=NOW)["rows"][0]["cells"][2]


def test_pod_status_reasons():
    assert status_of(pod(phase="Pending")) == "Pending"
    waiting = {"waiting": {"reason": "ContainerCreating"}}
    assert (
        status_of(pod(phase="Pending", containerStatuses=[{"name": "a", "state": waiting}]))
        == "ContainerCreating"
    )
    crash = {"waiting": {"reason": "CrashLoopBackOff"}}
    assert (
        status_of(
            pod(
                phase="Running",
                containerStatuses=[
                    {"name": "a", "state": RUNNING, "ready": True},
                    {"name": "b", "state": crash},
                ],
            )
        )
        == "CrashLoopBackOff"
    )
    done = {"terminated": {"reason": "Completed", "exitCode": 0}}
    assert (
        status_of(
            pod(
                phase="Succeeded",
                containerStatuses=[{"name": "a", "state": done}, {"name": "b", "state": done}],
            )
        )
        == "Completed"
    )
    assert (
        status_of(
            pod(phase="Failed", containerStatuses=[{"name": "a", "state": {"terminated": {"exitCode": 3}}}])
        )
        == "ExitCode:3"
    )
    assert (
        status_of(
            pod(
                phase="Failed",
                containerStatuses=[{"name": "a", "state": {"terminated": {"exitCode": 137, "signal": 9}}}],
            )
        )
        == "Signal:9"
    )
    assert status_of(pod(phase="Failed", reason="Evicted")) == "Evicted"
    # Completed but one container still running: Running when Ready, else NotReady
    mixed = [{"name": "a", "state": done}, {"name": "b", "state": RUNNING, "ready": True}]
    assert status_of(pod(phase="Running", containerStatuses=mixed)) == "NotReady"
    assert (
        status_of(
            pod(phase="Running", containerStatuses=mixed, conditions=[{"type": "Ready", "status": "True"}])
        )
        == "Running"
    )
    # Scheduling gated
    assert (
        status_of(
            pod(
                phase="Pending",
                conditions=[{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}],
            )
        )
        == "SchedulingGated"
    )


def test_pod_terminating():
    p = pod(phase="Running", containerStatuses=[{"name": "a", "state": RUNNING, "ready": True}])
    p["metadata"]["deletionTimestamp"] = ts(1)
    assert status_of(p) == "Terminating"
    p["status"]["phase"] = "Succeeded"
    assert status_of(p) != "Terminating"


def test_pod_init_containers():
    p = pod(
        phase="Pending",
        initContainerStatuses=[
            {"name": "i1", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            {"name": "i2", "state": {"running": {}}},
        ],
    )
    p["spec"]["initContainers"] = [{"name": "i1"}, {"name": "i2"}, {"name": "i3"}]
    assert status_of(p) == "Init:1/3"
    p["status"]["initContainerStatuses"][1]["state"] = {"waiting": {"reason": "ImagePullBackOff"}}
    assert status_of(p) == "Init:ImagePullBackOff"
    p["status"]["initContainerStatuses"][1]["state"] = {"terminated": {"exitCode": 2}}
    assert status_of(p) == "Init:ExitCode:2"
    p["status"]["initContainerStatuses"][1]["state"] = {"terminated": {"exitCode": 2, "reason": "Error"}}
    assert status_of(p) == "Init:Error"


def test_pod_sidecar_counts_in_ready():
    p = pod(
        phase="Running",
        initContainerStatuses=[
            {"name": "side", "started": True, "ready": True, "restartCount": 1, "state": RUNNING}
        ],
        containerStatuses=[
            {"name": "a", "ready": True, "state": RUNNING},
            {"name": "b", "ready": False, "state": RUNNING},
        ],
        conditions=[{"type": "Initialized", "status": "True"}],
    )
    p["spec"]["initContainers"] = [{"name": "side", "restartPolicy": "Always"}]
    cells = tables.to_table(PODS, [p], now=NOW)["rows"][0]["cells"]
    assert cells[1] == "2/3" and cells[2] == "Running" and cells[3] == "1"


def test_pod_readiness_gates_and_conditions():
    p = pod(phase="Succeeded", conditions=[{"type": "x/ok", "status": "True"}])
    p["spec"]["readinessGates"] = [{"conditionType": "x/ok"}, {"conditionType": "x/no"}]
    row = tables.to_table(PODS, [p], now=NOW)["rows"][0]
    assert row["cells"][8] == "1/2"
    assert row["conditions"][0]["type"] == "Completed"


def test_deployment_and_replicaset():
    dep = {
        "metadata": {"name": "web", "creationTimestamp": ts(52 * 3600)},
        "spec": {
            "replicas": 3,
            "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}],
            },
            "template": {
                "spec": {"containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "busybox"}]}
            },
        },
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    }
    t = tables.to_table(REGISTRY.get("apps", "v1", "deployments"), [dep], now=NOW)
    assert [c["name"] for c in t["columnDefinitions"]] == [
        "Name",
        "Ready",
        "Up-to-date",
        "Available",
        "Age",
        "Containers",
        "Images",
        "Selector",
    ]
    assert t["rows"][0]["cells"] == [
        "web",
        "2/3",
        3,
        2,
        "2d4h",
        "a,b",
        "nginx,busybox",
        "app=web,tier in (a,b)",
    ]
    rs = {
        "metadata": {"name": "web-1"},
        "spec": {"replicas": 0, "template": {"spec": {"containers": []}}},
        "status": {"replicas": 1},
    }
    t = tables.to_table(REGISTRY.get("apps", "v1", "replicasets"), [rs], now=NOW)
    assert [c["name"] for c in t["columnDefinitions"]][:5] == ["Name", "Desired", "Current", "Ready", "Age"]
    assert t["rows"][0]["cells"] == ["web-1", 0, 1, 0, "<unknown>", "", "", "<none>"]


def test_node():
    node = {
        "metadata": {
            "name": "n1",
            "creationTimestamp": ts(5),
            "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "worker"},
        },
        "spec": {"unschedulable": True},
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "False"},
            ],
            "addresses": [{"type": "InternalIP", "address": "192.168.1.2"}],
            "nodeInfo": {
                "kubeletVersion": "v1.33.0-peapod",
                "osImage": "Debian GNU/Linux 12",
                "kernelVersion": "6.1.0",
                "containerRuntimeVersion": "runc://1.1",
            },
        },
    }
    t = tables.to_table(REGISTRY.get("", "v1", "nodes"), [node], now=NOW)
    assert t["rows"][0]["cells"] == [
        "n1",
        "NotReady,SchedulingDisabled",
        "control-plane,worker",
        "5s",
        "v1.33.0-peapod",
        "192.168.1.2",
        "<none>",
        "Debian GNU/Linux 12",
        "6.1.0",
        "runc://1.1",
    ]
    assert [c["name"] for c in t["columnDefinitions"] if c["priority"]] == [
        "Internal-IP",
        "External-IP",
        "OS-Image",
        "Kernel-Version",
        "Container-Runtime",
    ]
    bare = {"metadata": {"name": "n2"}}
    assert tables.to_table(REGISTRY.get("", "v1", "nodes"), [bare], now=NOW)["rows"][0]["cells"][:3] == [
        "n2",
        "Unknown",
        "<none>",
    ]


def test_small_kinds():
    age = ts(30)
    cases = [
        (
            ("", "namespaces"),
            {"metadata": {"name": "ns", "creationTimestamp": age}, "status": {"phase": "Active"}},
            ["ns", "Active", "30s"],
        ),
        (
            ("", "configmaps"),
            {
                "metadata": {"name": "c", "creationTimestamp": age},
                "data": {"a": "1"},
                "binaryData": {"b": "AA=="},
            },
            ["c", 2, "30s"],
        ),
        (
            ("", "secrets"),
            {"metadata": {"name": "s", "creationTimestamp": age}, "type": "Opaque", "data": {"a": "MQ=="}},
            ["s", "Opaque", 1, "30s"],
        ),
        (
            ("", "serviceaccounts"),
            {"metadata": {"name": "default", "creationTimestamp": age}},
            ["default", 0, "30s"],
        ),
        (
            ("coordination.k8s.io", "leases"),
            {"metadata": {"name": "l", "creationTimestamp": age}, "spec": {"holderIdentity": "me"}},
            ["l", "me", "30s"],
        ),
        (
            ("authorization.k8s.io", "selfsubjectaccessreviews"),
            {"metadata": {"name": "x"}},
            ["x", "<unknown>"],
        ),
    ]
    for (group, resource), obj, cells in cases:
        info = next(r for r in REGISTRY.resources if (r.group, r.resource) == (group, resource))
        t = tables.to_table(info, [obj], now=NOW)
        assert t["rows"][0]["cells"] == cells, resource
        assert len(t["columnDefinitions"]) == len(cells)


def test_events_core_and_events_k8s_io():
    core = {
        "metadata": {"name": "p.1"},
        "type": "Warning",
        "reason": "BackOff",
        "message": " restarting \n",
        "involvedObject": {"kind": "Pod", "name": "p", "fieldPath": "spec.containers{a}"},
        "source": {"component": "kubelet", "host": "n1"},
        "firstTimestamp": ts(600),
        "lastTimestamp": ts(5),
        "count": 4,
    }
    t = tables.to_table(REGISTRY.get("", "v1", "events"), [core], now=NOW)
    assert [c["name"] for c in t["columnDefinitions"] if not c["priority"]] == [
        "Last Seen",
        "Type",
        "Reason",
        "Object",
        "Message",
    ]
    assert t["rows"][0]["cells"] == [
        "5s",
        "Warning",
        "BackOff",
        "pod/p",
        "spec.containers{a}",
        "kubelet, n1",
        "restarting",
        "10m",
        4,
        "p.1",
    ]
    new = {
        "metadata": {"name": "e"},
        "type": "Normal",
        "reason": "Scheduled",
        "note": "assigned",
        "regarding": {"kind": "Pod", "name": "p"},
        "eventTime": "2024-05-01T11:59:00.000000Z",
        "reportingController": "peapod-scheduler",
    }
    t = tables.to_table(REGISTRY.get("events.k8s.io", "v1", "events"), [new], now=NOW)
    assert t["rows"][0]["cells"] == [
        "60s",
        "Normal",
        "Scheduled",
        "pod/p",
        "",
        "peapod-scheduler",
        "assigned",
        "60s",
        1,
        "e",
    ]


def test_wants_table():
    kubectl = (
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,"
        "application/json"
    )
    assert tables.wants_table(kubectl)
    assert tables.wants_table("application/json;as=Table;g=meta.k8s.io;v=v1")
    assert not tables.wants_table("application/json")
    assert not tables.wants_table(None)
    assert not tables.wants_table("application/json;as=Table;v=v1;g=other.io")


def test_table_include_object():
    assert tables.table_include_object({}) == "Metadata"
    assert tables.table_include_object({"includeObject": "Object"}) == "Object"
    with pytest.raises(ApiError) as e:
        tables.table_include_object({"includeObject": "all"})
    assert e.value.code == 400
