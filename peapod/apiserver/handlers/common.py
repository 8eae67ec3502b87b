"""Helpers shared by the resource handlers: query parameters, selectors, output shapes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from peapod.api import errors
from peapod.api.resources import ResourceInfo
from peapod.api.selectors import check_field_selector, field_set, parse_field_selector, parse_label_selector
from peapod.apiserver.checks import WriteOptions, parse_field_validation
from peapod.apiserver.context import ApiContext
from peapod.apiserver.metadata import user_agent_manager
from peapod.apiserver.negotiation import Output, respond


def parse_bool(query: Mapping[str, str], name: str, default: bool = False) -> bool:
    v = query.get(name)
    if v is None or v == "":
        return default
    low = v.lower()
    if low in ("1", "true", "t", "yes"):
        return True
    if low in ("0", "false", "f", "no"):
        return False
    raise errors.bad_request(f"invalid value for {name}: {v!r} (must be true or false)")


def parse_int(query: Mapping[str, str], name: str, *, minimum: int = 0) -> int | None:
    v = query.get(name)
    if v is None or v == "":
        return None
    try:
        n = int(v)
    except ValueError:
        raise errors.bad_request(f"invalid value for {name}: {v!r} (must be an integer)") from None
    if n < minimum:
        raise errors.bad_request(f"invalid value for {name}: {v} (must be >= {minimum})")
    return n


@dataclass
class Selector:
    info: ResourceInfo
    label: Any = None
    field: Any = None

    @property
    def empty(self) -> bool:
        return self.label is None and self.field is None

    def matches(self, obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if self.label is not None and not self.label.matches(meta.get("labels") or {}):
            return False
        if self.field is not None and not self.field.matches(
            field_set(self.info.group, self.info.resource, obj)
        ):
            return False
        return True


def parse_selectors(info: ResourceInfo, query: Mapping[str, str], *, name: str | None = None) -> Selector:
    sel = Selector(info)
    ls = query.get("labelSelector")
    fs = query.get("fieldSelector")
    if name is not None:
        fs = f"metadata.name={name}" + (f",{fs}" if fs else "")
    try:
        if ls:
            sel.label = parse_label_selector(ls)
        if fs:
            sel.field = parse_field_selector(fs)
            sel.field = check_field_selector(info.group, info.resource, sel.field)
    except errors.ApiError:
        raise
    except (ValueError, TypeError, KeyError) as e:
        raise errors.bad_request(f"unable to parse requirement: {e}") from None
    return sel


def write_options(request: web.Request, *, apply: bool = False) -> WriteOptions:
    q = request.query
    dry = q.getall("dryRun", [])
    for d in dry:
        if d != "All":
            raise errors.bad_request(f'dryRun: Unsupported value: "{d}": supported values: "All"')
    manager = q.get("fieldManager", "")
    if apply and not manager:
        raise errors.bad_request(
            "PATCH, application/apply-patch+yaml: fieldManager is required for apply requests"
        )
    if len(manager) > 128:
        raise errors.bad_request("fieldManager: Too long: must have at most 128 bytes")
    if not manager:
        manager = user_agent_manager(request.headers.get("User-Agent"))
    force = parse_bool(q, "force")
    if force and not apply:
        raise errors.bad_request("force: Invalid value: true: may not be specified for non-apply patch")
    return WriteOptions(
        dry_run=bool(dry),
        field_manager=manager,
        field_validation=parse_field_validation(q.get("fieldValidation")),
        force=force,
    )


def warning_header(text: str) -> str:
    """A ``Warning: 299 - "..."`` value; control characters are escaped so no header can be injected."""
    text = text[:1024].replace("\\", "\\\\").replace('"', '\\"')
    return '299 - "' + "".join(c if " " <= c != "\x7f" else f"\\u{ord(c):04x}" for c in text) + '"'


def with_warnings(resp: web.StreamResponse, warnings: list[str]) -> web.StreamResponse:
    for w in warnings[:50]:
        resp.headers.add("Warning", warning_header(w))
    return resp


# -- output shapes ---------------------------------------------------------------------------


def _include_object(request: web.Request) -> str:
    v = request.query.get("includeObject", "") or "Metadata"
    if v not in ("None", "Metadata", "Object"):
        raise errors.bad_request(f'includeObject: Unsupported value: "{v}"')
    return v


def partial(obj: dict[str, Any], version: str) -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": obj.get("metadata", {}),
    }


def render_object(
    ctx: ApiContext, request: web.Request, info: ResourceInfo, obj: dict[str, Any], out: Output
) -> dict[str, Any]:
    if out.as_kind == "Table":
        from peapod.apiserver.tables import to_table

        return to_table(info, [obj], now=ctx.clock.now(), include_object=_include_object(request))
    if out.as_kind.startswith("PartialObjectMetadata"):
        return partial(obj, out.as_version)
    return obj


def render_list(
    ctx: ApiContext,
    request: web.Request,
    info: ResourceInfo,
    items: list[dict[str, Any]],
    list_meta: dict[str, Any],
    out: Output,
) -> dict[str, Any]:
    if out.as_kind == "Table":
        from peapod.apiserver.tables import to_table

        return to_table(
            info, items, now=ctx.clock.now(), include_object=_include_object(request), list_meta=list_meta
        )
    if out.as_kind.startswith("PartialObjectMetadata"):
        return {
            "kind": "PartialObjectMetadataList",
            "apiVersion": f"meta.k8s.io/{out.as_version}",
            "metadata": list_meta,
            "items": [partial(o, out.as_version) for o in items],
        }
    return {"kind": info.list_kind, "apiVersion": info.api_version, "metadata": list_meta, "items": items}


def reply(obj: Any, out: Output, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    resp = respond(obj, out, status)
    if warnings:
        with_warnings(resp, warnings)
    return resp
