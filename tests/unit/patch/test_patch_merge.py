"""JSON merge patch (RFC 7386)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peapod.api.errors import ApiError
from peapod.api.patch import apply_merge_patch, create_merge_patch


@pytest.mark.parametrize(
    ("obj", "patch", "expected"),
    [
        ({"a": 1}, {"b": 2}, {"a": 1, "b": 2}),
        ({"a": 1, "b": 2}, {"a": None}, {"b": 2}),
        ({"m": {"x": 1, "y": 2}}, {"m": {"x": None, "z": 3}}, {"m": {"y": 2, "z": 3}}),
        ({"l": [1, 2, 3]}, {"l": [4]}, {"l": [4]}),
        ({"a": "s"}, {"a": {"b": None, "c": 1}}, {"a": {"c": 1}}),
        # kubectl label: metadata.labels merge
        (
            {"metadata": {"name": "p", "labels": {"app": "x"}}},
            {"metadata": {"labels": {"tier": "web", "app": None}}},
            {"metadata": {"name": "p", "labels": {"tier": "web"}}},
        ),
    ],
)
def test_merge_patch(obj, patch, expected):
    assert apply_merge_patch(obj, patch) == expected


def test_bytes_and_bad_documents():
    assert apply_merge_patch({"a": 1}, b'{"a":2}') == {"a": 2}
    for bad in (b"null", b"[1]", b"5", b"{", [1]):
        with pytest.raises(ApiError) as e:
            apply_merge_patch({"a": 1}, bad)
        assert e.value.code == 400
        assert e.value.message == "Invalid JSON Patch"


json_scalars = st.one_of(st.booleans(), st.integers(), st.text(max_size=5))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=3), json_values, max_size=5)


@given(json_objects, json_objects)
def test_patch_of_diff_reproduces_target(original, modified):
    patch = create_merge_patch(original, modified)
    assert apply_merge_patch(original, patch) == modified
