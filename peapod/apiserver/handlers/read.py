"""GET of one object and LIST with selectors, paging and resourceVersion semantics."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from aiohttp import web

from peapod.api import errors
from peapod.api.resources import ResourceInfo
from peapod.apiserver.codec import from_storage, shares_core_events
from peapod.apiserver.context import ApiContext
from peapod.apiserver.handlers.common import (
    Selector,
    parse_int,
    parse_selectors,
    render_list,
    render_object,
    reply,
)
from peapod.apiserver.negotiation import Output, dumps
from peapod.apiserver.storage import decode, raw_item

_TOO_OLD_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new "
    "list without the continue parameter, or use the continue token in this response to retrieve the "
    "remainder of the results. Continuing with the provided token results in an inconsistent list - "
    "objects that were created, modified, or deleted between the time the first chunk was returned and "
    "now may show up in the list."
)


async def get_object(ctx: ApiContext, info: ResourceInfo, namespace: str | None, name: str) -> dict[str, Any]:
    got = await ctx.storage.get(info, namespace, name)
    if got is None:
        raise errors.not_found(info.group, info.resource, name)
    return from_storage(info, got[0])


async def handle_get(
    ctx: ApiContext, request: web.Request, info: ResourceInfo, namespace: str | None, name: str, out: Output
) -> web.Response:
    obj = await get_object(ctx, info, namespace, name)
    return reply(render_object(ctx, request, info, obj, out), out)


def encode_continue(revision: int, start: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": start}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        rv, start = data["rv"], data["start"]
        if (
            data.get("v") != "meta.k8s.io/v1"
            or not isinstance(rv, int)
            or rv <= 0
            or not isinstance(start, str)
        ):
            raise ValueError("bad token")
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise errors.bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
        ) from None
    return rv, start


def parse_resource_version(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise errors.bad_request(f'invalid resource version "{value}"') from None
    if n < 0:
        raise errors.bad_request(f'invalid resource version "{value}"')
    return n


async def list_objects(
    ctx: ApiContext, info: ResourceInfo, namespace: str | None, query: Any, sel: Selector | None = None,
    *, raw: bool = False,
) -> tuple[list[Any], dict[str, Any]]:
    """The items and list metadata for a LIST request's query parameters. ``raw``: items are the
    served JSON bytes, spliced from the stored bytes without decoding when no selector needs the
    decoded object."""
    sel = sel or parse_selectors(info, query)
    head = b'{"apiVersion":"' + info.api_version.encode() + b'","kind":"' + info.kind.encode() + b'",'
    splice = raw and sel.empty
    limit = parse_int(query, "limit") or 0
    cont = query.get("continue") or ""
    rv = query.get("resourceVersion") or ""
    rvm = query.get("resourceVersionMatch") or ""
    if rvm and rvm not in ("NotOlderThan", "Exact"):
        raise errors.bad_request(
            f'resourceVersionMatch: Unsupported value: "{rvm}": supported values: "Exact", "NotOlderThan"'
        )
    if rvm and not rv:
        raise errors.bad_request(
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless "
            "resourceVersion is provided"
        )
    if cont and rv:
        raise errors.bad_request("specifying resource version is not allowed when using continue")
    if rvm == "Exact" and rv == "0":
        raise errors.bad_request('resourceVersionMatch "Exact" is forbidden for resourceVersion "0"')
    revision = 0
    start_key: str | None = None
    prefix = info.prefix(namespace)
    if cont:
        revision, start = decode_continue(cont)
        start_key = prefix + start
    elif rv and rv != "0":
        n = parse_resource_version(rv)
        if rvm == "Exact" or (not rvm and limit > 0):
            revision = n
        else:
            current = await ctx.storage.current_revision()
            if current < n:
                raise errors.ApiError(
                    504,
                    "Timeout",
                    f"Timeout: Too large resource version: {n}, current: {current}",
                    {
                        "causes": [
                            {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
                        ],
                        "retryAfterSeconds": 1,
                    },
                )
    items: list[dict[str, Any]] = []
    last_key = ""
    more = False
    try:
        while True:
            page = max(limit - len(items), 0) if limit else 0
            if limit and not sel.empty:
                page = max(page, min(limit * 2, 500))
            res = await ctx.storage.list(info, namespace, revision=revision, limit=page, start_key=start_key)
            revision = res.revision
            stopped = False
            for i, kv in enumerate(res.items):
                last_key = kv.key
                fast = raw_item(kv, head) if splice else None
                if fast is not None:
                    items.append(fast)
                    if limit and len(items) >= limit:
                        stopped = True
                        more = i < len(res.items) - 1 or res.more
                        break
                    continue
                obj = from_storage(info, decode(kv))
                if sel.matches(obj):
                    items.append(dumps(obj) if raw else obj)
                    if limit and len(items) >= limit:
                        stopped = True
                        more = i < len(res.items) - 1 or res.more
                        break
            if stopped or not res.more or not res.items:
                if not stopped:
                    more = False
                break
            start_key = res.items[-1].key
    except errors.ApiError as e:
        if cont and e.code == 410:
            raise errors.ApiError(410, "Expired", _TOO_OLD_CONTINUE) from None
        raise
    meta: dict[str, Any] = {"resourceVersion": str(revision)}
    if more:
        meta["continue"] = encode_continue(revision, last_key[len(prefix) :])
    return items, meta


async def handle_list(
    ctx: ApiContext, request: web.Request, info: ResourceInfo, namespace: str | None, out: Output
) -> web.Response:
    if not out.yaml and not out.as_kind and not shares_core_events(info):
        # Plain JSON: splice the stored bytes (a 5,000-pod LIST without decoding 5,000 objects).
        raw_items, meta = await list_objects(ctx, info, namespace, request.query, raw=True)
        body = (
            b'{"kind":"' + info.list_kind.encode() + b'","apiVersion":"' + info.api_version.encode()
            + b'","metadata":' + dumps(meta) + b',"items":[' + b",".join(raw_items) + b"]}"
        )
        return web.Response(body=body, content_type="application/json")
    items, meta = await list_objects(ctx, info, namespace, request.query)
    return reply(render_list(ctx, request, info, items, meta, out), out)
