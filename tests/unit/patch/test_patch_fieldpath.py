"""Field paths, sets and the fieldsV1 encoding."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peapod.api.patch import fieldpath as fp
from peapod.api.patch import typeinfo

CONTAINER = fp.key({"name": "c"})
PORT = fp.key({"protocol": "TCP", "containerPort": 80})


def test_fields_v1_shape():
    fields = {
        fp.make_path("metadata", "labels", "app"),
        fp.make_path("spec", "replicas"),
        (*fp.make_path("spec", "containers"), CONTAINER),
        (*fp.make_path("spec", "containers"), CONTAINER, fp.field("image")),
        (*fp.make_path("metadata", "finalizers"), fp.value("x")),
    }
    assert fp.to_fields_v1(fields) == {
        "f:metadata": {"f:finalizers": {'v:"x"': {}}, "f:labels": {"f:app": {}}},
        "f:spec": {"f:containers": {'k:{"name":"c"}': {".": {}, "f:image": {}}}, "f:replicas": {}},
    }
    assert list(fp.to_fields_v1(fields)["f:spec"]) == ["f:containers", "f:replicas"]
    assert fp.from_fields_v1(fp.to_fields_v1(fields)) == fields


@pytest.mark.parametrize(
    ("path", "text"),
    [
        (fp.make_path("spec", "replicas"), ".spec.replicas"),
        (
            (fp.field("spec"), fp.field("containers"), CONTAINER, fp.field("image")),
            '.spec.containers[name="c"].image',
        ),
        ((fp.field("ports"), PORT), '.ports[containerPort=80,protocol="TCP"]'),
        ((fp.field("finalizers"), fp.value("a")), '.finalizers[="a"]'),
        ((fp.field("l"), fp.index(3)), ".l[3]"),
    ],
)
def test_path_string(path, text):
    assert fp.path_string(path) == text


def test_key_json_is_sorted_and_html_escaped():
    assert PORT == ("k", '{"containerPort":80,"protocol":"TCP"}')
    assert fp.value("<a&b>") == ("v", '"\\u003ca\\u0026b\\u003e"')


@pytest.mark.parametrize("bad", [{"x:y": {}}, {"f:a": 1}, {"k:{": {}}, {"i:z": {}}, []])
def test_malformed_fields_v1(bad):
    with pytest.raises(ValueError):
        fp.from_fields_v1(bad)


def test_recursive_difference_and_named_members():
    t = typeinfo.root("apps", "v1", "Deployment")
    s = frozenset(
        {fp.make_path("spec", "template", "metadata", "labels", "app"), fp.make_path("status", "x")}
    )
    assert fp.recursive_difference(s, [fp.make_path("status")]) == {
        s_ for s_ in s if s_[0] != ("f", "status")
    }
    named = fp.ensure_named_fields_are_members(s, t)
    assert fp.make_path("spec", "template", "metadata", "labels") in named  # a declared field
    assert fp.make_path("spec") in named


elements = st.one_of(
    st.builds(fp.field, st.text(min_size=1, max_size=4)),
    st.builds(
        fp.key,
        st.dictionaries(st.sampled_from(["name", "port"]), st.one_of(st.integers(), st.text()), min_size=1),
    ),
    st.builds(fp.value, st.one_of(st.integers(), st.text(max_size=4), st.booleans())),
    st.builds(fp.index, st.integers(min_value=0, max_value=9)),
)


@given(st.frozensets(st.lists(elements, min_size=1, max_size=4).map(tuple), max_size=8))
def test_fields_v1_round_trip(fields):
    assert fp.from_fields_v1(fp.to_fields_v1(fields)) == fields
