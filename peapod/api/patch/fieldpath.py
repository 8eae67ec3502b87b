"""Field paths and sets of them, as sigs.k8s.io/structured-merge-diff names fields.

A path element is a ``(tag, payload)`` pair, exactly the two halves of a ``fieldsV1`` key:
``("f", "spec")`` a struct field or map key, ``("k", '{"name":"c"}')`` an associative-list item,
``("v", '"x"')`` a set-list item, ``("i", "0")`` a list index. A set is a frozenset of member
paths; ``fieldsV1`` is its tree form where ``"."`` marks a node that is itself a member.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from peapod.api.patch import typeinfo
from peapod.api.patch.typeinfo import Type

PathElement = tuple[str, str]
Path = tuple[PathElement, ...]
FieldSet = frozenset[Path]

EMPTY: FieldSet = frozenset()


def go_json(value: Any) -> str:
    """Compact JSON as Go's encoder writes it (sorted keys, HTML characters escaped)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def field(name: str) -> PathElement:
    return ("f", name)


def key(fields: dict[str, Any]) -> PathElement:
    return ("k", go_json(fields))


def value(v: Any) -> PathElement:
    return ("v", go_json(v))


def index(i: int) -> PathElement:
    return ("i", str(i))


def make_path(*names: str) -> Path:
    return tuple(field(n) for n in names)


# -- printing and ordering ----------------------------------------------------------------------


def _value_string(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, int | float):
        return str(v)
    return go_json(v)


def element_string(pe: PathElement) -> str:
    tag, payload = pe
    if tag == "f":
        return "." + payload
    if tag == "k":
        fields = json.loads(payload)
        return "[" + ",".join(f"{k}={_value_string(fields[k])}" for k in sorted(fields)) + "]"
    if tag == "v":
        return f"[={_value_string(json.loads(payload))}]"
    return f"[{payload}]"


def path_string(path: Path) -> str:
    """The path as structured-merge-diff prints it: ``.spec.containers[name="c"].image``."""
    return "".join(element_string(pe) for pe in path)


_TAG_RANK = {"f": 0, "k": 1, "v": 2, "i": 3}


def _value_rank(v: Any) -> tuple[Any, ...]:
    if isinstance(v, bool):
        return (3, v)
    if isinstance(v, float):
        return (0, v)
    if isinstance(v, int):
        return (1, v)
    if isinstance(v, str):
        return (2, v)
    if isinstance(v, list):
        return (4, tuple(_value_rank(x) for x in v))
    if isinstance(v, dict):
        return (5, tuple((k, _value_rank(v[k])) for k in sorted(v)))
    return (6,)


def element_order(pe: PathElement) -> tuple[Any, ...]:
    tag, payload = pe
    if tag == "f":
        return (0, payload)
    if tag == "i":
        return (3, int(payload))
    decoded = json.loads(payload)
    if tag == "k":
        return (1, tuple((k, _value_rank(decoded[k])) for k in sorted(decoded)))
    return (2, _value_rank(decoded))


def path_order(path: Path) -> tuple[Any, ...]:
    return tuple(element_order(pe) for pe in path)


# -- fieldsV1 -----------------------------------------------------------------------------------


def to_fields_v1(fields: Iterable[Path]) -> dict[str, Any]:
    """The ``fieldsV1`` tree of a set, children in structured-merge-diff's order."""
    tree: dict[PathElement, Any] = {}
    members: set[Path] = set()
    for path in fields:
        if not path:
            continue
        members.add(path)
        node = tree
        for pe in path:
            node = node.setdefault(pe, {})

    def emit(node: dict[PathElement, Any], prefix: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for pe in sorted(node, key=element_order):
            here = (*prefix, pe)
            children = emit(node[pe], here)
            if children and here in members:
                children = {".": {}, **children}
            out[f"{pe[0]}:{pe[1]}"] = children
        return out

    return emit(tree, ())


def from_fields_v1(tree: Any) -> FieldSet:
    """Parse ``fieldsV1``; raises ValueError on anything malformed."""
    out: set[Path] = set()

    def walk(node: Any, prefix: Path) -> None:
        if not isinstance(node, dict):
            raise ValueError("fieldsV1 nodes must be objects")
        if not node and prefix:
            out.add(prefix)
        for k, child in node.items():
            if k == ".":
                if prefix:
                    out.add(prefix)
                continue
            tag, sep, payload = k.partition(":")
            if not sep or tag not in _TAG_RANK:
                raise ValueError(f"invalid fieldsV1 key {k!r}")
            if tag in ("k", "v"):
                json.loads(payload)
            if tag == "i":
                int(payload)
            walk(child, (*prefix, (tag, payload)))

    walk(tree, ())
    return frozenset(out)


# -- set algebra that needs more than frozenset -------------------------------------------------


def recursive_difference(fields: FieldSet, removed: Iterable[Path]) -> FieldSet:
    """``fields`` without the paths in ``removed`` and everything below them."""
    prefixes = set(removed)
    if not prefixes:
        return fields
    return frozenset(p for p in fields if not any(p[:n] in prefixes for n in range(1, len(p) + 1)))


def type_at(root: Type, path: Path) -> Type:
    t = root
    for tag, payload in path:
        t = typeinfo.field(t, payload) if tag == "f" else typeinfo.item(t)
        if t is None:
            return None
    return t


def ensure_named_fields_are_members(fields: FieldSet, root: Type) -> FieldSet:
    """Also make members of the struct fields (not map keys) that lie above a member."""
    out = set(fields)
    checked: dict[Path, bool] = {}
    for path in fields:
        for n in range(1, len(path)):
            prefix = path[:n]
            if prefix in checked:
                continue
            tag, payload = prefix[-1]
            named = tag == "f" and typeinfo.is_declared(type_at(root, prefix[:-1]), payload)
            checked[prefix] = named
            if named:
                out.add(prefix)
    return frozenset(out)
