import pytest

from peapod.api.errors import ApiError
from peapod.api.selectors import (
    check_field_selector,
    field_set,
    label_selector_from_api,
    parse_field_selector,
    parse_label_selector,
    selector_matches,
)


@pytest.mark.parametrize(
    ("text", "labels", "match"),
    [
        ("", {"a": "b"}, True),
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "web"}, True),
        ("app=web", {"app": "db"}, False),
        ("app!=web", {}, True),
        ("app!=web", {"app": "web"}, False),
        ("tier in (a,b)", {"tier": "b"}, True),
        ("tier in (a,b)", {}, False),
        ("tier notin (a,b)", {}, True),
        ("tier notin (a,b)", {"tier": "a"}, False),
        ("canary", {"canary": ""}, True),
        ("canary", {}, False),
        ("!canary", {}, True),
        ("!canary", {"canary": "x"}, False),
        ("app=web,!canary", {"app": "web"}, True),
        ("app=web, tier in (a)", {"app": "web", "tier": "c"}, False),
        ("n>3", {"n": "4"}, True),
        ("n<3", {"n": "4"}, False),
        ("app=", {"app": ""}, True),
    ],
)
def test_label_selector_matches(text, labels, match):
    assert parse_label_selector(text).matches(labels) is match


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("b=2,a=1", "a=1,b=2"),
        ("x in (c, a ,b)", "x in (a,b,c)"),
        ("!a,b", "!a,b"),
        ("a==1", "a==1"),
        ("x notin (1)", "x notin (1)"),
    ],
)
def test_label_selector_str(text, canonical):
    assert str(parse_label_selector(text)) == canonical


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        ("a in a", "unable to parse requirement: found 'a' expected: '('"),
        ("a in (a", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("a b", "unable to parse requirement: found 'b', expected: '=', '!=', '==', 'in', notin'"),
        (",a", "found ',', expected: !, identifier, or 'end of string'"),
        ("a,", "found '', expected: identifier after ','"),
        (
            "a=-b",
            'unable to parse requirement: values[0][a]: Invalid value: "-b": a valid label must be an empty '
            "string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
            "alphanumeric character (e.g. 'MyValue' or 'my_value' or '12345', regex used for validation is "
            "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        ),
    ],
)
def test_label_selector_errors(text, message):
    with pytest.raises(ApiError) as exc:
        parse_label_selector(text)
    assert exc.value.code == 400 and exc.value.reason == "BadRequest"
    assert exc.value.message == message


@pytest.mark.parametrize(
    ("sel", "labels", "match"),
    [
        (None, {"a": "b"}, False),
        ({}, {"a": "b"}, True),
        ({"matchLabels": {"app": "web"}}, {"app": "web", "x": "y"}, True),
        ({"matchLabels": {"app": "web"}}, {"app": "db"}, False),
        ({"matchExpressions": [{"key": "t", "operator": "In", "values": ["a"]}]}, {"t": "a"}, True),
        ({"matchExpressions": [{"key": "t", "operator": "NotIn", "values": ["a"]}]}, {"t": "a"}, False),
        ({"matchExpressions": [{"key": "t", "operator": "Exists"}]}, {"t": ""}, True),
        ({"matchExpressions": [{"key": "t", "operator": "DoesNotExist"}]}, {"t": ""}, False),
        ({"matchExpressions": [{"key": "t", "operator": "Bogus"}]}, {"t": ""}, False),
    ],
)
def test_label_selector_from_api(sel, labels, match):
    assert selector_matches(sel, labels) is match


def test_label_selector_from_api_invalid_raises():
    with pytest.raises(ValueError, match="not a valid label selector operator"):
        label_selector_from_api({"matchExpressions": [{"key": "t", "operator": "Bogus"}]})
    assert str(label_selector_from_api({"matchLabels": {"b": "2", "a": "1"}})) == "a=1,b=2"


@pytest.mark.parametrize(
    ("text", "fields", "match"),
    [
        ("", {"metadata.name": "x"}, True),
        ("metadata.name=x", {"metadata.name": "x"}, True),
        ("metadata.name==x", {"metadata.name": "x"}, True),
        ("metadata.name!=x", {"metadata.name": "x"}, False),
        ("spec.nodeName=", {"spec.nodeName": ""}, True),
        ("spec.nodeName!=", {"spec.nodeName": ""}, False),
        ("a=1,b=2", {"a": "1", "b": "2"}, True),
        ("a=1,b=2", {"a": "1", "b": "3"}, False),
        (r"a=x\,y", {"a": "x,y"}, True),
        (r"a=x\=y\\", {"a": "x=y\\"}, True),
    ],
)
def test_field_selector(text, fields, match):
    assert parse_field_selector(text).matches(fields) is match


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a", "invalid selector: 'a'; can't understand 'a'"),
        ("a=1,b", "invalid selector: 'a=1,b'; can't understand 'b'"),
        (r"a=\x", "invalid field selector: invalid escape sequence: \\x"),
        ("a=b=c", "invalid field selector: unescaped character in value: 61"),
    ],
)
def test_field_selector_errors(text, message):
    with pytest.raises(ApiError) as exc:
        parse_field_selector(text)
    assert exc.value.code == 400 and exc.value.message == message


