import copy

import pytest

from peapod.api.defaults import apply_defaults
from peapod.api.errors import invalid_object
from peapod.api.validation import validate_object, validate_update


def _msgs(errs):
    return [e.message() for e in errs]


NOT_READY = {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 300}


def pod(**spec_overrides):
    spec_overrides.setdefault("tolerations", [dict(NOT_READY)])  # as admission leaves a new pod
    p = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "nginx:1"}], **spec_overrides},
    }
    apply_defaults("", "v1", "Pod", p)
    return p


def mutate(obj, fn):
    obj = copy.deepcopy(obj)
    fn(obj)
    return obj


def c0(p):
    return p["spec"]["containers"][0]


def test_valid_pod():
    assert validate_object("", "v1", "Pod", pod()) == []


SUBDOMAIN = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
    "must start "
    "and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda p: c0(p).update(image=""), ["spec.containers[0].image: Required value"]),
        (lambda p: p["spec"].update(containers=[]), ["spec.containers: Required value"]),
        (lambda p: p["metadata"].update(name="Web"), [f'metadata.name: Invalid value: "Web": {SUBDOMAIN}']),
        (
            lambda p: p["metadata"].pop("name"),
            ["metadata.name: Required value: name or generateName is required"],
        ),
        (lambda p: p["metadata"].pop("namespace"), ["metadata.namespace: Required value"]),
        (
            lambda p: p["spec"]["containers"].append(dict(c0(p))),
            ['spec.containers[1].name: Duplicate value: "c"'],
        ),
        (lambda p: c0(p).update(name="C_1"), None),
        (
            lambda p: p["spec"].update(restartPolicy="Sometimes"),
            [
                'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", '
                '"OnFailure", "Never"'
            ],
        ),
        (
            lambda p: p["spec"].update(dnsPolicy="Cluster"),
            [
                'spec.dnsPolicy: Unsupported value: "Cluster": supported values: "ClusterFirstWithHostNet", '
                '"ClusterFirst", "Default", "None"'
            ],
        ),
        (
            lambda p: c0(p).update(imagePullPolicy="Sometimes"),
            [
                'spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes": supported values: '
                '"Always", '
                '"IfNotPresent", "Never"'
            ],
        ),
        (
            lambda p: c0(p).update(ports=[{"containerPort": 70000, "protocol": "TCP"}]),
            [
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and "
                "65535, inclusive"
            ],
        ),
        (
            lambda p: c0(p).update(ports=[{"containerPort": 80, "protocol": "ICMP"}]),
            [
                'spec.containers[0].ports[0].protocol: Unsupported value: "ICMP": supported values: '
                '"SCTP", "TCP", "UDP"'
            ],
        ),
        (
            lambda p: c0(p).update(volumeMounts=[{"name": "data", "mountPath": "/data"}]),
            ['spec.containers[0].volumeMounts[0].name: Not found: "data"'],
        ),
        (
            lambda p: c0(p).update(env=[{"name": "A=B", "value": "x"}]),
            [
                'spec.containers[0].env[0].name: Invalid value: "A=B": a valid environment variable name '
                "must consist "
                "only of printable ASCII characters other than '='"
            ],
        ),
        (
            lambda p: c0(p).update(resources={"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}),
            [
                'spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to '
                "cpu limit of 1"
            ],
        ),
        (
            lambda p: c0(p).update(resources={"requests": {"gpu": "1"}}),
            [
                'spec.containers[0].resources.requests[gpu]: Invalid value: "gpu": must be a standard '
                "resource type or "
                "fully qualified"
            ],
        ),
        (
            lambda p: c0(p).update(resources={"requests": {"cpu": "-1"}}),
            [
                'spec.containers[0].resources.requests[cpu]: Invalid value: "-1": must be greater than or '
                "equal to 0"
            ],
        ),
        (
            lambda p: c0(p).update(
                livenessProbe={
                    "periodSeconds": 10,
                    "timeoutSeconds": 1,
                    "successThreshold": 2,
                    "failureThreshold": 3,
                    "exec": {"command": ["true"]},
                }
            ),
            ["spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"],
        ),
        (
            lambda p: c0(p).update(
                readinessProbe={
                    "periodSeconds": 10,
                    "timeoutSeconds": 1,
                    "successThreshold": 1,
                    "failureThreshold": 3,
                }
            ),
            ["spec.containers[0].readinessProbe: Required value: must specify a handler type"],
        ),
        (
            lambda p: c0(p).update(securityContext={"privileged": True, "allowPrivilegeEscalation": False}),
            None,
        ),
        (
            lambda p: p["spec"].update(volumes=[{"name": "v", "emptyDir": {}, "hostPath": {"path": "/x"}}]),
            ["spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type"],
        ),
        (
            lambda p: p["spec"].update(
                volumes=[{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]
            ),
            ['spec.volumes[1].name: Duplicate value: "v"'],
        ),
        (
            lambda p: p["spec"].pop("terminationGracePeriodSeconds"),
            ["spec.terminationGracePeriodSeconds: Required value"],
        ),
        (
            lambda p: p["spec"].update(activeDeadlineSeconds=0),
            ["spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive"],
        ),
        (lambda p: p["metadata"].update(labels={"app": "-bad"}), None),
        (
            lambda p: p["spec"].update(tolerations=[{"key": "k", "operator": "Exists", "value": "v"}]),
            [
                'spec.tolerations[0].operator: Invalid value: "v": value must be empty when `operator` '
                "is 'Exists'"
            ],
        ),
        (
            lambda p: c0(p).update(image=" nginx"),
            [
                'spec.containers[0].image: Invalid value: " nginx": must not have leading or trailing '
                "whitespace"
            ],
        ),
        (
            lambda p: p["spec"].update(
                initContainers=[{**c0(p), "livenessProbe": {"exec": {"command": ["x"]}}}]
            ),
            [
                'spec.initContainers[0].name: Duplicate value: "c"',
                "spec.initContainers[0].livenessProbe: Forbidden: may not be set for init containers without "
                "restartPolicy=Always",
            ],
        ),
    ],
)
def test_pod_create_errors(change, expected):
    errs = validate_object("", "v1", "Pod", mutate(pod(), change))
    assert errs, "expected an error"
    if expected is not None:
        assert _msgs(errs) == expected


def test_generate_name_without_name_is_accepted():
    p = mutate(pod(), lambda p: (p["metadata"].pop("name"), p["metadata"].update(generateName="web-")))
    assert validate_object("", "v1", "Pod", p) == []
    bad = mutate(p, lambda p: p["metadata"].update(generateName="Web-"))
    assert _msgs(validate_object("", "v1", "Pod", bad))[0].startswith(
        'metadata.generateName: Invalid value: "Web-"'
    )


def test_invalid_object_summary():
    errs = validate_object("", "v1", "Pod", mutate(pod(), lambda p: c0(p).update(image="")))
    err = invalid_object("", "Pod", "web", errs)
    assert err.code == 422
    assert err.message == 'Pod "web" is invalid: spec.containers[0].image: Required value'
    assert err.details["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers[0].image"}
    ]


