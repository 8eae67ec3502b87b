"""Structural checks of a request body against the upstream schema, like the API server's decoder.

``unknown_fields`` lists fields the schema does not declare (``fieldValidation=Strict`` rejects them,
``Warn`` returns them as warnings). ``type_errors`` lists JSON values of the wrong type, phrased like Go's
``encoding/json`` (``json: cannot unmarshal string into Go struct field PodSpec.spec.containers of type
[]v1.Container``); the API server answers the first one with 400 BadRequest.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from peapod.api import schema as sch
from peapod.api.quantity import parse_quantity

_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_TIME_DEFS = ("io.k8s.apimachinery.pkg.apis.meta.v1.Time", "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


def _resolve(node: dict[str, Any] | None) -> tuple[dict[str, Any] | None, str | None]:
    """Follow $ref/allOf; also return the name of the last definition reached."""
    name = None
    for _ in range(16):
        if node is None:
            return None, name
        if "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith(sch.REF_PREFIX):
                return node, name
            name = ref[len(sch.REF_PREFIX) :]
            node = sch.definitions().get(name)
        elif "allOf" in node and len(node["allOf"]) == 1:
            node = node["allOf"][0]
        else:
            return node, name
    return node, name


def _go_name(def_name: str) -> str:
    parts = def_name.split(".")
    return f"{parts[-2]}.{parts[-1]}" if len(parts) >= 2 else def_name


def _is_free_form(node: dict[str, Any]) -> bool:
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return True
    types = sch.types_of(node)
    return (
        (types == {"object"} or not types)
        and "properties" not in node
        and "additionalProperties" not in node
        and "items" not in node
        and "oneOf" not in node
    )


def _go_type(node: dict[str, Any] | None) -> str:
    node, name = _resolve(node)
    if node is None:
        return "interface {}"
    if name and ("properties" in node or "oneOf" in node or name in _TIME_DEFS or _is_free_form(node)):
        return _go_name(name)
    types = sch.types_of(node)
    if "array" in types:
        return "[]" + _go_type(node.get("items"))
    if "object" in types:
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            return "map[string]" + _go_type(extra)
        return _go_name(name) if name else "map[string]interface {}"
    if "string" in types:
        return "[]uint8" if node.get("format") == "byte" else "string"
    if "integer" in types:
        return {"int32": "int32", "int64": "int64"}.get(node.get("format", ""), "int")
    if "number" in types:
        return "float64"
    if "boolean" in types:
        return "bool"
    return _go_name(name) if name else "interface {}"


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "value"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def unknown_fields(group: str, version: str, kind: str, obj: Any) -> list[str]:
    """Paths of fields not declared in the kind's schema, e.g. ``spec.containers[0].imagePullPolicyx``."""
    root = sch.kind_schema(group, version, kind)
    if root is None:
        return []
    out: list[str] = []
    _walk_unknown(root, obj, "", out)
    return out


def _walk_unknown(node: dict[str, Any] | None, value: Any, path: str, out: list[str]) -> None:
    node, _ = _resolve(node)
    if node is None or value is None or _is_free_form(node):
        return
    if isinstance(value, dict):
        props = node.get("properties")
        extra = node.get("additionalProperties")
        if props is None and not isinstance(extra, dict):
            return
        for key, child in value.items():
            if props and key in props:
                _walk_unknown(props[key], child, _join(path, key), out)
            elif isinstance(extra, dict):
                _walk_unknown(extra, child, _join(path, key), out)
            elif extra is True:
                continue
            else:
                out.append(_join(path, key))
    elif isinstance(value, list):
        item = node.get("items")
        if isinstance(item, dict):
            for i, child in enumerate(value):
                _walk_unknown(item, child, f"{path}[{i}]", out)


def type_errors(group: str, version: str, kind: str, obj: Any) -> list[str]:
    """Wrong JSON types, in Go's wording; quantity/base64/time format errors carry the JSON path."""
    root_node = sch.kind_schema(group, version, kind)
    if root_node is None:
        return []
    name = sch.definition_name(group, version, kind) or kind
    out: list[str] = []
    if not isinstance(obj, dict):
        out.append(f"json: cannot unmarshal {_json_kind(obj)} into Go value of type {_go_name(name)}")
        return out
    _walk_types(root_node, obj, _Ctx(_go_name(name).split(".")[-1], [], ""), out)
    return out


