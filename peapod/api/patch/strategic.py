"""Strategic merge patch (``application/strategic-merge-patch+json``).

A port of the apply side of k8s.io/apimachinery/pkg/util/strategicpatch (``StrategicMergeMapPatch``
with MergeParallelList and IgnoreUnmatchedNulls), with the patch metadata read from the upstream
schema instead of Go struct tags:

- maps merge key by key, ``null`` deletes a key; ``$patch: replace`` / ``$patch: delete`` in a map;
- lists whose field has strategy ``merge`` merge: maps by their merge key (``$patch: delete`` /
  ``$patch: replace`` elements), primitives by union (``$deleteFromPrimitiveList/<field>``);
  every other list is replaced;
- ``$setElementOrder/<field>`` orders a merged list, ``$retainKeys`` (strategy ``retainKeys``)
  clears the keys it does not list.

Errors are answered as kube-apiserver does: the mergepatch format errors are 400, lists of lists
422, and any other failure a 500 carrying the Go error text.
"""

from __future__ import annotations

import copy
from typing import Any

from peapod.api.errors import ApiError
from peapod.api.patch import typeinfo
from peapod.api.patch.errors import bad_request, unknown, unprocessable
from peapod.api.patch.typeinfo import Type

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ELEMENT_ORDER = "$setElementOrder"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList"

ERR_BAD_JSON_DOC = "invalid JSON document"
ERR_PRIMITIVE_LIST = "invalid patch format of primitive list"
ERR_RETAIN_KEYS = "invalid patch format of retainKeys"
ERR_SET_ELEMENT_ORDER = "invalid patch format of setElementOrder list"
ERR_LIST_OF_LISTS = "lists of lists are not supported"


class _Fail(Exception):
    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


def _bad(message: str) -> _Fail:
    return _Fail(bad_request(message))


def _go(message: str) -> _Fail:
    return _Fail(unknown(message))


def _go_repr(v: Any) -> str:
    """Roughly Go's %v of decoded JSON, for error texts."""
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_go_repr(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list):
        return "[" + " ".join(_go_repr(x) for x in v) + "]"
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _go_type(v: Any) -> str:
    if isinstance(v, dict):
        return "map[string]interface {}"
    if isinstance(v, list):
        return "[]interface {}"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int64"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    return "<nil>"


def _no_merge_key(m: dict[str, Any], key: str) -> _Fail:
    return _go(f"map: {_go_repr(m)} does not contain declared merge key: {key}")


def _bad_arg_type(expected: str, actual: Any) -> _Fail:
    return _go(f"expected a {expected}, but received a {_go_type(actual)}")


def _bad_patch_type(directive: Any, m: dict[str, Any]) -> _Fail:
    return _go(f"unknown patch type: {_go_repr(directive)} in map: {_go_repr(m)}")


