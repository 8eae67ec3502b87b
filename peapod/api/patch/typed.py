"""Schema-aware walks over objects for server-side apply (structured-merge-diff's ``typed``).

- :func:`field_set`: the fields an object sets (``ToFieldSet``);
- :func:`compare`: fields added, modified and removed between two objects (``Compare``);
- :func:`merge`: an applied configuration merged into a live object (``Merge``);
- :func:`remove_items`: an object without the given fields, list items or map entries.

Struct fields and map entries are walked key by key (unless the map is atomic); lists are atomic
unless the schema makes them sets (items named by value) or maps (items named by their keys).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from peapod.api.patch import fieldpath as fp
from peapod.api.patch import typeinfo
from peapod.api.patch.fieldpath import FieldSet, Path, PathElement
from peapod.api.patch.typeinfo import Type


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class _Null:
    def __repr__(self) -> str:
        return "NULL"


# A field present with no value, as Go serializes an unset field without omitempty; unlike a
# missing field, it does not make its node "added" when it gets a value.
NULL: Any = _Null()


class TypedError(ValueError):
    """The object does not fit its schema (e.g. a list-map item without its key)."""


def same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def item_element(item: Any, list_t: Type, i: int, path: Path = (), strict: bool = False) -> PathElement:
    """The path element naming a list item of a set or map list."""
    semantics, keys = typeinfo.list_semantics(list_t)
    if semantics == "set":
        return fp.value(item)
    if not keys:
        return fp.index(i)
    if not isinstance(item, dict):
        if strict:
            raise TypedError(
                f"{fp.path_string(path)}: element {i}: associative list with keys may not "
                "have non-map elements"
            )
        return fp.index(i)
    fields: dict[str, Any] = {}
    for k in keys:
        if k in item and item[k] is not None:
            fields[k] = item[k]
        elif typeinfo.key_default(k) is not None:
            fields[k] = typeinfo.key_default(k)
        elif strict:
            raise TypedError(
                f"{fp.path_string(path)}: element {i}: associative list with keys has an element that "
                f'omits key field "{k}" (and doesn\'t have default value)'
            )
    return fp.key(fields)


def _list_elements(items: list[Any], t: Type, path: Path, strict: bool) -> list[PathElement]:
    pes = [item_element(x, t, i, path, strict) for i, x in enumerate(items)]
    if strict:
        seen: set[PathElement] = set()
        for pe in pes:
            if pe in seen:
                raise TypedError(f"{fp.path_string(path)}: duplicate entries for key {fp.element_string(pe)}")
            seen.add(pe)
    return pes


def _is_list_granular(t: Type) -> bool:
    return typeinfo.list_semantics(t)[0] != "atomic"


# -- ToFieldSet ---------------------------------------------------------------------------------


def field_set(obj: Any, t: Type, strict: bool = False) -> FieldSet:
    """Every field, map entry and list item ``obj`` sets; ``strict`` checks list keys."""
    out: set[Path] = set()
    _walk_set(obj, t, (), out, strict)
    out.discard(())
    return frozenset(out)


def _walk_set(v: Any, t: Type, path: Path, out: set[Path], strict: bool) -> None:
    if isinstance(v, dict):
        if typeinfo.map_is_atomic(t):
            out.add(path)
            return
        for k, cv in v.items():
            p = (*path, fp.field(k))
            if cv is None or (isinstance(cv, dict) and not cv) or not typeinfo.is_declared(t, k):
                out.add(p)
            _walk_set(cv, typeinfo.field(t, k), p, out, strict)
    elif isinstance(v, list):
        if not _is_list_granular(t):
            out.add(path)
            return
        item_t = typeinfo.item(t)
        for pe, item in zip(_list_elements(v, t, path, strict), v, strict=True):
            p = (*path, pe)
            out.add(p)
            _walk_set(item, item_t, p, out, strict)
    else:
        out.add(path)


# -- Compare ------------------------------------------------------------------------------------


@dataclass
class Comparison:
    added: set[Path] = field(default_factory=set)
    modified: set[Path] = field(default_factory=set)
    removed: set[Path] = field(default_factory=set)

    def exclude(self, ignored: Iterable[Path]) -> Comparison:
        ignored = list(ignored)
        return Comparison(
            set(fp.recursive_difference(frozenset(self.added), ignored)),
            set(fp.recursive_difference(frozenset(self.modified), ignored)),
            set(fp.recursive_difference(frozenset(self.removed), ignored)),
        )


def compare(old: Any, new: Any, t: Type) -> Comparison:
    """What changed from ``old`` to ``new`` (either may be MISSING); nulls count as absent."""
    c = Comparison()
    _cmp(old, new, t, (), c)
    for s in (c.added, c.modified, c.removed):
        s.discard(())
    return c


def _shape(v: Any) -> type | None:
    return None if v is MISSING or v is NULL else type(v)


def _cmp(lv: Any, rv: Any, t: Type, path: Path, c: Comparison) -> None:
    lv = MISSING if lv is None else lv
    rv = MISSING if rv is None else rv
    kinds = {_shape(x) for x in (lv, rv)} - {None}
    if kinds == {dict} and not typeinfo.map_is_atomic(t):
        lm = lv if isinstance(lv, dict) else {}
        rm = rv if isinstance(rv, dict) else {}
        if not lm and not rm:
            _leaf(lv, rv, path, c)
            return
        for k in list(lm) + [k for k in rm if k not in lm]:
            _cmp(lm.get(k, MISSING), rm.get(k, MISSING), typeinfo.field(t, k), (*path, fp.field(k)), c)
        _post(lv, rv, path, c)
    elif kinds == {list} and _is_list_granular(t):
        ll = lv if isinstance(lv, list) else []
        rl = rv if isinstance(rv, list) else []
        if not ll and not rl:
            _leaf(lv, rv, path, c)
            return
        left = _index_items(ll, t, path)
        right = _index_items(rl, t, path)
        item_t = typeinfo.item(t)
        for pe in list(left) + [pe for pe in right if pe not in left]:
            _cmp(left.get(pe, MISSING), right.get(pe, MISSING), item_t, (*path, pe), c)
        _post(lv, rv, path, c)
    else:
        _leaf(lv, rv, path, c)


def _index_items(items: list[Any], t: Type, path: Path) -> dict[PathElement, Any]:
    out: dict[PathElement, Any] = {}
    for pe, item in zip(_list_elements(items, t, path, False), items, strict=True):
        out.setdefault(pe, item)
    return out


def _leaf(lv: Any, rv: Any, path: Path, c: Comparison) -> None:
    if lv is MISSING and rv is MISSING:
        return
    if lv is MISSING:
        c.added.add(path)
    elif rv is MISSING:
        c.removed.add(path)
    elif not same(lv, rv):
        c.modified.add(path)


def _post(lv: Any, rv: Any, path: Path, c: Comparison) -> None:
    if lv is MISSING:
        c.added.add(path)
    elif rv is MISSING:
        c.removed.add(path)


# -- Merge --------------------------------------------------------------------------------------


def _without_nulls(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _without_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_without_nulls(x) for x in v]
    return v


def merge(live: Any, config: Any, t: Type) -> Any:
    """``config`` merged into ``live``: config wins, null in config removes the field."""
    if config is MISSING:
        return live
    if live is MISSING or live is None:
        return _without_nulls(config)
    if isinstance(live, dict) and isinstance(config, dict) and not typeinfo.map_is_atomic(t):
        out = dict(live)
        for k, cv in config.items():
            if cv is None:
                out.pop(k, None)
            else:
                out[k] = merge(out.get(k, MISSING), cv, typeinfo.field(t, k))
        return out
    if isinstance(live, list) and isinstance(config, list) and _is_list_granular(t):
        return _merge_list(live, config, t)
    return _without_nulls(config)


def _merge_list(lhs: list[Any], rhs: list[Any], t: Type) -> list[Any]:
    """structured-merge-diff's list merge: live-only items stay in place, shared in config order."""
    item_t = typeinfo.item(t)
    lpes = _list_elements(lhs, t, (), False)
    rpes = _list_elements(rhs, t, (), False)
    lmap: dict[PathElement, Any] = {}
    for pe, x in zip(lpes, lhs, strict=True):
        lmap.setdefault(pe, x)
    rmap: dict[PathElement, Any] = {}
    for pe, x in zip(rpes, rhs, strict=True):
        rmap.setdefault(pe, x)
    shared = [pe for pe in rpes if pe in lmap]
    next_shared = shared.pop(0) if shared else None
    merged_rhs: set[PathElement] = set()
    out: list[Any] = []
    li = ri = 0
    while li < len(lpes) or ri < len(rpes):
        if li < len(lpes) and ri < len(rpes):
            pe = lpes[li]
            if pe == rpes[ri]:
                merged_rhs.add(pe)
                out.append(merge(lmap[pe], rmap[pe], item_t))
                li += 1
                ri += 1
                next_shared = shared.pop(0) if shared else None
                continue
            if pe in rmap and next_shared is not None and next_shared != pe:
                li += 1
                continue
        if li < len(lpes):
            pe = lpes[li]
            if pe not in rmap:
                out.append(lhs[li])
                li += 1
                continue
            if pe in merged_rhs:
                li += 1
                continue
        if ri < len(rpes):
            pe = rpes[ri]
            merged_rhs.add(pe)
            out.append(merge(lmap.get(pe, MISSING), rmap[pe], item_t))
            ri += 1
            if next_shared is not None and next_shared == pe:
                next_shared = shared.pop(0) if shared else None
    return out


# -- RemoveItems --------------------------------------------------------------------------------


def remove_items(obj: Any, paths: Iterable[Path], t: Type) -> Any:
    """``obj`` without the nodes named by ``paths`` (each with everything below it)."""
    remove = set(paths)
    if not remove:
        return obj
    above = {p[:n] for p in remove for n in range(len(p))}
    return _remove(obj, t, (), remove, above)


def _remove(v: Any, t: Type, path: Path, remove: set[Path], above: set[Path]) -> Any:
    if path not in above:
        return v
    if isinstance(v, dict) and not typeinfo.map_is_atomic(t):
        out = {}
        for k, cv in v.items():
            p = (*path, fp.field(k))
            if p not in remove:
                out[k] = _remove(cv, typeinfo.field(t, k), p, remove, above)
        return out
    if isinstance(v, list) and _is_list_granular(t):
        item_t = typeinfo.item(t)
        kept = []
        for pe, item in zip(_list_elements(v, t, path, False), v, strict=True):
            p = (*path, pe)
            if p not in remove:
                kept.append(_remove(item, item_t, p, remove, above))
        return kept
    return v
