"""jsoncodec.clone: a deep copy of JSON values, and the request decoder that keeps values clonable."""

from __future__ import annotations

import pytest

from peapod.api import errors, jsoncodec
from peapod.apiserver.negotiation import parse_json


def test_clone_is_deep_and_equal() -> None:
    obj = {"a": [1, {"b": "c"}], "d": {"e": None, "f": 1.5, "g": True}, "big": 2**70}
    out = jsoncodec.clone(obj)
    assert out == obj
    out["a"][1]["b"] = "changed"
    out["d"]["e"] = 1
    assert obj["a"][1]["b"] == "c" and obj["d"]["e"] is None


def test_request_numbers_beyond_float64_are_refused() -> None:
    # the clone of such a value would not round-trip, so the decoder refuses it, as Go's does
    with pytest.raises(errors.ApiError) as e:
        parse_json(b'{"spec": {"x": 1e400}}')
    assert e.value.code == 400 and "out of range" in e.value.message
    assert parse_json(b'{"x": 1.5e300}').value == {"x": 1.5e300}