def _eq(a: Any, b: Any) -> bool:
    """Go's interface equality on decoded JSON scalars (a bool never equals a number)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return False
    return a == b


def _kind(v: Any) -> str:
    if isinstance(v, dict):
        return "map"
    if isinstance(v, list):
        return "slice"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    return "nil"


def apply_strategic_merge_patch(
    obj: dict[str, Any], patch: dict[str, Any], group: str, version: str, kind: str
) -> dict[str, Any]:
    """Apply a strategic merge patch to a copy of ``obj`` using the kind's patch metadata.

    Kinds without a schema merge maps and replace lists (like a merge patch, with directives).
    """
    if not isinstance(patch, dict):
        raise bad_request(ERR_BAD_JSON_DOC)
    try:
        out = _merge_map(copy.deepcopy(obj), copy.deepcopy(patch), typeinfo.root(group, version, kind))
    except _Fail as f:
        raise f.error from None
    except RecursionError:
        raise bad_request("patch is nested too deeply") from None
    return out


# -- maps ---------------------------------------------------------------------------------------


def _merge_map(original: dict[str, Any] | None, patch: dict[str, Any], t: Type) -> dict[str, Any]:
    if DIRECTIVE in patch:
        return _map_directive(patch[DIRECTIVE], patch)
    if original is None:
        original = {}
    _apply_retain_keys(original, patch)
    _merge_set_element_order(original, patch, t)
    for key, pv in list(patch.items()):
        is_delete_list = False
        k = key
        if key.startswith(DELETE_FROM_PRIMITIVE_LIST):
            k = _extract_key(key, DELETE_FROM_PRIMITIVE_LIST)
            is_delete_list = True
        if pv is None:
            original.pop(k, None)
            continue
        ft = typeinfo.field(t, k)
        if k not in original:
            if not is_delete_list:  # deleting from a list that is not there is a no-op
                original[k] = _fresh(pv, ft)
            continue
        ov = original[k]
        if _kind(ov) != _kind(pv) or _kind(ov) not in ("map", "slice"):
            original[k] = _fresh(pv, ft)
            continue
        strategies, merge_key = typeinfo.patch_meta(ft)
        strategy = _strategy(strategies)
        if isinstance(ov, dict):
            original[k] = _merge_map(ov, pv, ft) if strategy != "replace" else _strip(pv)
        else:
            original[k] = _merge_slice_handler(ov, pv, ft, strategy, merge_key, is_delete_list)
    return original


def _strategy(strategies: list[str]) -> str:
    rest = [s for s in strategies if s != "retainKeys"]
    if len(rest) > 1 or len(strategies) > 2:
        raise _go(f"unexpected patch strategy: {strategies}")
    return rest[0] if rest else ""


def _map_directive(directive: Any, patch: dict[str, Any]) -> dict[str, Any]:
    if directive == "replace":
        return _strip({k: v for k, v in patch.items() if k != DIRECTIVE})
    if directive == "delete":
        return {}
    raise _bad_patch_type(directive, patch)


def _extract_key(s: str, prefix: str) -> str:
    parts = s.split("/", 1)
    if len(parts) <= 1 or parts[0] != prefix:
        raise _bad(ERR_PRIMITIVE_LIST if prefix == DELETE_FROM_PRIMITIVE_LIST else ERR_SET_ELEMENT_ORDER)
    return parts[1]


def _apply_retain_keys(original: dict[str, Any], patch: dict[str, Any]) -> None:
    if RETAIN_KEYS not in patch:
        return
    retain = patch.pop(RETAIN_KEYS)
    if not isinstance(retain, list):
        raise _bad(ERR_RETAIN_KEYS)
    keep = {k for k in retain if isinstance(k, str)}
    for k, v in patch.items():
        if v is None or k.startswith(DELETE_FROM_PRIMITIVE_LIST) or k.startswith(SET_ELEMENT_ORDER):
            continue
        if k not in keep:
            raise _bad(ERR_RETAIN_KEYS)
    for k in list(original):
        if k not in keep:
            del original[k]


def _fresh(value: Any, t: Type) -> Any:
    """A patch value for a key the original lacks: its directives are resolved, not stored."""
    if isinstance(value, dict):
        return _merge_map({}, value, t)
    if isinstance(value, list):
        strategies, merge_key = typeinfo.patch_meta(t)
        if _strategy(strategies) == "merge" and value:
            return _merge_slice([], value, typeinfo.item(t), merge_key, False)
        return _strip(value)
    return value


def _strip(value: Any) -> Any:
    """Drop directive keys from a value that is taken as is (a typed decode would drop them)."""
    if isinstance(value, dict):
        return {
            k: _strip(v)
            for k, v in value.items()
            if k not in (DIRECTIVE, RETAIN_KEYS)
            and not k.startswith(SET_ELEMENT_ORDER + "/")
            and not k.startswith(DELETE_FROM_PRIMITIVE_LIST + "/")
        }
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


# -- $setElementOrder ---------------------------------------------------------------------------


def _merge_set_element_order(original: dict[str, Any], patch: dict[str, Any], t: Type) -> None:
    for key in [k for k in patch if k.startswith(SET_ELEMENT_ORDER)]:
        order = patch.pop(key)
        if not isinstance(order, list):
            raise _bad_arg_type("[]interface {}", order)
        field_key = _extract_key(key, SET_ELEMENT_ORDER)
        found_original, found_patch = field_key in original, field_key in patch
        original_list = original.get(field_key) if found_original else []
        patch_list = patch.get(field_key) if found_patch else []
        if found_original and not isinstance(original_list, list):
            raise _bad_arg_type("[]interface {}", original_list)
        if found_patch and not isinstance(patch_list, list):
            raise _bad_arg_type("[]interface {}", patch_list)
        ft = typeinfo.field(t, field_key)
        strategies, merge_key = typeinfo.patch_meta(ft)
        strategy = _strategy(strategies)
        _validate_set_order(patch_list or [], order, merge_key)
        if found_original and not found_patch:
            merged = original_list
        elif found_patch and not found_original:
            merged = _fresh(patch_list, ft)
        elif found_original and found_patch:
            merged = _merge_slice_handler(original_list, patch_list, ft, strategy, merge_key, False)
        else:
            continue
        if not merged:
            original[field_key] = merged
            patch.pop(field_key, None)
            continue
        if merge_key:
            patch_items, server_only = _partition_maps(merged, order, merge_key)
        else:
            patch_items, server_only = _partition_primitives(merged, order)
        kind = _element_kind(original_list or [], patch_list or [])
        original[field_key] = _normalize_element_order(
            patch_items, server_only, order, original_list or [], merge_key, kind
        )
        patch.pop(field_key, None)


def _merge_key_equal(left: Any, right: Any, merge_key: str) -> bool:
    if not merge_key:
        return _eq(left, right)
    if not isinstance(left, dict):
        raise _bad_arg_type("map[string]interface {}", left)
    if not isinstance(right, dict):
        raise _bad_arg_type("map[string]interface {}", right)
    if merge_key not in left:
        raise _no_merge_key(left, merge_key)
    if merge_key not in right:
        raise _no_merge_key(right, merge_key)
    return _eq(left[merge_key], right[merge_key])


def _validate_set_order(patch_list: list[Any], order: list[Any], merge_key: str) -> None:
    if not order or not patch_list:
        return
    if merge_key:
        non_delete, _ = _extract_to_delete(patch_list)
    else:
        non_delete = patch_list
    pi = si = 0
    while pi < len(non_delete) and si < len(order):
        if isinstance(non_delete[pi], dict) and DIRECTIVE in non_delete[pi]:
            pi += 1
            continue
        if _merge_key_equal(non_delete[pi], order[si], merge_key):
            pi += 1
        si += 1
    if pi < len(non_delete) and si >= len(order):
        raise _go(
            f"The order in patch list:\n{_go_repr(patch_list)}\n doesn't match {SET_ELEMENT_ORDER} list:\n"
            f"{_go_repr(order)}\n"
        )


# -- lists --------------------------------------------------------------------------------------


def _merge_slice_handler(
    original: list[Any], patch: list[Any], t: Type, strategy: str, merge_key: str, is_delete_list: bool
) -> list[Any]:
    if strategy == "merge":
        return _merge_slice(original, patch, typeinfo.item(t), merge_key, is_delete_list)
    return _strip(patch)


def _element_kind(*lists: list[Any]) -> str:
    prev = None
    for lst in lists:
        for v in lst:
            k = _kind(v)
            if prev is None:
                prev = k
                if k == "slice":
                    raise _Fail(unprocessable())  # ErrNoListOfLists
            elif prev != k:
                raise _go(f"list element types are not identical: {_go_repr(list(lists))}")
    if prev is None:
        raise _go("no elements in any of the given slices")
    return prev


def _merge_slice(
    original: list[Any], patch: list[Any], item_t: Type, merge_key: str, is_delete_list: bool
) -> list[Any]:
    if not original and not patch:
        return original
    kind = _element_kind(original, patch)
    if kind != "map":
        if is_delete_list:
            return [v for v in original if not any(_eq(v, d) for d in patch)]
        merged: list[Any] = []
        for v in original + patch:
            if not any(_eq(v, m) for m in merged):
                merged.append(v)
    else:
        if not merge_key:
            raise _go("cannot merge lists without merge key for type map")
        original, patch = _merge_special_elements(original, patch, merge_key, item_t)
        merged = _merge_plain_elements(original, patch, merge_key, item_t)
    if merge_key:
        patch_items, server_only = _partition_maps(merged, patch, merge_key)
    else:
        patch_items, server_only = _partition_primitives(merged, patch)
    return _normalize_element_order(patch_items, server_only, patch, original, merge_key, kind)


def _find(items: list[Any], key: str, value: Any) -> int:
    for i, v in enumerate(items):
        if not isinstance(v, dict):
            raise _go(f"value for key {i} is not a map.")
        if key in v and _eq(v[key], value):
            return i
    return -1


def _merge_special_elements(
    original: list[Any], patch: list[Any], merge_key: str, item_t: Type
) -> tuple[list[Any], list[Any]]:
    plain: list[Any] = []
    replace = False
    original = list(original)
    for v in patch:
        if DIRECTIVE not in v:
            plain.append(v)
            continue
        directive = v[DIRECTIVE]
        if directive == "delete":
            if merge_key not in v:
                raise _no_merge_key(v, merge_key)
            while (i := _find(original, merge_key, v[merge_key])) >= 0:
                del original[i]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise _go("merging lists cannot yet be specified in the patch")
        else:
            raise _bad_patch_type(directive, v)
    if replace:
        return [_merge_map({}, v, item_t) for v in plain], []
    return original, plain


def _merge_plain_elements(original: list[Any], patch: list[Any], merge_key: str, item_t: Type) -> list[Any]:
    original = list(original)
    for v in patch:
        if merge_key not in v:
            raise _no_merge_key(v, merge_key)
        i = _find(original, merge_key, v[merge_key])
        if i >= 0:
            original[i] = _merge_map(original[i], v, item_t)
        else:
            original.append(_merge_map({}, v, item_t))
    return original


def _partition_primitives(items: list[Any], by: list[Any]) -> tuple[list[Any], list[Any]]:
    inside = [v for v in items if any(_eq(v, b) for b in by)]
    outside = [v for v in items if not any(_eq(v, b) for b in by)]
    return inside, outside


def _partition_maps(items: list[Any], by: list[Any], merge_key: str) -> tuple[list[Any], list[Any]]:
    inside: list[Any] = []
    outside: list[Any] = []
    for v in items:
        if not isinstance(v, dict):
            raise _bad_arg_type("map[string]interface {}", v)
        if merge_key not in v:
            raise _no_merge_key(v, merge_key)
        (inside if _find(by, merge_key, v[merge_key]) >= 0 else outside).append(v)
    return inside, outside


def _index(items: list[Any], value: Any, merge_key: str, kind: str) -> int:
    def val(x: Any) -> Any:
        if kind == "map":
            return x.get(merge_key) if isinstance(x, dict) else None
        return x

    target = val(value)
    for i, v in enumerate(items):
        if _eq(target, val(v)):
            return i
    return -1


def _extract_to_delete(items: list[Any]) -> tuple[list[Any], list[Any]]:
    keep: list[Any] = []
    delete: list[Any] = []
    for v in items:
        if not isinstance(v, dict):
            raise _bad_arg_type("map[string]interface {}", v)
        (delete if v.get(DIRECTIVE) == "delete" else keep).append(v)
    return keep, delete


def _normalize_slice_order(to_sort: list[Any], order: list[Any], merge_key: str, kind: str) -> list[Any]:
    to_delete: list[Any] = []
    if kind == "map":
        for lst in (to_sort, order):
            for v in lst:
                if not isinstance(v, dict):
                    raise _bad_arg_type("map[string]interface {}", v)
                if merge_key not in v:
                    raise _no_merge_key(v, merge_key)
        to_sort, to_delete = _extract_to_delete(to_sort)
    # Items missing from ``order`` go first, as Go's SliceStable with its comparator leaves them.
    ranked = sorted(to_sort, key=lambda v: _index(order, v, merge_key, kind))
    return ranked + to_delete


def _merge_sorted(
    left: list[Any], right: list[Any], server_order: list[Any], merge_key: str, kind: str
) -> list[Any]:
    out: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            out.append(right[j])
            j += 1
        elif j >= len(right):
            out.append(left[i])
            i += 1
        else:
            li = _index(server_order, left[i], merge_key, kind)
            ri = _index(server_order, right[j], merge_key, kind)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


def _normalize_element_order(
    patch_items: list[Any],
    server_only: list[Any],
    patch_order: list[Any],
    server_order: list[Any],
    merge_key: str,
    kind: str,
) -> list[Any]:
    patch_items = _normalize_slice_order(patch_items, patch_order, merge_key, kind)
    server_only = _normalize_slice_order(server_only, server_order, merge_key, kind)
    return _merge_sorted(server_only, patch_items, server_order, merge_key, kind)