def test_field_selector_str_and_requirements():
    sel = parse_field_selector(r"spec.nodeName=n1,metadata.name!=a\,b")
    assert str(sel) == r"metadata.name!=a\,b,spec.nodeName=n1"
    assert [(r.field, r.operator, r.value) for r in sel.requirements] == [
        ("metadata.name", "!=", "a,b"),
        ("spec.nodeName", "=", "n1"),
    ]
    assert sel.value_for("spec.nodeName") == "n1"


def test_pod_field_set():
    pod = {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {
            "nodeName": "n1",
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "serviceAccountName": "default",
        },
        "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}]},
    }
    assert field_set("", "pods", pod) == {
        "metadata.name": "p",
        "metadata.namespace": "ns",
        "spec.nodeName": "n1",
        "spec.restartPolicy": "Always",
        "spec.schedulerName": "default-scheduler",
        "spec.serviceAccountName": "default",
        "spec.hostNetwork": "false",
        "status.phase": "Running",
        "status.podIP": "10.0.0.5",
        "status.nominatedNodeName": "",
    }


@pytest.mark.parametrize(
    ("group", "resource", "obj", "expected"),
    [
        ("", "secrets", {"metadata": {"name": "s", "namespace": "d"}, "type": "Opaque"}, {"type": "Opaque"}),
        (
            "",
            "nodes",
            {"metadata": {"name": "n"}, "spec": {"unschedulable": True}},
            {"spec.unschedulable": "true"},
        ),
        (
            "",
            "namespaces",
            {"metadata": {"name": "d"}, "status": {"phase": "Active"}},
            {"status.phase": "Active"},
        ),
        (
            "apps",
            "replicasets",
            {"metadata": {"name": "r", "namespace": "d"}, "status": {"replicas": 3}},
            {"status.replicas": "3"},
        ),
        (
            "",
            "events",
            {
                "metadata": {"name": "e", "namespace": "d"},
                "involvedObject": {"kind": "Pod", "name": "p"},
                "reason": "Started",
                "source": {"component": "kubelet"},
                "type": "Normal",
            },
            {
                "involvedObject.kind": "Pod",
                "involvedObject.name": "p",
                "reason": "Started",
                "source": "kubelet",
            },
        ),
        (
            "events.k8s.io",
            "events",
            {
                "metadata": {"name": "e", "namespace": "d"},
                "regarding": {"uid": "u1"},
                "reportingController": "ctl",
            },
            {"involvedObject.uid": "u1", "reportingComponent": "ctl", "source": "ctl"},
        ),
    ],
)
def test_other_field_sets(group, resource, obj, expected):
    fs = field_set(group, resource, obj)
    assert fs["metadata.name"] == obj["metadata"]["name"]
    for k, v in expected.items():
        assert fs[k] == v


@pytest.mark.parametrize(
    ("group", "resource", "text", "message"),
    [
        ("", "pods", "foo=bar", "field label not supported: foo"),
        ("", "events", "involvedObject.foo=x", "field label not supported: involvedObject.foo"),
        (
            "",
            "configmaps",
            "data.x=y",
            '"data.x" is not a known field selector: only "metadata.name", "metadata.namespace"',
        ),
        (
            "apps",
            "deployments",
            "status.replicas=1",
            '"status.replicas" is not a known field selector: only "metadata.name", "metadata.namespace"',
        ),
        ("", "nodes", "metadata.namespace=x", "field label not supported: metadata.namespace"),
    ],
)
def test_check_field_selector_rejects(group, resource, text, message):
    with pytest.raises(ApiError) as exc:
        check_field_selector(group, resource, parse_field_selector(text))
    assert exc.value.code == 400 and exc.value.reason == "BadRequest" and exc.value.message == message


def test_check_field_selector_converts_labels():
    sel = check_field_selector(
        "events.k8s.io", "events", parse_field_selector("regarding.name=p,reportingController=k")
    )
    obj = {
        "metadata": {"name": "e", "namespace": "d"},
        "regarding": {"name": "p"},
        "reportingController": "k",
    }
    assert sel.matches(field_set("events.k8s.io", "events", obj))
    pod_sel = check_field_selector("", "pods", parse_field_selector("spec.host=n1"))
    assert str(pod_sel) == "spec.nodeName=n1"
    ok = check_field_selector("", "pods", parse_field_selector("status.phase=Running,metadata.name=p"))
    assert len(ok.requirements) == 2
