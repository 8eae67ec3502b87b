"""JSON patch (RFC 6902) as kube-apiserver answers it."""

import pytest

from peapod.api.errors import ApiError
from peapod.api.patch import apply_json_patch

POD = {"metadata": {"name": "p", "labels": {"a": "1"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}


@pytest.mark.parametrize(
    ("ops", "expected"),
    [
        ([{"op": "add", "path": "/metadata/labels/b", "value": "2"}], {"a": "1", "b": "2"}),
        ([{"op": "remove", "path": "/metadata/labels/a"}], {}),
        ([{"op": "replace", "path": "/metadata/labels/a", "value": "9"}], {"a": "9"}),
        # evanphx/json-patch v4: replace of a missing object member adds it
        ([{"op": "replace", "path": "/metadata/labels/new", "value": "n"}], {"a": "1", "new": "n"}),
        ([{"op": "test", "path": "/metadata/labels/a", "value": "1"}], {"a": "1"}),
        ([{"op": "test", "path": "/metadata/labels/zz", "value": None}], {"a": "1"}),
        ([{"op": "copy", "from": "/metadata/labels/a", "path": "/metadata/labels/c"}], {"a": "1", "c": "1"}),
        ([{"op": "move", "from": "/metadata/labels/a", "path": "/metadata/labels/m"}], {"m": "1"}),
    ],
)
def test_operations(ops, expected):
    out = apply_json_patch(POD, ops)
    assert out["metadata"]["labels"] == expected
    assert POD["metadata"]["labels"] == {"a": "1"}  # input untouched


def test_rollout_undo_shape_from_bytes():
    body = (
        b'[{"op":"replace","path":"/spec/template","value":{"spec":{"containers":[{"name":"c","image":"old"}]}}},'
        b'{"op":"replace","path":"/metadata/annotations","value":{"deployment.kubernetes.io/revision":"1"}}]'
    )
    out = apply_json_patch(POD, body)
    assert out["spec"]["template"]["spec"]["containers"][0]["image"] == "old"
    assert out["metadata"]["annotations"] == {"deployment.kubernetes.io/revision": "1"}


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "remove", "path": "/metadata/labels/missing"}],
        [{"op": "test", "path": "/metadata/labels/a", "value": "2"}],
        [{"op": "add", "path": "/no/such/parent", "value": 1}],
        [{"op": "frobnicate", "path": "/a"}],
        [{"path": "/a"}],
        [None],
        [{"op": "replace", "path": "/spec/containers/5", "value": {}}],
    ],
)
def test_failing_operation_is_generic_422(ops):
    with pytest.raises(ApiError) as e:
        apply_json_patch(POD, ops)
    assert e.value.code == 422
    assert e.value.reason == "Invalid"
    assert e.value.message == "the server rejected our request due to an error in our request"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"op":"add"}', "json: cannot unmarshal object into Go value of type jsonpatch.Patch"),
        (b"[1]", "json: cannot unmarshal number into Go value of type jsonpatch.Operation"),
        (b"[{", None),
    ],
)
def test_undecodable_patch_is_400(body, message):
    with pytest.raises(ApiError) as e:
        apply_json_patch(POD, body)
    assert e.value.code == 400
    assert e.value.reason == "BadRequest"
    if message:
        assert e.value.message == message


def test_too_many_operations_is_413():
    ops = [{"op": "test", "path": "/metadata/name", "value": "p"}] * 10001
    with pytest.raises(ApiError) as e:
        apply_json_patch(POD, ops)
    assert e.value.code == 413
    assert "got 10001" in e.value.message


def test_atomic_on_failure():
    ops = [{"op": "add", "path": "/metadata/labels/b", "value": "2"}, {"op": "remove", "path": "/nope"}]
    with pytest.raises(ApiError):
        apply_json_patch(POD, ops)
    assert POD["metadata"]["labels"] == {"a": "1"}