class _Ctx:
    """Where we are: innermost Go struct, JSON field names from the root (Go's path), JSON path."""

    __slots__ = ("fields", "path", "struct")

    def __init__(self, struct: str, fields: list[str], path: str) -> None:
        self.struct = struct
        self.fields = fields
        self.path = path

    def child(self, key: str, struct: str | None = None) -> _Ctx:
        return _Ctx(struct or self.struct, [*self.fields, key], _join(self.path, key))

    def item(self, index: int) -> _Ctx:
        return _Ctx(self.struct, self.fields, f"{self.path}[{index}]")

    def mismatch(self, what: str, go_type: str) -> str:
        if not self.fields:
            return f"json: cannot unmarshal {what} into Go value of type {go_type}"
        where = f"{self.struct}.{'.'.join(self.fields)}"
        return f"json: cannot unmarshal {what} into Go struct field {where} of type {go_type}"


def _number_text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _base64_error(text: str) -> int | None:
    cleaned = text.replace("\r", "").replace("\n", "")
    try:
        base64.b64decode(cleaned, validate=True)
        return None
    except (binascii.Error, ValueError):
        pass
    for i, ch in enumerate(cleaned):
        if not (ch.isascii() and (ch.isalnum() or ch in "+/=")):
            return i
    return max(0, len(cleaned) - len(cleaned) % 4) if len(cleaned) % 4 else len(cleaned)


def _walk_types(node: dict[str, Any] | None, value: Any, ctx: _Ctx, out: list[str]) -> None:
    if value is None:
        return
    node, name = _resolve(node)
    if node is None or node.get("x-kubernetes-preserve-unknown-fields"):
        return
    if name == _QUANTITY:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            out.append(
                f"{ctx.path}: quantities must match the regular expression "
                "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
            )
            return
        try:
            parse_quantity(value)
        except ValueError as e:
            out.append(f"{ctx.path}: {e}")
        return
    if name == _INT_OR_STRING:
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            if isinstance(value, int) and not -(2**31) <= value < 2**31:
                out.append(ctx.mismatch(f"number {value}", "int32"))
            return
        what = f"number {_number_text(value)}" if isinstance(value, float) else _json_kind(value)
        out.append(ctx.mismatch(what, "int32"))
        return
    if name in _TIME_DEFS:
        if not isinstance(value, str):
            out.append(ctx.mismatch(_json_kind(value), "string"))
        elif not _RFC3339.match(value):
            out.append(f'{ctx.path}: parsing time "{value}" as "2006-01-02T15:04:05Z07:00": cannot parse')
        return
    if _is_free_form(node):
        return
    types = sch.types_of(node)
    go_type = _go_type({"$ref": sch.REF_PREFIX + name} if name else node)
    if "object" in types and "properties" in node:
        if not isinstance(value, dict):
            out.append(ctx.mismatch(_json_kind(value), go_type))
            return
        struct = name.split(".")[-1] if name else ctx.struct
        props = node["properties"]
        for key, child in value.items():
            if key in props:
                _walk_types(props[key], child, ctx.child(key, struct), out)
        return
    if "object" in types:
        if not isinstance(value, dict):
            out.append(ctx.mismatch(_json_kind(value), go_type))
            return
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            for key, child in value.items():
                _walk_types(extra, child, _Ctx(ctx.struct, ctx.fields, _join(ctx.path, key)), out)
        return
    if "array" in types:
        if not isinstance(value, list):
            out.append(ctx.mismatch(_json_kind(value), go_type))
            return
        item = node.get("items")
        for i, child in enumerate(value):
            _walk_types(item, child, ctx.item(i), out)
        return
    if "string" in types:
        if not isinstance(value, str):
            out.append(ctx.mismatch(_json_kind(value), go_type))
        elif node.get("format") == "byte":
            at = _base64_error(value)
            if at is not None:
                out.append(f"{ctx.path}: illegal base64 data at input byte {at}")
        return
    if "integer" in types:
        if isinstance(value, bool) or not isinstance(value, int | float):
            out.append(ctx.mismatch(_json_kind(value), go_type))
            return
        lo, hi = _INT_RANGES.get(node.get("format", ""), _INT_RANGES["int64"])
        if isinstance(value, float) or not lo <= value <= hi:
            out.append(ctx.mismatch(f"number {_number_text(value)}", go_type))
        return
    if "number" in types:
        if isinstance(value, bool) or not isinstance(value, int | float):
            out.append(ctx.mismatch(_json_kind(value), go_type))
        return
    if "boolean" in types:
        if not isinstance(value, bool):
            out.append(ctx.mismatch(_json_kind(value), go_type))
