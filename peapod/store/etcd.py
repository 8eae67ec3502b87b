"""The Store contract on a real etcd v3 cluster, through etcd's JSON gRPC gateway (no grpc dependency).

etcd already is a revisioned KV log, so every Store call maps onto one etcd request:

- ``create``: txn ``create_revision(key) == 0 -> put`` else KeyExistsError.
- ``update``: txn ``create_revision > 0 and mod_revision == expected -> put(prev_kv)`` else a range
  read of the key tells ConflictError(current) from KeyNotFoundError.
- ``delete``: the same guard (the mod_revision compare only when ``expected_revision`` > 0) ->
  ``delete_range(prev_kv)``; the result is the previous value stamped with the txn's revision.
- ``list``: one range ``[max(prefix, start_key + "\\0"), prefix_end)``; ListResult.revision is the
  requested revision, or the header revision of a "now" read (pass it back to pin later pages).
- ``watch``: a streaming ``POST /v3/watch`` with ``start_revision = after + 1`` and ``prev_kv``; when
  the stream ends or its member dies, it reopens (on the next endpoint) from the last delivered
  revision + 1, so consumers see no gaps and no duplicates.

Wire format (etcd 3.4 gateway, checked against etcd-server 3.4.23): every body is JSON, keys and values
base64, int64 fields as decimal strings, zero/false/empty fields omitted. Errors come back as
``{"error", "code", "message"}`` with the gRPC code (11 OutOfRange for compacted/future revisions,
14 Unavailable for no leader / timeouts). Watch responses are newline-delimited ``{"result": ...}``.

Compaction bookkeeping: etcd has no call that reports its compact revision. ``compacted_revision``
remembers the highest compaction it has seen (its own ``compact`` calls, ``compact_revision`` from a
cancelled watch) and verifies it with one range read at that revision: if the read fails as compacted
someone else compacted further, and a watch from that revision makes etcd report the exact value.
``compact(r)`` keeps the state at ``r`` readable (``list(revision=r)`` works, as in etcd) and
``watch(after)`` requires ``after >= compacted_revision()``, so no event at or before ``r`` is needed.

Failover: calls go to the preferred endpoint and move to the next on connection failures, timeouts and
"no leader" answers (every request carries ``hasleader`` metadata, so a member cut off from the
quorum refuses instead of hanging). Reads are retried freely. Writes are retried too, which is safe
because every write is a compare-and-swap that applies at most once; when a retry's guard fails after
an attempt whose outcome is unknown, the write raises StoreUnavailableError instead of a misleading
KeyExists/Conflict/NotFound error (see ``_write``). When nothing answers within ``retry_window``
seconds the call raises StoreUnavailableError. A watch stream on a member that dies or loses its
leader is reopened on the next member; a member that hangs without closing the stream is not
detected (etcd 3.4 has no server-side watch heartbeat by default).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from peapod.store.base import (
    CompactedError,
    ConflictError,
    Event,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    ListResult,
    StoreError,
    StoreUnavailableError,
)

_HEADERS = {"Grpc-Metadata-hasleader": "true"}  # a member without a leader refuses (does not hang)
_GRPC_OUT_OF_RANGE = 11
_GRPC_UNAVAILABLE = 14
_GRPC_DEADLINE = 4
_GRPC_RESOURCE_EXHAUSTED = 8
# Unavailable answers that prove the request was not applied, so even a write may go elsewhere.
_NOT_APPLIED = ("no leader", "not capable", "too many requests", "server stopped")
_COMPACTED_MSG = "required revision has been compacted"
_FUTURE_MSG = "required revision is a future revision"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(data: str | None) -> bytes:
    return base64.b64decode(data) if data else b""


def _enc(key: str) -> str:
    return _b64(key.encode())


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with ``prefix`` (b"\\0" = to the end)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\0"
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _kv(raw: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=_unb64(raw.get("key")).decode(),
        value=_unb64(raw.get("value")),
        create_revision=int(raw.get("create_revision", 0)),
        mod_revision=int(raw.get("mod_revision", 0)),
    )


def _header_revision(resp: dict[str, Any]) -> int:
    return int(resp.get("header", {}).get("revision", 0))


def event_from_wire(raw: dict[str, Any]) -> Event:
    """One watch event from its gateway JSON (type PUT is the omitted default)."""
    kv = raw["kv"]
    prev = _kv(raw["prev_kv"]) if raw.get("prev_kv") else None
    if raw.get("type") == "DELETE":
        # A delete carries only the key and the delete's revision; the last value comes from prev_kv
        # (missing only if a compaction raced past the previous version).
        return Event(
            type="DELETE",
            kv=KeyValue(
                key=_unb64(kv.get("key")).decode(),
                value=prev.value if prev else b"",
                create_revision=prev.create_revision if prev else 0,
                mod_revision=int(kv.get("mod_revision", 0)),
            ),
            prev=prev,
        )
    cur = _kv(kv)
    return Event(type="PUT", kv=cur, prev=prev, created=int(kv.get("version", 0)) == 1)


class _EtcdError(Exception):
    """An error answer from etcd: gRPC ``code`` and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Transient(Exception):
    """This endpoint cannot answer now; ``applied_unknown`` when a write may have gone through."""

    def __init__(self, message: str, *, applied_unknown: bool) -> None:
        super().__init__(message)
        self.applied_unknown = applied_unknown


