import pytest

from peapod.api.decode import type_errors, unknown_fields


def _pod(**container):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "x", **container}]},
    }


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (_pod(), []),
        (_pod(imagePullPolicyx="Always"), ["spec.containers[0].imagePullPolicyx"]),
        ({"kind": "Pod", "spec": {"bogus": 1, "containers": []}, "extra": {}}, ["spec.bogus", "extra"]),
        ({"metadata": {"name": "p", "labels": {"any-key": "v"}, "annotations": {"x/y": "z"}}}, []),
        ({"metadata": {"name": "p", "managedFields": [{"fieldsV1": {"f:spec": {"f:anything": {}}}}]}}, []),
        ({"spec": {"containers": [{"name": "c", "resources": {"limits": {"example.com/gpu": "1"}}}]}}, []),
        (
            {"spec": {"volumes": [{"name": "v", "emptyDir": {"sizeLimitx": "1Gi"}}]}},
            ["spec.volumes[0].emptyDir.sizeLimitx"],
        ),
        (
            {"status": {"conditions": [{"type": "Ready", "statusx": "True"}]}},
            ["status.conditions[0].statusx"],
        ),
    ],
)
def test_unknown_fields_pod(obj, expected):
    assert unknown_fields("", "v1", "Pod", obj) == expected


def test_unknown_fields_other_kinds():
    d = {
        "spec": {
            "template": {"metadata": {"labelz": {}}, "spec": {"containers": []}},
            "strategy": {"typo": 1},
        }
    }
    assert unknown_fields("apps", "v1", "Deployment", d) == [
        "spec.template.metadata.labelz",
        "spec.strategy.typo",
    ]
    assert unknown_fields("", "v1", "ConfigMap", {"data": {"k": "v"}, "datum": {}}) == ["datum"]
    assert unknown_fields(
        "events.k8s.io", "v1", "Event", {"regarding": {"kind": "Pod"}, "involvedObject": {}}
    ) == ["involvedObject"]
    assert unknown_fields("nope", "v1", "Nothing", {"a": 1}) == []


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (_pod(), []),
        (
            {"spec": {"containers": "x"}},
            [
                "json: cannot unmarshal string into Go struct field PodSpec.spec.containers of type "
                "[]v1.Container"
            ],
        ),
        (
            {"spec": {"containers": ["x"]}},
            [
                "json: cannot unmarshal string into Go struct field PodSpec.spec.containers of type "
                "v1.Container"
            ],
        ),
        (
            _pod(image=5),
            [
                "json: cannot unmarshal number into Go struct field Container.spec.containers.image of "
                "type string"
            ],
        ),
        (
            _pod(args=[1]),
            [
                "json: cannot unmarshal number into Go struct field Container.spec.containers.args of "
                "type string"
            ],
        ),
        (
            _pod(ports=[{"containerPort": 1.5}]),
            [
                "json: cannot unmarshal number 1.5 into Go struct field "
                "ContainerPort.spec.containers.ports.containerPort "
                "of type int32"
            ],
        ),
        (
            _pod(ports=[{"containerPort": 2**31}]),
            [
                "json: cannot unmarshal number 2147483648 into Go struct field "
                "ContainerPort.spec.containers.ports."
                "containerPort of type int32"
            ],
        ),
        (
            {"spec": {"hostNetwork": "yes"}},
            ["json: cannot unmarshal string into Go struct field PodSpec.spec.hostNetwork of type bool"],
        ),
        (
            {"spec": {"terminationGracePeriodSeconds": True}},
            [
                "json: cannot unmarshal bool into Go struct field "
                "PodSpec.spec.terminationGracePeriodSeconds of type int64"
            ],
        ),
        (
            {"metadata": {"labels": {"a": 1}}},
            ["json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string"],
        ),
        (
            {"metadata": {"labels": []}},
            [
                "json: cannot unmarshal array into Go struct field ObjectMeta.metadata.labels of type "
                "map[string]string"
            ],
        ),
        (
            _pod(resources={"limits": {"cpu": "abc"}}),
            [
                "spec.containers[0].resources.limits.cpu: quantities must match the regular expression "
                "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
            ],
        ),
        (_pod(resources={"limits": {"cpu": 0.5, "memory": 1024}}), []),
        (_pod(livenessProbe={"httpGet": {"port": "http"}}), []),
        (_pod(livenessProbe={"httpGet": {"port": 8080}}), []),
        (
            _pod(livenessProbe={"httpGet": {"port": 1.5}}),
            [
                "json: cannot unmarshal number 1.5 into Go struct field "
                "HTTPGetAction.spec.containers.livenessProbe.httpGet."
                "port of type int32"
            ],
        ),
        ({"metadata": {"name": None, "labels": None}, "spec": None}, []),
        (
            {"status": {"startTime": "yesterday"}},
            ['status.startTime: parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse'],
        ),
        ({"status": {"startTime": "2024-05-01T10:00:00Z"}}, []),
        ([], ["json: cannot unmarshal array into Go value of type v1.Pod"]),
    ],
)
def test_type_errors_pod(obj, expected):
    assert type_errors("", "v1", "Pod", obj) == expected


def test_type_errors_other_kinds():
    assert type_errors("", "v1", "Secret", {"data": {"a": "!!!"}}) == [
        "data.a: illegal base64 data at input byte 0"
    ]
    assert type_errors("", "v1", "Secret", {"data": {"a": "eA=="}, "stringData": {"b": "plain"}}) == []
    assert (
        type_errors(
            "apps", "v1", "Deployment", {"spec": {"strategy": {"rollingUpdate": {"maxSurge": "25%"}}}}
        )
        == []
    )
    assert type_errors("apps", "v1", "Deployment", {"spec": {"replicas": "3"}}) == [
        "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"
    ]
    assert type_errors("", "v1", "ConfigMap", {"data": {"a": 1}}) == [
        "json: cannot unmarshal number into Go struct field ConfigMap.data of type string"
    ]