def _upd(old, change):
    new = mutate(old, change)
    new["metadata"]["resourceVersion"] = "2"
    return validate_update("", "v1", "Pod", new, old)


def test_pod_update_allowed_fields():
    old = pod()
    old["metadata"]["resourceVersion"] = "1"
    assert _upd(old, lambda p: c0(p).update(image="nginx:2")) == []
    assert _upd(old, lambda p: p["spec"].update(activeDeadlineSeconds=30)) == []
    assert _upd(old, lambda p: p["metadata"].update(labels={"a": "b"})) == []
    assert _upd(old, lambda p: p["spec"]["tolerations"].append({"key": "x", "operator": "Exists"})) == []


def test_pod_update_forbidden_change():
    old = pod()
    old["metadata"]["resourceVersion"] = "1"
    errs = _upd(old, lambda p: p["spec"].update(nodeName="n2"))
    assert len(errs) == 1
    msg = errs[0].message()
    assert msg.startswith(
        "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
        "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
        "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
        "previously negative)\n"
    )
    assert "nodeName" in msg


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda p: p["spec"]["containers"].append({**c0(p), "name": "d"}),
            ["spec.containers: Forbidden: pod updates may not add or remove containers"],
        ),
        (
            lambda p: p["spec"]["tolerations"].pop(),
            [
                "spec.tolerations: Forbidden: existing toleration can not be modified except its "
                "tolerationSeconds"
            ],
        ),
        (
            lambda p: p["metadata"].update(name="other"),
            ['metadata.name: Invalid value: "other": field is immutable'],
        ),
    ],
)
def test_pod_update_errors(change, expected):
    old = pod(activeDeadlineSeconds=10)
    old["metadata"]["resourceVersion"] = "1"
    assert _msgs(_upd(old, change)) == expected


