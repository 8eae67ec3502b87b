"""RFC 7386 JSON merge patch (``application/merge-patch+json``): objects merge, null deletes."""

from __future__ import annotations

import copy
import json
from typing import Any

from peapod.api.patch.errors import bad_request

_BAD_PATCH = "Invalid JSON Patch"  # evanphx/json-patch ErrBadJSONPatch, answered as 400


def merge(target: Any, patch: Any) -> Any:
    """The RFC 7386 MergePatch function; never mutates its arguments."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge(out.get(k), v)
    return out


def apply_merge_patch(obj: dict[str, Any], patch: dict[str, Any] | bytes | str) -> dict[str, Any]:
    """Apply a merge patch to ``obj``; a patch that is not a JSON object is 400 BadRequest."""
    if isinstance(patch, bytes | str):
        try:
            patch = json.loads(patch)
        except ValueError:
            raise bad_request(_BAD_PATCH) from None
    if not isinstance(patch, dict):
        raise bad_request(_BAD_PATCH)
    return merge(obj, patch)


def create_merge_patch(original: Any, modified: Any) -> Any:
    """A merge patch turning ``original`` into ``modified`` (what ``kubectl label`` computes)."""
    if not isinstance(original, dict) or not isinstance(modified, dict):
        return copy.deepcopy(modified)
    out: dict[str, Any] = {}
    for k in original:
        if k not in modified:
            out[k] = None
    for k, v in modified.items():
        if k not in original:
            out[k] = copy.deepcopy(v)
        elif original[k] != v or type(original[k]) is not type(v):
            if isinstance(original[k], dict) and isinstance(v, dict):
                out[k] = create_merge_patch(original[k], v)
            else:
                out[k] = copy.deepcopy(v)
    return out
