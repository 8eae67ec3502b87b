"""Protobuf request bodies: real captures from kubectl 1.33 plus bodies from a tiny encoder."""

import pytest

from peapod.api.errors import ApiError
from peapod.apiserver.protobuf import decode_protobuf

# Bodies captured from kubectl 1.33 against a stub server (see test_openapi_kubectl.py for the live run).
CAPTURED = {
    "namespace": (
        "6b3873000a0f0a02763112094e616d657370616365121b0a130a036e733112001a0022002a0032003800420012001a02"
        "0a001a002200"
    ),
    "configmap": (
        "6b3873000a0f0a0276311209436f6e6669674d617012250a130a03636d3112001a0022002a0032003800420012060a01"
        "6112016212060a01631201641a002200"
    ),
    "secret": (
        "6b3873000a0c0a027631120653656372657412240a120a02733112001a0022002a0032003800420012060a0175120170"
        "1a064f70617175651a002200"
    ),
    "token": (
        "6b3873000a280a1861757468656e7469636174696f6e2e6b38732e696f2f7631120c546f6b656e526571756573741221"
        "0a100a0012001a0022002a0032003800420012070a02613120901c1a040a0012001a002200"
    ),
    "service": (
        "6b3873000a0d0a02763112075365727669636512700a210a047376633212001a0022002a003200380042005a0b0a0361"
        "707012047376633212470a200a0738312d6874747012035443501851220a080110001a046874747028b1ea01120b0a03"
        "6170701204737663321a0022084e6f6465506f72743a00420052005a00600068001a020a001a002200"
    ),
    "deployment": (
        "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412cd010a1d0a02643112001a0022002a0032003800"
        "42005a090a0361707012026431129d010800120b0a090a03617070120264311a83010a1b0a0012001a0022002a003200"
        "380042005a090a0361707012026431126412460a056e67696e7812076e67696e783a311a072f62696e2f73681a022d63"
        "1a07736c65657020312a00320a0a001000185022002a0042006a007200800100880100900100a201001a00320042004a"
        "0052005800600068008201008a01009a0100c2010022020a00280038001a0c0800100018002000280038001a002200"
    ),
    "ssar": (
        "6b3873000a320a17617574686f72697a6174696f6e2e6b38732e696f2f7631121753656c665375626a65637441636365"
        "737352657669657712510a100a0012001a0022002a0032003800420012330a310a0b6b7562652d73797374656d12046c"
        "6973741a046170707322002a0b6465706c6f796d656e747332057363616c653a001a08080012001a0020001a002200"
    ),
    "job": (
        "6b3873000a0f0a0862617463682f763112034a6f621284010a120a026a3112001a0022002a0032003800420012643262"
        "0a100a0012001a0022002a00320038004200124e122b0a026a31120762757379626f781a046563686f1a0268692a0042"
        "006a007200800100880100900100a201001a054e65766572320042004a0052005800600068008201008a01009a0100c2"
        "01001a082000280030003a001a002200"
    ),
}


def captured(name):
    return bytes.fromhex(CAPTURED[name])


def test_captured_namespace():
    assert decode_protobuf(captured("namespace")) == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "ns1"},
    }


def test_captured_configmap_and_secret():
    assert decode_protobuf(captured("configmap")) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cm1"},
        "data": {"a": "b", "c": "d"},
    }
    assert decode_protobuf(captured("secret")) == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s1"},
        "data": {"u": "cA=="},
        "type": "Opaque",
    }


def test_captured_deployment_keeps_explicit_zero_replicas():
    # kubectl create deployment d1 --image=nginx:1 --port=80 --replicas=0 -- /bin/sh -c "sleep 1"
    assert decode_protobuf(captured("deployment")) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d1", "labels": {"app": "d1"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "d1"}},
            "template": {
                "metadata": {"labels": {"app": "d1"}},
                "spec": {
                    "containers": [
                        {
                            "name": "nginx",
                            "image": "nginx:1",
                            "command": ["/bin/sh", "-c", "sleep 1"],
                            "ports": [{"containerPort": 80}],
                        }
                    ]
                },
            },
        },
    }


