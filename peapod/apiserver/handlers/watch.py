"""WATCH: newline-delimited JSON events streamed from the watch cache."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from peapod.api import errors
from peapod.api.resources import ResourceInfo
from peapod.apiserver.codec import from_storage
from peapod.apiserver.context import ApiContext
from peapod.apiserver.handlers.common import Selector, _include_object, parse_bool, parse_int, parse_selectors
from peapod.apiserver.handlers.read import list_objects, parse_resource_version
from peapod.apiserver.negotiation import JSON, Output, dumps
from peapod.apiserver.watchcache import CachedEvent, Subscription

INITIAL_EVENTS_END = "k8s.io/initial-events-end"
_POLL = 1.0  # how often an idle watch checks that its client is still connected (seconds)


class _Stream:
    """Writes watch events in the negotiated shape."""

    def __init__(
        self, ctx: ApiContext, request: web.Request, info: ResourceInfo, out: Output, resp: web.StreamResponse
    ) -> None:
        self.ctx = ctx
        self.request = request
        self.info = info
        self.out = out
        self.resp = resp

    def _shape(self, obj: dict[str, Any]) -> dict[str, Any]:
        if self.out.as_kind == "Table":
            from peapod.apiserver.tables import to_table

            return to_table(
                self.info, [obj], now=self.ctx.clock.now(), include_object=_include_object(self.request)
            )
        if self.out.as_kind.startswith("PartialObjectMetadata"):
            return {
                "kind": "PartialObjectMetadata",
                "apiVersion": f"meta.k8s.io/{self.out.as_version}",
                "metadata": obj.get("metadata", {}),
            }
        return obj

    def line(self, type_: str, obj: dict[str, Any]) -> bytes:
        return dumps({"type": type_, "object": self._shape(obj)}) + b"\n"

    def cached_line(self, type_: str, ev: CachedEvent) -> bytes:
        """The event's line; the object's encoding is shared by every watcher of the same form."""
        if self.out.as_kind:
            return self.line(type_, from_storage(self.info, ev.obj))
        form = self.info.api_version
        body = ev.encoded.get(form)
        if body is None:
            body = ev.encoded[form] = dumps(from_storage(self.info, ev.obj))
        return b'{"type":"' + type_.encode() + b'","object":' + body + b"}\n"

    async def send(self, type_: str, obj: dict[str, Any]) -> None:
        await self.resp.write(self.line(type_, obj))

    async def write(self, data: bytes) -> None:
        await self.resp.write(data)

    async def bookmark(self, rv: int, initial_end: bool = False) -> None:
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {INITIAL_EVENTS_END: "true"}
        obj = {"kind": self.info.kind, "apiVersion": self.info.api_version, "metadata": meta}
        await self.resp.write(dumps({"type": "BOOKMARK", "object": obj}) + b"\n")

    async def error(self, err: errors.ApiError) -> None:
        await self.resp.write(dumps({"type": "ERROR", "object": err.status()}) + b"\n")


def classify(
    ev: CachedEvent, sel: Selector, info: ResourceInfo, key_prefix: str
) -> tuple[str, dict[str, Any]] | None:
    """The event type this watcher sees for a store event (kube's cacheWatcher rules), or None."""
    if not ev.key.startswith(key_prefix):
        return None
    if ev.type == "DELETE":
        return ("DELETED", ev.obj) if sel.empty or sel.matches(from_storage(info, ev.obj)) else None
    if sel.empty:
        return ("ADDED" if ev.created else "MODIFIED"), ev.obj
    cur = sel.matches(from_storage(info, ev.obj))
    old = ev.prev is not None and not ev.created and sel.matches(from_storage(info, ev.prev))
    if cur and old:
        return "MODIFIED", ev.obj
    if cur:
        return "ADDED", ev.obj
    if old:
        assert ev.prev is not None
        prev = dict(ev.prev)
        prev["metadata"] = dict(prev.get("metadata") or {})
        prev["metadata"]["resourceVersion"] = str(ev.revision)
        return "DELETED", prev
    return None


async def handle_watch(
    ctx: ApiContext,
    request: web.Request,
    info: ResourceInfo,
    namespace: str | None,
    name: str | None,
    out: Output,
) -> web.StreamResponse:
    q = request.query
    sel = parse_selectors(info, q, name=name)
    rv = q.get("resourceVersion") or ""
    rvm = q.get("resourceVersionMatch") or ""
    bookmarks = parse_bool(q, "allowWatchBookmarks")
    send_initial_raw = q.get("sendInitialEvents")
    send_initial = parse_bool(q, "sendInitialEvents")
    timeout = parse_int(q, "timeoutSeconds")
    if send_initial_raw not in (None, ""):
        if rvm != "NotOlderThan":
            raise errors.bad_request(
                "sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch "
                "unless resourceVersionMatch is set to NotOlderThan"
            )
    elif rvm:
        raise errors.bad_request(
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch "
            "unless sendInitialEvents is provided"
        )
    if send_initial and not bookmarks:
        raise errors.bad_request(
            "allowWatchBookmarks: Forbidden: allowWatchBookmarks must be set when sendInitialEvents is true"
        )
    cache = await ctx.caches.get(info.prefix(None))
    key_prefix = info.prefix(namespace)

    initial: list[dict[str, Any]] = []
    synthetic = send_initial or (send_initial_raw in (None, "") and rv in ("", "0"))
    if synthetic:
        list_query = {
            "labelSelector": q.get("labelSelector", ""),
            "fieldSelector": q.get("fieldSelector", ""),
        }
        if send_initial and rv not in ("", "0"):
            list_query.update(resourceVersion=rv, resourceVersionMatch="NotOlderThan")
        initial, meta = await list_objects(ctx, info, namespace, list_query, sel)
        after = int(meta["resourceVersion"])
    elif rv in ("", "0"):
        after = await ctx.storage.current_revision()  # sendInitialEvents=false: changes from now on
    else:
        after = parse_resource_version(rv)

    resp = web.StreamResponse(status=200)
    resp.content_type = JSON
    resp.enable_chunked_encoding()
    resp.headers["Cache-Control"] = "no-cache, private"
    stream = _Stream(ctx, request, info, out, resp)
    try:
        sub = cache.subscribe(after)
    except errors.ApiError as e:
        await resp.prepare(request)
        await stream.error(e)
        return resp
    try:
        await resp.prepare(request)
        for obj in initial:
            await stream.send("ADDED", obj)
        if send_initial:
            await stream.bookmark(after, initial_end=True)
        await _pump(ctx, request, stream, sub, sel, info, key_prefix, bookmarks, timeout)
    except (ConnectionResetError, asyncio.CancelledError, RuntimeError):
        pass
    finally:
        sub.close()
    return resp


_MAX_BATCH = 64


async def _pump(
    ctx: ApiContext,
    request: web.Request,
    stream: _Stream,
    sub: Subscription,
    sel: Selector,
    info: ResourceInfo,
    key_prefix: str,
    bookmarks: bool,
    timeout: int | None,
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (timeout if timeout is not None else ctx.default_watch_timeout)
    next_bookmark = loop.time() + ctx.bookmark_interval
    last_sent = sub.after
    while True:
        now = loop.time()
        if now >= deadline:
            return
        if bookmarks and now >= next_bookmark:
            if sub.progress > last_sent:
                last_sent = sub.progress
            await stream.bookmark(last_sent)
            next_bookmark = now + ctx.bookmark_interval
        if sub.pending():
            ev = sub.get_nowait()
        else:
            wait = min(deadline, next_bookmark if bookmarks else deadline) - now
            try:
                ev = await asyncio.wait_for(sub.get(), timeout=max(0.0, min(wait, _POLL)))
            except TimeoutError:
                transport = request.transport
                if transport is None or transport.is_closing():
                    return
                continue
        # Everything already queued goes out in one write: far fewer TLS records and syscalls
        # when many events arrive at once (watch fan-out).
        batch: list[bytes] = []
        while True:
            if ev is None:
                if batch:
                    await stream.write(b"".join(batch))
                return  # cache restarted or we fell behind: the client re-watches
            shown = classify(ev, sel, info, key_prefix)
            if shown is not None:
                type_, obj = shown
                if obj is ev.obj:
                    batch.append(stream.cached_line(type_, ev))
                else:
                    batch.append(stream.line(type_, from_storage(info, obj)))
            last_sent = ev.revision
            if len(batch) >= _MAX_BATCH or not sub.pending():
                break
            ev = sub.get_nowait()
        if batch:
            await stream.write(b"".join(batch))