def test_active_deadline_may_only_shrink():
    old = pod(activeDeadlineSeconds=10)
    old["metadata"]["resourceVersion"] = "1"
    assert _msgs(_upd(old, lambda p: p["spec"].update(activeDeadlineSeconds=20))) == [
        "spec.activeDeadlineSeconds: Invalid value: 20: must be less than or equal to previous value"
    ]


def test_update_requires_resource_version():
    old = pod()
    new = mutate(old, lambda p: None)
    assert _msgs(validate_update("", "v1", "Pod", new, old)) == [
        'metadata.resourceVersion: Invalid value: "": must be specified for an update'
    ]


def test_quantity_spelling_is_not_a_change():
    old = pod(containers=[{"name": "c", "image": "x:1", "resources": {"limits": {"cpu": "0.5"}}}])
    old["metadata"]["resourceVersion"] = "1"
    assert (
        _upd(old, lambda p: c0(p)["resources"].update(limits={"cpu": "500m"}, requests={"cpu": "500m"})) == []
    )


# -- apps ------------------------------------------------------------------------------------------


def deployment(**spec):
    d = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
            **spec,
        },
    }
    apply_defaults("apps", "v1", "Deployment", d)
    return d


@pytest.mark.parametrize("kind", ["Deployment", "ReplicaSet"])
def test_valid_workloads(kind):
    obj = deployment()
    if kind == "ReplicaSet":
        obj = {
            "metadata": obj["metadata"],
            "spec": {k: obj["spec"][k] for k in ("selector", "template", "replicas")},
        }
    assert validate_object("apps", "v1", kind, obj) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["spec"]["template"]["metadata"].update(labels={"app": "other"}),
            [
                'spec.template.metadata.labels: Invalid value: map[string]string{"app":"other"}: '
                "`selector` does not "
                "match template `labels`"
            ],
        ),
        (
            lambda d: d["spec"].pop("selector"),
            [
                "spec.selector: Required value",
                'spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: `selector` '
                "does not "
                "match template `labels`",
            ],
        ),
        (
            lambda d: d["spec"].update(selector={}),
            [
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
                "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for "
                "deployment"
            ],
        ),
        (
            lambda d: d["spec"].update(replicas=-1),
            ["spec.replicas: Invalid value: -1: must be greater than or equal to 0"],
        ),
        (
            lambda d: d["spec"]["template"]["spec"].update(restartPolicy="Never"),
            ['spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"'],
        ),
        (
            lambda d: d["spec"]["strategy"]["rollingUpdate"].update(maxUnavailable=0, maxSurge=0),
            [
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when "
                "`maxSurge` is 0"
            ],
        ),
        (
            lambda d: d["spec"]["strategy"]["rollingUpdate"].update(maxUnavailable="120%"),
            [
                'spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "120%": must not be greater '
                "than 100%"
            ],
        ),
        (
            lambda d: d["spec"].update(strategy={"type": "Recreate", "rollingUpdate": {}}),
            [
                "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is "
                "'Recreate'"
            ],
        ),
        (
            lambda d: d["spec"].update(progressDeadlineSeconds=5, minReadySeconds=10),
            ["spec.progressDeadlineSeconds: Invalid value: 5: must be greater than minReadySeconds"],
        ),
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image=""),
            ["spec.template.spec.containers[0].image: Required value"],
        ),
        (lambda d: d["spec"]["template"]["metadata"]["labels"].update({"bad key": "x"}), None),
    ],
)
def test_deployment_errors(change, expected):
    errs = validate_object("apps", "v1", "Deployment", mutate(deployment(), change))
    assert errs
    if expected is not None:
        assert _msgs(errs) == expected