def test_captured_service_job_ssar_token():
    svc = decode_protobuf(captured("service"))
    assert svc["spec"] == {
        "ports": [
            {"name": "81-http", "protocol": "TCP", "port": 81, "targetPort": "http", "nodePort": 30001}
        ],
        "selector": {"app": "svc2"},
        "type": "NodePort",
    }
    job = decode_protobuf(captured("job"))
    assert job["spec"]["template"]["spec"] == {
        "containers": [{"name": "j1", "image": "busybox", "command": ["echo", "hi"]}],
        "restartPolicy": "Never",
    }
    ssar = decode_protobuf(captured("ssar"))
    assert ssar == {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {
            "resourceAttributes": {
                "namespace": "kube-system",
                "verb": "list",
                "group": "apps",
                "resource": "deployments",
                "subresource": "scale",
            }
        },
    }
    token = decode_protobuf(captured("token"))
    assert token == {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"audiences": ["a1"], "expirationSeconds": 3600},
    }


# -- a tiny encoder for fields kubectl's create commands do not set -------------------------------


def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_int(num, v):
    return varint(num << 3) + varint(v)


def f_bytes(num, v):
    if isinstance(v, str):
        v = v.encode()
    return varint(num << 3 | 2) + varint(len(v)) + v


def f_map(num, d):
    return b"".join(f_bytes(num, f_bytes(1, k) + f_bytes(2, v)) for k, v in d.items())


def envelope(api_version, kind, raw):
    return (
        b"k8s\x00"
        + f_bytes(1, f_bytes(1, api_version) + f_bytes(2, kind))
        + f_bytes(2, raw)
        + f_bytes(3, b"")
        + f_bytes(4, b"")
    )


def test_object_meta_fields():
    meta = (
        f_bytes(1, "")
        + f_bytes(2, "web-")
        + f_bytes(3, "team")
        + f_int(7, 0)
        + f_bytes(8, b"")
        + f_map(11, {"app": "web"})
        + f_map(12, {"note": "x"})
        + f_bytes(14, "example.com/f")
        + f_bytes(
            13,
            f_bytes(1, "ReplicaSet")
            + f_bytes(3, "rs")
            + f_bytes(4, "u1")
            + f_bytes(5, "apps/v1")
            + f_int(6, 1),
        )
    )
    raw = f_bytes(1, meta) + f_map(3, {"bin": b"\x00\x01"}) + f_int(4, 0)
    obj = decode_protobuf(envelope("v1", "ConfigMap", raw))
    assert obj["metadata"] == {
        "generateName": "web-",
        "namespace": "team",
        "labels": {"app": "web"},
        "annotations": {"note": "x"},
        "finalizers": ["example.com/f"],
        "ownerReferences": [
            {"kind": "ReplicaSet", "name": "rs", "uid": "u1", "apiVersion": "apps/v1", "controller": True}
        ],
    }
    assert obj["binaryData"] == {"bin": "AAE="}
    assert obj["immutable"] is False  # pointer field: explicit false is kept


def test_creation_timestamp_is_rfc3339():
    meta = f_bytes(1, "a") + f_bytes(8, f_int(1, 1700000000))
    obj = decode_protobuf(envelope("v1", "Namespace", f_bytes(1, meta)))
    assert obj["metadata"]["creationTimestamp"] == "2023-11-14T22:13:20Z"