def _classify(code: int, message: str) -> Exception:
    if code in (_GRPC_UNAVAILABLE, _GRPC_DEADLINE, _GRPC_RESOURCE_EXHAUSTED):
        return _Transient(message, applied_unknown=not any(m in message for m in _NOT_APPLIED))
    return _EtcdError(code, message)


class EtcdStore:
    """Store over an etcd v3 cluster. Create with ``await EtcdStore.open(endpoints)``."""

    def __init__(
        self,
        endpoints: list[str],
        session: aiohttp.ClientSession,
        *,
        request_timeout: float = 5.0,
        connect_timeout: float = 2.0,
        retry_window: float = 15.0,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is required")
        self._endpoints = [e.rstrip("/") for e in endpoints]
        self._session = session
        self._current = 0
        self._request_timeout = aiohttp.ClientTimeout(total=request_timeout, sock_connect=connect_timeout)
        self._watch_timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout)
        self._created_timeout = connect_timeout + request_timeout
        self._retry_window = retry_window
        self._compact_rev = 0
        self._closed = False
        self._watch_responses: set[aiohttp.ClientResponse] = set()

    @classmethod
    async def open(
        cls,
        endpoints: list[str],
        *,
        request_timeout: float = 5.0,
        connect_timeout: float = 2.0,
        retry_window: float = 15.0,
    ) -> EtcdStore:
        """Connect and check that the cluster answers (StoreUnavailableError otherwise)."""
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        store = cls(
            endpoints,
            session,
            request_timeout=request_timeout,
            connect_timeout=connect_timeout,
            retry_window=retry_window,
        )
        try:
            await store.current_revision()
        except BaseException:
            await store.close()
            raise
        return store

    @property
    def endpoints(self) -> list[str]:
        return list(self._endpoints)

    @property
    def preferred_endpoint(self) -> str:
        """The endpoint the next request (or a new watch stream) goes to first."""
        return self._endpoints[self._current]

    async def close(self) -> None:
        self._closed = True
        for resp in list(self._watch_responses):
            resp.close()
        await self._session.close()

    # -- transport -----------------------------------------------------------------------------

    def _advance(self, failed: int) -> None:
        if self._current == failed:
            self._current = (failed + 1) % len(self._endpoints)

    async def _post(self, endpoint: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            async with self._session.post(
                endpoint + path, json=body, headers=_HEADERS, timeout=self._request_timeout
            ) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as e:
            raise _Transient(f"{endpoint}: {e}", applied_unknown=False) from e
        except (aiohttp.ClientError, TimeoutError) as e:
            raise _Transient(f"{endpoint}: {e!r}", applied_unknown=True) from e
        try:
            data = json.loads(text)
        except ValueError:
            raise _Transient(
                f"{endpoint}: HTTP {status}: {text[:200]}", applied_unknown=status not in (502, 503)
            ) from None
        if status == 200 and isinstance(data, dict) and "error" not in data:
            return data
        if isinstance(data, dict) and "code" in data:
            raise _classify(int(data["code"]), str(data.get("message") or data.get("error")))
        raise _Transient(f"{endpoint}: HTTP {status}: {text[:200]}", applied_unknown=True)

    async def _call(self, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """POST to the preferred endpoint, failing over while the cluster is unreachable.

        Returns the answer and whether an earlier attempt failed in a way that leaves its outcome
        unknown (it may have been applied; see :meth:`_write`).
        """
        if self._closed:
            raise StoreUnavailableError("store is closed")
        deadline = time.monotonic() + self._retry_window
        delay = 0.05
        last: Exception | None = None
        ambiguous = False
        while True:
            for _ in range(len(self._endpoints)):
                idx = self._current
                try:
                    return await self._post(self._endpoints[idx], path, body), ambiguous
                except _Transient as e:
                    self._advance(idx)
                    ambiguous = ambiguous or e.applied_unknown
                    last = e
            if time.monotonic() + delay > deadline or self._closed:
                raise StoreUnavailableError(f"etcd cluster unavailable ({self._endpoints}): {last}") from last
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _write(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        """Run a guarded txn, returning the answer of a txn whose guard held.

        Every write is a compare-and-swap, so it applies at most once however often it is sent: after
        an attempt with an unknown outcome (timeout, connection lost mid-request) the txn goes to the
        next member. If the retry's guard holds, the first attempt cannot have applied; if it fails,
        the first attempt may have been the change that broke it, so the answer is
        StoreUnavailableError rather than a KeyExists/Conflict/NotFound error about our own write.
        """
        try:
            resp, ambiguous = await self._call("/v3/kv/txn", body)
        except _EtcdError as e:
            raise StoreError(f"etcd: {e.message}") from None
        if not resp.get("succeeded") and ambiguous:
            raise StoreUnavailableError(f"etcd write to {key} may or may not have been applied")
        return resp

    async def _range(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return (await self._call("/v3/kv/range", body))[0]
        except _EtcdError as e:
            raise await self._revision_error(e, int(body.get("revision", 0))) from None

    async def _revision_error(self, e: _EtcdError, requested: int) -> Exception:
        if _COMPACTED_MSG in e.message:
            return CompactedError(requested, await self.compacted_revision())
        if _FUTURE_MSG in e.message:
            return FutureRevisionError(requested, await self.current_revision())
        return StoreError(f"etcd: {e.message}")

    # -- reads ---------------------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        resp = await self._range({"key": _enc(key)})
        kvs = resp.get("kvs") or []
        return _kv(kvs[0]) if kvs else None

    async def list(
        self, prefix: str, *, revision: int = 0, limit: int = 0, start_key: str | None = None
    ) -> ListResult:
        bprefix = prefix.encode()
        begin = bprefix or b"\0"
        if start_key is not None:
            begin = max(begin, start_key.encode() + b"\0")
        body: dict[str, Any] = {"key": _b64(begin), "range_end": _b64(prefix_end(bprefix))}
        if revision > 0:
            body["revision"] = str(revision)
        if limit > 0:
            body["limit"] = str(limit)
        resp = await self._range(body)
        items = [_kv(raw) for raw in resp.get("kvs") or []]
        return ListResult(
            items=items,
            revision=revision if revision > 0 else _header_revision(resp),
            more=bool(resp.get("more", False)),
        )

    async def current_revision(self) -> int:
        # A linearizable (default) read: its header revision is the cluster's newest revision.
        resp = await self._range({"key": _b64(b"\0"), "count_only": True})
        return _header_revision(resp)

    # -- writes --------------------------------------------------------------------------------

    async def create(self, key: str, value: bytes) -> KeyValue:
        k = _enc(key)
        resp = await self._write(
            key,
            {
                "compare": [{"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
                "success": [{"request_put": {"key": k, "value": _b64(value)}}],
            },
        )
        if not resp.get("succeeded"):
            raise KeyExistsError(key)
        rev = _header_revision(resp)
        return KeyValue(key=key, value=value, create_revision=rev, mod_revision=rev)

    def _guards(self, k: str, expected_revision: int) -> list[dict[str, Any]]:
        guards: list[dict[str, Any]] = [
            {"key": k, "target": "CREATE", "result": "GREATER", "create_revision": "0"}
        ]
        if expected_revision > 0:
            guards.append(
                {"key": k, "target": "MOD", "result": "EQUAL", "mod_revision": str(expected_revision)}
            )
        return guards

    def _failed(self, key: str, resp: dict[str, Any]) -> StoreError:
        """The error for a txn whose guard failed; its failure branch read the key."""
        ranges = resp.get("responses") or [{}]
        kvs = ranges[0].get("response_range", {}).get("kvs") or []
        if not kvs:
            return KeyNotFoundError(key)
        return ConflictError(key, _kv(kvs[0]))

    async def update(self, key: str, value: bytes, expected_revision: int) -> KeyValue:
        k = _enc(key)
        guards = self._guards(k, expected_revision)
        if expected_revision <= 0:  # mod_revision is never 0 for a live key: always a conflict
            guards.append({"key": k, "target": "MOD", "result": "EQUAL", "mod_revision": "0"})
        resp = await self._write(
            key,
            {
                "compare": guards,
                "success": [{"request_put": {"key": k, "value": _b64(value), "prev_kv": True}}],
                "failure": [{"request_range": {"key": k}}],
            },
        )
        if not resp.get("succeeded"):
            raise self._failed(key, resp)
        prev = resp["responses"][0].get("response_put", {}).get("prev_kv") or {}
        rev = _header_revision(resp)
        return KeyValue(
            key=key, value=value, create_revision=int(prev.get("create_revision", rev)), mod_revision=rev
        )

    async def delete(self, key: str, expected_revision: int = 0) -> KeyValue:
        k = _enc(key)
        resp = await self._write(
            key,
            {
                "compare": self._guards(k, expected_revision),
                "success": [{"request_delete_range": {"key": k, "prev_kv": True}}],
                "failure": [{"request_range": {"key": k}}],
            },
        )
        if not resp.get("succeeded"):
            raise self._failed(key, resp)
        prevs = resp["responses"][0].get("response_delete_range", {}).get("prev_kvs") or []
        if not prevs:  # the guard saw the key live in the same txn, so this cannot happen
            raise StoreError(f"etcd deleted nothing for {key}")
        prev = _kv(prevs[0])
        return KeyValue(
            key=key,
            value=prev.value,
            create_revision=prev.create_revision,
            mod_revision=_header_revision(resp),
        )

    # -- compaction ----------------------------------------------------------------------------

    async def compact(self, revision: int) -> None:
        """Compact etcd at ``revision`` (physically). Compacting at or below an earlier compaction
        is a no-op; a revision beyond the newest one raises FutureRevisionError."""
        if revision <= 0:
            return
        try:
            await self._call("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        except _EtcdError as e:
            if _COMPACTED_MSG in e.message:
                await self.compacted_revision()  # learn the newer compaction someone else did
                return
            raise await self._revision_error(e, revision) from None
        self._compact_rev = max(self._compact_rev, revision)

    async def compacted_revision(self) -> int:
        known = self._compact_rev
        probe = max(known, 1)
        try:
            await self._call("/v3/kv/range", {"key": _b64(b"\0"), "count_only": True, "revision": str(probe)})
            return known  # readable at ``known``: etcd has not compacted past it
        except _EtcdError as e:
            if _COMPACTED_MSG not in e.message:
                raise StoreError(f"etcd: {e.message}") from None
        # Compacted past ``probe`` by someone else: a watch from there gets the exact revision.
        self._compact_rev = max(self._compact_rev, await self._probe_compaction(probe))
        return self._compact_rev

    async def _probe_compaction(self, start: int) -> int:
        body = {"create_request": {"key": _b64(b"\0"), "start_revision": str(start)}}
        deadline = time.monotonic() + self._retry_window
        last: Exception | None = None
        while time.monotonic() < deadline and not self._closed:
            idx = self._current
            try:
                async with asyncio.timeout(self._created_timeout):
                    async with self._session.post(
                        self._endpoints[idx] + "/v3/watch", json=body, headers=_HEADERS,
                        timeout=self._watch_timeout,
                    ) as resp, contextlib.aclosing(_results(resp)) as results:  # fmt: skip
                        async for result in results:
                            if int(result.get("compact_revision", 0)) > 0:
                                return int(result["compact_revision"])
                            if result.get("canceled"):
                                break
            except (aiohttp.ClientError, TimeoutError, ValueError, _Transient, _EtcdError) as e:
                last = e
            self._advance(idx)
            await asyncio.sleep(0.05)
        raise StoreUnavailableError(f"could not learn etcd's compact revision: {last}")

    # -- watch ---------------------------------------------------------------------------------

    async def watch(self, prefix: str, after_revision: int) -> AsyncIterator[Event]:
        compacted = await self.compacted_revision()
        if after_revision < compacted:
            raise CompactedError(after_revision, compacted)
        bprefix = prefix.encode()
        create: dict[str, Any] = {
            "key": _b64(bprefix or b"\0"),
            "range_end": _b64(prefix_end(bprefix)),
            "prev_kv": True,
        }
        next_rev = after_revision + 1
        failing_since: float | None = None
        delay = 0.05
        while not self._closed:
            idx = self._current
            error: Exception | None = _Transient(
                "watch stream ended before it was created", applied_unknown=False
            )
            try:
                async with contextlib.aclosing(self._stream(idx, create, next_rev)) as results:
                    async for result in results:
                        failing_since, delay, error = None, 0.05, None  # the stream works
                        events = result.get("events") or []
                        for raw in events:
                            ev = event_from_wire(raw)
                            if ev.revision >= next_rev:
                                yield ev
                        if events:  # all events of one revision come in one response
                            next_rev = max(next_rev, int(events[-1]["kv"]["mod_revision"]) + 1)
            except (aiohttp.ClientError, TimeoutError, ValueError, _Transient, _EtcdError) as e:
                if self._closed:
                    return
                error = e
            self._advance(idx)  # reopen on the next member, from next_rev
            if error is None:
                continue
            now = time.monotonic()
            failing_since = failing_since or now
            if now - failing_since > self._retry_window:
                raise StoreUnavailableError(f"etcd watch cannot reconnect: {error}") from error
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _stream(self, idx: int, create: dict[str, Any], start: int) -> AsyncIterator[dict[str, Any]]:
        """The watch results of one stream on one member, from ``start``; raises when it breaks."""
        body = {"create_request": {**create, "start_revision": str(start)}}
        async with self._session.post(
            self._endpoints[idx] + "/v3/watch", json=body, headers=_HEADERS, timeout=self._watch_timeout
        ) as resp:
            self._watch_responses.add(resp)
            try:
                async with contextlib.aclosing(
                    _results(resp, first_timeout=self._created_timeout)
                ) as results:
                    async for result in results:
                        if int(result.get("compact_revision", 0)) > 0:
                            compact = int(result["compact_revision"])
                            self._compact_rev = max(self._compact_rev, compact)
                            raise CompactedError(start - 1, compact)
                        if result.get("canceled"):  # e.g. the member lost its leader
                            raise _Transient(result.get("cancel_reason", "canceled"), applied_unknown=False)
                        yield result
            finally:
                self._watch_responses.discard(resp)


async def _results(resp: aiohttp.ClientResponse, first_timeout: float | None = None) -> AsyncIterator[dict]:
    """The ``result`` objects of a newline-delimited gateway watch stream.

    ``first_timeout`` bounds the wait for the first message (the "created" answer), so a member that
    accepts connections but cannot serve is abandoned.
    """
    if resp.status != 200:
        raise _Transient(f"watch: HTTP {resp.status}: {(await resp.text())[:200]}", applied_unknown=False)
    buf = b""
    first = True
    while True:
        if first and first_timeout is not None:
            async with asyncio.timeout(first_timeout):
                chunk = await resp.content.readany()
        else:
            chunk = await resp.content.readany()
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if not line.strip():
                continue
            msg = json.loads(line)
            if "error" in msg:
                err = msg["error"]
                raise _classify(int(err.get("code", _GRPC_UNAVAILABLE)), str(err.get("message", err)))
            first = False
            yield msg.get("result", {})


__all__ = ["EtcdStore", "event_from_wire", "prefix_end"]
