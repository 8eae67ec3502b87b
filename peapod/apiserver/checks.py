"""Checks on a decoded request body before it reaches the strategy: kind, types, unknown fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peapod.api import errors
from peapod.api.decode import type_errors, unknown_fields
from peapod.apiserver.metadata import remove_path

STRICT, WARN, IGNORE = "Strict", "Warn", "Ignore"


@dataclass
class WriteOptions:
    dry_run: bool = False
    field_manager: str = ""
    field_validation: str = WARN
    force: bool = False
    warnings: list[str] = field(default_factory=list)


def check_object(
    obj: Any, group: str, version: str, kind: str, *, require_type_meta: bool = False
) -> dict[str, Any]:
    """The body must be a JSON object of the expected kind; absent apiVersion/kind are filled in."""
    api_version = f"{group}/{version}" if group else version
    if not isinstance(obj, dict):
        raise errors.bad_request(
            f'{kind} in version "{version}" cannot be handled as a {kind}: '
            f"json: cannot unmarshal {_json_type(obj)} into Go value of type struct"
        )
    av = obj.get("apiVersion")
    k = obj.get("kind")
    if require_type_meta and (not av or not k):
        raise errors.bad_request("Object 'Kind' is missing in the request body")
    if av not in (None, "") and av != api_version:
        if not isinstance(av, str):
            raise errors.bad_request(
                "couldn't get version/kind; json parse error: apiVersion must be a string"
            )
        raise errors.bad_request(
            f"the API version in the data ({av}) does not match the expected API version ({api_version})"
        )
    if k not in (None, "") and k != kind:
        if not isinstance(k, str):
            raise errors.bad_request("couldn't get version/kind; json parse error: kind must be a string")
        raise errors.bad_request(f"the object provided is unrecognized (must be of type {kind}): {k}")
    out: dict[str, Any] = {"apiVersion": api_version, "kind": kind}
    out.update((k, v) for k, v in obj.items() if k not in ("apiVersion", "kind"))
    if out.get("metadata") is None:
        out["metadata"] = {}
    return out


def _json_type(v: Any) -> str:
    if isinstance(v, list):
        return "array"
    if isinstance(v, str):
        return "string"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    return "null" if v is None else "value"


def check_fields(
    obj: dict[str, Any], group: str, version: str, kind: str, opts: WriteOptions, duplicates: list[str] = ()
) -> None:
    """Wrong types -> 400; unknown/duplicate fields per fieldValidation (Strict 400, Warn header, Ignore)."""
    problems = type_errors(group, version, kind, obj)
    if problems:
        raise errors.bad_request(
            f'{kind} in version "{version}" cannot be handled as a {kind}: ' + "; ".join(problems)
        )
    unknown = unknown_fields(group, version, kind, obj)
    msgs = [f'unknown field "{p}"' for p in unknown] + [f'duplicate field "{d}"' for d in duplicates]
    if msgs:
        if opts.field_validation == STRICT:
            raise errors.bad_request("strict decoding error: " + ", ".join(msgs))
        if opts.field_validation == WARN:
            opts.warnings.extend(msgs)
    for p in unknown:
        remove_path(obj, p)


def parse_field_validation(value: str | None) -> str:
    if value in (None, ""):
        return WARN
    if value not in (STRICT, WARN, IGNORE):
        raise errors.bad_request(
            f'fieldValidation: Unsupported value: "{value}": supported values: "Ignore", "Strict", "Warn"'
        )
    return value