def test_container_common_fields():
    qty = lambda s: f_bytes(1, s)  # noqa: E731
    container = (
        f_bytes(1, "app")
        + f_bytes(2, "busybox")
        + f_bytes(4, "-c")
        + f_bytes(4, "echo hi")
        + f_bytes(5, "/w")
        + f_bytes(7, f_bytes(1, "A") + f_bytes(2, "1"))
        + f_bytes(
            7, f_bytes(1, "B") + f_bytes(3, f_bytes(4, f_bytes(1, f_bytes(1, "sec")) + f_bytes(2, "k")))
        )
        + f_bytes(
            8,
            f_bytes(1, f_bytes(1, "cpu") + f_bytes(2, qty("500m")))
            + f_bytes(2, f_bytes(1, "memory") + f_bytes(2, qty("64Mi"))),
        )
        + f_bytes(9, f_bytes(1, "data") + f_int(2, 1) + f_bytes(3, "/data"))
        + f_bytes(
            11,
            f_bytes(1, f_bytes(2, f_bytes(1, "/healthz") + f_bytes(2, f_int(1, 0) + f_int(2, 8080))))
            + f_int(4, 5),
        )
        + f_bytes(14, "IfNotPresent")
        + f_int(16, 0)
        + f_bytes(15, f_int(4, 1000) + f_int(6, 1) + f_bytes(1, f_bytes(2, "ALL")))
    )
    rolling = f_bytes(1, f_int(1, 1) + f_bytes(3, "25%")) + f_bytes(2, f_int(1, 0) + f_int(2, 1))
    pod_spec = (
        f_bytes(2, container)
        + f_bytes(3, "Always")
        + f_map(7, {"disk": "ssd"})
        + f_bytes(1, f_bytes(1, "data") + f_bytes(2, f_bytes(2, f_bytes(1, ""))))
        + f_bytes(22, f_bytes(1, "k") + f_bytes(2, "Exists") + f_bytes(4, "NoSchedule"))
        + f_int(4, 30)
    )
    spec = (
        f_int(1, 3)
        + f_bytes(3, f_bytes(2, pod_spec))
        + f_bytes(4, f_bytes(1, "RollingUpdate") + f_bytes(2, rolling))
        + f_int(6, 10)
    )
    obj = decode_protobuf(envelope("apps/v1", "Deployment", f_bytes(1, f_bytes(1, "d")) + f_bytes(2, spec)))
    s = obj["spec"]
    assert s["replicas"] == 3 and s["revisionHistoryLimit"] == 10
    assert s["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1},
    }
    ps = s["template"]["spec"]
    assert ps["restartPolicy"] == "Always" and ps["nodeSelector"] == {"disk": "ssd"}
    assert ps["terminationGracePeriodSeconds"] == 30
    assert ps["volumes"] == [{"name": "data", "emptyDir": {}}]
    assert ps["tolerations"] == [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}]
    c = ps["containers"][0]
    assert c == {
        "name": "app",
        "image": "busybox",
        "args": ["-c", "echo hi"],
        "workingDir": "/w",
        "env": [
            {"name": "A", "value": "1"},
            {"name": "B", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "k"}}},
        ],
        "resources": {"limits": {"cpu": "500m"}, "requests": {"memory": "64Mi"}},
        "volumeMounts": [{"name": "data", "readOnly": True, "mountPath": "/data"}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 5},
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {
            "runAsUser": 1000,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def test_negative_and_unknown_fields():
    # unknown field numbers are skipped; int64 negatives come back signed
    meta = f_bytes(1, "x") + f_int(10, -1) + f_bytes(99, "ignored")
    obj = decode_protobuf(envelope("v1", "Namespace", f_bytes(1, meta)))
    assert obj["metadata"] == {"name": "x", "deletionGracePeriodSeconds": -1}


def test_unknown_kind_is_415():
    with pytest.raises(ApiError) as e:
        decode_protobuf(envelope("v1", "Pod", b""))
    assert e.value.code == 415 and "Pod" in e.value.message


@pytest.mark.parametrize(
    "body", [b"not protobuf", b"k8s\x00\x0a\xff", b"k8s\x00" + f_bytes(1, b"\x0a\x05ab")]
)
def test_malformed_is_400(body):
    with pytest.raises(ApiError) as e:
        decode_protobuf(body)
    assert e.value.code == 400


def test_truncated_object_is_400():
    raw = f_bytes(1, f_bytes(1, "x"))[:-1]
    with pytest.raises(ApiError) as e:
        decode_protobuf(envelope("v1", "Namespace", raw))
    assert e.value.code == 400