def test_deployment_selector_immutable():
    old = deployment()
    old["metadata"]["resourceVersion"] = "1"
    new = mutate(
        old,
        lambda d: (
            d["spec"].update(selector={"matchLabels": {"app": "web2"}}),
            d["spec"]["template"]["metadata"].update(labels={"app": "web2"}),
        ),
    )
    new["metadata"]["resourceVersion"] = "1"
    assert _msgs(validate_update("apps", "v1", "Deployment", new, old)) == [
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web2"}, '
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
    ]
    scaled = mutate(old, lambda d: d["spec"].update(replicas=5))
    assert validate_update("apps", "v1", "Deployment", scaled, old) == []


# -- config and other kinds -----------------------------------------------------------------------


def _meta(name="x", ns="default"):
    m = {"name": name}
    if ns:
        m["namespace"] = ns
    return m


@pytest.mark.parametrize(
    ("group", "kind", "obj", "expected"),
    [
        ("", "ConfigMap", {"metadata": _meta(), "data": {"ok.key": "v"}}, []),
        (
            "",
            "ConfigMap",
            {"metadata": _meta(), "data": {"bad/key": "v"}},
            [
                'data[bad/key]: Invalid value: "bad/key": a valid config key must consist of alphanumeric '
                "characters, "
                "'-', '_' or '.' (e.g. 'key.name' or 'KEY_NAME' or 'key-name', regex used for validation is "
                "'[-._a-zA-Z0-9]+')"
            ],
        ),
        (
            "",
            "ConfigMap",
            {"metadata": _meta(), "data": {"a": "x" * (1024 * 1024 + 1)}},
            [": Too long: may not be more than 1048576 bytes"],
        ),
        (
            "",
            "ConfigMap",
            {"metadata": _meta(), "data": {"a": "x"}, "binaryData": {"a": "eA=="}},
            ['data[a]: Invalid value: "a": duplicate of key present in binaryData'],
        ),
        ("", "Secret", {"metadata": _meta(), "type": "Opaque", "data": {"a": "eA=="}}, []),
        (
            "",
            "Secret",
            {"metadata": _meta(), "type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}},
            ["data[tls.key]: Required value"],
        ),
        (
            "",
            "Secret",
            {"metadata": _meta(), "type": "kubernetes.io/dockerconfigjson", "data": {}},
            ["data[.dockerconfigjson]: Required value"],
        ),
        (
            "",
            "Secret",
            {"metadata": _meta(), "type": "kubernetes.io/service-account-token"},
            ["metadata.annotations[kubernetes.io/service-account.name]: Required value"],
        ),
        ("", "Namespace", {"metadata": _meta("team-a", None), "spec": {"finalizers": ["kubernetes"]}}, []),
        (
            "",
            "Namespace",
            {"metadata": _meta("a.b", None)},
            ['metadata.name: Invalid value: "a.b": must not contain dots'],
        ),
        (
            "",
            "Namespace",
            {"metadata": _meta("a", None), "spec": {"finalizers": ["foo"]}},
            [
                'spec.finalizers: Invalid value: "foo": name is neither a standard finalizer name nor is '
                "it fully "
                "qualified"
            ],
        ),
        (
            "",
            "Node",
            {
                "metadata": _meta("node-1", None),
                "spec": {
                    "taints": [{"key": "k", "effect": "NoSchedule"}, {"key": "k", "effect": "NoSchedule"}]
                },
            },
            ["spec.taints[1]: Duplicate value: k:NoSchedule: taints must be unique by key and effect pair"],
        ),
        (
            "",
            "Node",
            {"metadata": _meta("node-1", None), "spec": {"taints": [{"key": "k", "effect": "Bad"}]}},
            [
                'spec.taints[0].effect: Unsupported value: "Bad": supported values: "NoSchedule", '
                '"PreferNoSchedule", "NoExecute"'
            ],
        ),
        ("", "ServiceAccount", {"metadata": _meta("default")}, []),
        (
            "coordination.k8s.io",
            "Lease",
            {"metadata": _meta("l"), "spec": {"leaseDurationSeconds": 0}},
            ["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"],
        ),
        (
            "",
            "Event",
            {"metadata": _meta("p.1"), "involvedObject": {"kind": "Pod", "namespace": "default"}},
            [],
        ),
        (
            "",
            "Event",
            {"metadata": _meta("p.1"), "involvedObject": {"kind": "Pod", "namespace": "other"}},
            ['involvedObject.namespace: Invalid value: "other": does not match event.namespace'],
        ),
        (
            "events.k8s.io",
            "Event",
            {
                "metadata": _meta("p.1"),
                "regarding": {"namespace": "default"},
                "eventTime": "2024-01-01T00:00:00.000000Z",
                "reportingController": "c/x",
                "reportingInstance": "i",
                "action": "A",
                "reason": "R",
                "type": "Normal",
            },
            [],
        ),
        (
            "events.k8s.io",
            "Event",
            {
                "metadata": _meta("p.1"),
                "regarding": {"namespace": "default"},
                "eventTime": "2024-01-01T00:00:00.000000Z",
                "reportingController": "c/x",
                "reportingInstance": "i",
                "action": "A",
                "reason": "R",
                "type": "Info",
            },
            ['type: Invalid value: "": has invalid value: Info'],
        ),
        ("", "Frobnicator", {"metadata": _meta("ok")}, []),
    ],
)
def test_other_kinds(group, kind, obj, expected):
    apply_defaults(group, "v1", kind, obj)
    assert _msgs(validate_object(group, "v1", kind, obj)) == expected


@pytest.mark.parametrize("kind", ["ConfigMap", "Secret"])
def test_immutable_config(kind):
    old = {"metadata": {**_meta(), "resourceVersion": "1"}, "data": {"a": "eA=="}, "immutable": True}
    apply_defaults("", "v1", kind, old)
    new = mutate(old, lambda o: o.update(data={"a": "eQ=="}))
    assert _msgs(validate_update("", "v1", kind, new, old)) == [
        "data: Forbidden: field is immutable when `immutable` is set"
    ]
    thawed = mutate(old, lambda o: o.update(immutable=False))
    assert _msgs(validate_update("", "v1", kind, thawed, old)) == [
        "immutable: Forbidden: field is immutable when `immutable` is set"
    ]
    mutable = mutate(old, lambda o: o.pop("immutable"))
    changed = mutate(mutable, lambda o: o.update(data={"a": "eQ=="}))
    assert validate_update("", "v1", kind, changed, mutable) == []


def test_secret_type_immutable():
    old = {"metadata": {**_meta(), "resourceVersion": "1"}, "type": "Opaque"}
    new = mutate(old, lambda o: o.update(type="kubernetes.io/basic-auth", data={"username": "eA=="}))
    assert _msgs(validate_update("", "v1", "Secret", new, old)) == [
        'type: Invalid value: "kubernetes.io/basic-auth": field is immutable'
    ]


def test_finalizers_cannot_be_added_while_deleting():
    old = {
        "metadata": {
            **_meta(),
            "resourceVersion": "1",
            "deletionTimestamp": "2024-01-01T00:00:00Z",
            "finalizers": ["a.io/x"],
        }
    }
    new = mutate(old, lambda o: o["metadata"].update(finalizers=["a.io/x", "b.io/y"]))
    assert _msgs(validate_update("", "v1", "ConfigMap", new, old)) == [
        "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, "
        'found new finalizers []string{"b.io/y"}'
    ]


def test_unstored_kinds_skip_metadata_rules():
    assert validate_object("authorization.k8s.io", "v1", "SelfSubjectAccessReview", {"spec": {}}) == []
    assert _msgs(validate_object("", "v1", "Frobnicator", {"metadata": {}})) == [
        "metadata.name: Required value: name or generateName is required",
        "metadata.namespace: Required value",
    ]
