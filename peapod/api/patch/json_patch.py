"""RFC 6902 JSON patch (``application/json-patch+json``) as kube-apiserver applies it.

kube-apiserver uses evanphx/json-patch v4: a body that does not decode as a list of operations
is 400 BadRequest, more than 10000 operations is 413, and any operation that fails to apply is
a generic 422 Invalid. Two v4 quirks are kept because clients rely on them: ``replace`` of a
missing object member adds it, and ``test`` of a missing member against null succeeds.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import jsonpointer

from peapod.api.errors import ApiError
from peapod.api.patch.errors import bad_request, unprocessable

MAX_OPERATIONS = 10000

_GO_KIND = {dict: "object", list: "array", str: "string", bool: "bool", int: "number", float: "number"}


def _go_kind(v: Any) -> str:
    return _GO_KIND.get(type(v), "null")


def decode_json_patch(patch: bytes | str | list[Any] | None) -> list[Any]:
    """The list of operations, or 400 as ``jsonpatch.DecodePatch`` fails."""
    if isinstance(patch, bytes | str):
        try:
            patch = json.loads(patch)
        except ValueError as e:
            raise bad_request(f"invalid JSON patch document: {e}") from None
    if patch is None:
        return []
    if not isinstance(patch, list):
        raise bad_request(f"json: cannot unmarshal {_go_kind(patch)} into Go value of type jsonpatch.Patch")
    for op in patch:
        if op is not None and not isinstance(op, dict):
            raise bad_request(
                f"json: cannot unmarshal {_go_kind(op)} into Go value of type jsonpatch.Operation"
            )
    return patch


def _missing_member(doc: Any, path: Any) -> bool:
    """True when ``path`` names a member that is absent from an existing object."""
    if not isinstance(path, str) or path == "":
        return False
    try:
        parent, part = jsonpointer.JsonPointer(path).to_last(doc)
    except (jsonpointer.JsonPointerException, TypeError, KeyError, IndexError):
        return False
    return isinstance(parent, dict) and part not in parent


def _apply_one(doc: Any, op: Any) -> Any:
    if not isinstance(op, dict):
        raise ValueError("Unexpected kind: unknown")
    kind = op.get("op")
    if kind == "replace" and _missing_member(doc, op.get("path")):
        op = {**op, "op": "add"}
    if kind == "test" and op.get("value") is None and _missing_member(doc, op.get("path")):
        return doc
    return jsonpatch.JsonPatch([op]).apply(doc, in_place=True)


def apply_json_patch(obj: dict[str, Any], patch: bytes | str | list[Any]) -> dict[str, Any]:
    """Apply an RFC 6902 patch to a copy of ``obj``; raises ApiError (400/413/422)."""
    ops = decode_json_patch(patch)
    if len(ops) > MAX_OPERATIONS:
        raise ApiError(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: The allowed maximum operations in a JSON patch is "
            f"{MAX_OPERATIONS}, got {len(ops)}",
        )
    doc: Any = copy.deepcopy(obj)
    for op in ops:
        try:
            doc = _apply_one(doc, op)
        except ApiError:
            raise
        except Exception:  # any failing operation is a 422, as evanphx errors are
            raise unprocessable() from None
    if not isinstance(doc, dict):
        raise unprocessable()
    return doc
