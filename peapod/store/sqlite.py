"""The embedded default store: one SQLite file holding a revisioned log (kine's design).

Layout:

- ``live(key, value, create_rev, mod_rev)``: the current value of every key; ``get`` and ``list`` at the
  current revision read only this table.
- ``log(rev, key, value, create_rev, prev_rev, deleted)``: one row per revision, for watch and for
  ``list`` at a past revision. A DELETE row carries the deleted value; ``prev_rev`` is the key's previous
  ``mod_rev`` (0 when the write created the key).
- ``meta(name, value)``: ``compact_rev``.

Revisions: a global counter; the first write is revision 1 and ``current_revision()`` is 0 on an empty
store. Every create/update/delete takes exactly the next revision (so revisions are contiguous) and
writes ``live`` and ``log`` in the same transaction.

Durability and concurrency: WAL with ``synchronous=FULL``. A single writer thread owns the only writing
connection; it takes every queued write, applies them in one transaction and commits once (group
commit), then resolves the callers' futures, so a write returns only after its commit is on disk and
survives kill -9. Reads run on a small thread pool, each thread with its own read-only connection and
its own WAL snapshot per call. An exclusive ``flock`` on ``<file>-lock`` keeps a second process from
opening the same store.

Watch: after each commit the writer hands the new events to the event loop, which appends them to an
in-memory ring of recent events and wakes the watchers. A watcher serves itself from the ring when it
covers the watcher's position and otherwise reads the log in batches, so slow or replaying watchers
never block the writer and live watchers cost no query per event.

Compaction (``compact(R)``) first records ``compact_rev = R``, then, in chunks that interleave with
normal writes, deletes every log row at or before R that is a delete or is superseded by a newer row at
or before R (so ``list`` at any revision >= R stays exact and the live value is never touched), then runs
``PRAGMA incremental_vacuum`` and a WAL checkpoint so the file really shrinks (the database is created
with ``auto_vacuum=INCREMENTAL``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS live (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    create_rev INTEGER NOT NULL,
    mod_rev INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS log (
    rev INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    create_rev INTEGER NOT NULL,
    prev_rev INTEGER NOT NULL,
    deleted INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS log_key_rev ON log (key, rev);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (name, value) VALUES ('compact_rev', 0);
"""

_REVS_SQL = "SELECT (SELECT max(rev) FROM log), (SELECT value FROM meta WHERE name = 'compact_rev')"
_WRITE_BATCH = 256  # most writes committed in one transaction
_COMPACT_CHUNK = 2000  # log rows examined per compaction transaction
_WATCH_BATCH = 500  # log rows read per watch query


def prefix_range(prefix: str) -> tuple[str, str | None]:
    """The half-open key range [lo, hi) holding exactly the keys that start with ``prefix``.

    ``hi`` is None when unbounded. UTF-8 byte order (SQLite's BINARY collation) equals code point order,
    so incrementing the last code point gives the upper bound.
    """
    chars = list(prefix)
    while chars:
        c = ord(chars[-1])
        if c < 0x10FFFF:
            c += 1
            if 0xD800 <= c <= 0xDFFF:  # surrogates cannot be stored; skip to the next scalar value
                c = 0xE000
            chars[-1] = chr(c)
            return prefix, "".join(chars)
        chars.pop()
    return prefix, None


def _range_sql(lo: str, hi: str | None, column: str = "key") -> tuple[str, list[Any]]:
    if hi is None:
        return f"{column} >= ?", [lo]
    return f"{column} >= ? AND {column} < ?", [lo, hi]


def _read_revs(conn: sqlite3.Connection) -> tuple[int, int]:
    """(current revision, compacted revision) in the connection's current snapshot."""
    top, compact = conn.execute(_REVS_SQL).fetchone()
    compact = compact or 0
    return max(top or 0, compact), compact


def _lock(path: Path) -> int:
    fd = os.open(f"{path}-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreUnavailableError(f"{path} is in use by another process") from None
    return fd


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


def _open_writer(path: Path) -> tuple[int, sqlite3.Connection, int, int]:
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_fd = _lock(path)
    try:
        conn = _connect(path)
        try:
            # auto_vacuum only takes effect before the first table exists, i.e. on a new file.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreUnavailableError(f"{path}: cannot enable WAL (journal_mode={mode})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA journal_size_limit = 67108864")
            conn.execute("PRAGMA cache_size = -32768")
            conn.execute("PRAGMA temp_store = MEMORY")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreUnavailableError(f"{path}: schema version {version} is newer than this peapod")
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            current, compact = _read_revs(conn)
        except BaseException:
            conn.close()
            raise
    except BaseException:
        os.close(lock_fd)
        raise
    return lock_fd, conn, current, compact


@dataclass
class _Op:
    kind: str
    args: tuple[Any, ...]
    future: asyncio.Future[Any]


_TXN_OPS = frozenset({"create", "update", "delete"})
# (future, result, exception) per op of one commit, and the events it produced in revision order.
_Result = tuple[asyncio.Future[Any], Any, BaseException | None]
_Deliver = Callable[[list[_Result], list[Event]], None]


class _Writer:
    """The only thread that writes. Batches queued writes into one transaction (group commit)."""

    def __init__(
        self, conn: sqlite3.Connection, current: int, loop: asyncio.AbstractEventLoop, deliver: _Deliver
    ) -> None:
        self._conn = conn
        self._rev = current
        self._loop = loop
        self._deliver = deliver
        self._queue: queue.SimpleQueue[_Op] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="peapod-sqlite-writer", daemon=True)
        self._thread.start()

    def submit(self, op: _Op) -> None:
        self._queue.put(op)

    def join(self) -> None:
        self._thread.join()

    def _post(self, results: list[_Result], events: list[Event]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is already closed: nobody is waiting
            self._loop.call_soon_threadsafe(self._deliver, results, events)

    def _run(self) -> None:
        try:
            while True:
                items = [self._queue.get()]
                while len(items) < _WRITE_BATCH:
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                group: list[_Op] = []
                for op in items:
                    if op.kind in _TXN_OPS:
                        group.append(op)
                        continue
                    if group:
                        self._commit(group)
                        group = []
                    if op.kind == "stop":
                        self._conn.close()
                        self._post([(op.future, None, None)], [])
                        return
                    self._solo(op)
                if group:
                    self._commit(group)
        except BaseException:  # pragma: no cover - a bug; make it loud rather than hang callers
            log.exception("sqlite writer thread died")
            raise

    # ---- transactional writes -------------------------------------------------------------------

    def _commit(self, group: list[_Op]) -> None:
        conn = self._conn
        start_rev = self._rev
        results: list[_Result] = []
        events: list[Event] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for op in group:
                    try:
                        kv, event = getattr(self, "_" + op.kind)(*op.args)
                    except StoreError as e:  # validation failed before anything was written
                        results.append((op.future, None, e))
                        continue
                    results.append((op.future, kv, None))
                    events.append(event)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            self._rev = start_rev
            log.error("sqlite store: write transaction failed: %s", e)
            failed = [(op.future, None, StoreUnavailableError(f"sqlite write failed: {e}")) for op in group]
            self._post(failed, [])
            return
        self._post(results, events)

    def _live(self, key: str) -> KeyValue | None:
        sql = "SELECT value, create_rev, mod_rev FROM live WHERE key = ?"
        row = self._conn.execute(sql, (key,)).fetchone()
        return KeyValue(key, row[0], row[1], row[2]) if row else None

    def _append(self, rev: int, key: str, value: bytes, create_rev: int, prev_rev: int, deleted: int) -> None:
        self._conn.execute(
            "INSERT INTO log (rev, key, value, create_rev, prev_rev, deleted) VALUES (?, ?, ?, ?, ?, ?)",
            (rev, key, value, create_rev, prev_rev, deleted),
        )
        self._rev = rev

    def _create(self, key: str, value: bytes) -> tuple[KeyValue, Event]:
        if self._conn.execute("SELECT 1 FROM live WHERE key = ?", (key,)).fetchone():
            raise KeyExistsError(key)
        rev = self._rev + 1
        self._conn.execute(
            "INSERT INTO live (key, value, create_rev, mod_rev) VALUES (?, ?, ?, ?)", (key, value, rev, rev)
        )
        self._append(rev, key, value, rev, 0, 0)
        kv = KeyValue(key, value, rev, rev)
        return kv, Event("PUT", kv, None, True)

    def _update(self, key: str, value: bytes, expected: int) -> tuple[KeyValue, Event]:
        cur = self._live(key)
        if cur is None:
            raise KeyNotFoundError(key)
        if cur.mod_revision != expected:
            raise ConflictError(key, cur)
        rev = self._rev + 1
        self._conn.execute("UPDATE live SET value = ?, mod_rev = ? WHERE key = ?", (value, rev, key))
        self._append(rev, key, value, cur.create_revision, cur.mod_revision, 0)
        kv = KeyValue(key, value, cur.create_revision, rev)
        return kv, Event("PUT", kv, cur, False)

    def _delete(self, key: str, expected: int) -> tuple[KeyValue, Event]:
        cur = self._live(key)
        if cur is None:
            raise KeyNotFoundError(key)
        if expected > 0 and cur.mod_revision != expected:
            raise ConflictError(key, cur)
        rev = self._rev + 1
        self._conn.execute("DELETE FROM live WHERE key = ?", (key,))
        self._append(rev, key, cur.value, cur.create_revision, cur.mod_revision, 1)
        kv = KeyValue(key, cur.value, cur.create_revision, rev)
        return kv, Event("DELETE", kv, cur, False)

    # ---- maintenance (each its own transaction) ---------------------------------------------------

    def _solo(self, op: _Op) -> None:
        try:
            result = getattr(self, "_" + op.kind)(*op.args)
        except StoreError as e:
            self._post([(op.future, None, e)], [])
        except sqlite3.Error as e:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            log.error("sqlite store: %s failed: %s", op.kind, e)
            self._post([(op.future, None, StoreUnavailableError(f"sqlite {op.kind} failed: {e}"))], [])
        else:
            self._post([(op.future, result, None)], [])

    def _compact_mark(self, revision: int) -> int:
        """Record the compacted revision; returns the previous one (>= revision means: nothing to do)."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            current, compact = _read_revs(conn)
            if revision > current:
                raise FutureRevisionError(revision, current)
            if revision > compact:
                conn.execute("UPDATE meta SET value = ? WHERE name = 'compact_rev'", (revision,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return compact

    def _compact_chunk(self, after: int, revision: int) -> int:
        """Drop superseded/deleted rows in (after, next chunk end]; returns the chunk end."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT rev FROM log WHERE rev > ? AND rev <= ? ORDER BY rev LIMIT 1 OFFSET ?",
                (after, revision, _COMPACT_CHUNK - 1),
            ).fetchone()
            end = row[0] if row else revision
            conn.execute(
                "DELETE FROM log WHERE rev > ? AND rev <= ? AND (deleted = 1 OR EXISTS ("
                " SELECT 1 FROM log AS n WHERE n.key = log.key AND n.rev > log.rev AND n.rev <= ?))",
                (after, end, revision),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return end

    def _vacuum(self) -> None:
        # execute() steps a row-less pragma once, which frees a single page; executescript() runs it
        # to completion.
        self._conn.executescript("PRAGMA incremental_vacuum;")
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


class SQLiteStore:
    """The Store protocol on one SQLite file. Open with ``await SQLiteStore.open(path)``.

    Bound to the event loop that opened it; any number of coroutines on that loop may use it at once.
    """

    def __init__(
        self,
        *,
        path: Path,
        loop: asyncio.AbstractEventLoop,
        lock_fd: int,
        conn: sqlite3.Connection,
        current: int,
        compact: int,
        ring_size: int,
        readers: int,
    ) -> None:
        self.path = path
        self._loop = loop
        self._lock_fd = lock_fd
        self._rev = current
        self._compact_rev = compact
        self._closed = False
        self._changed = asyncio.Event()
        self._ring: list[Event] = []
        self._ring_first = current + 1  # revision of self._ring[0]
        self._ring_size = ring_size
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="peapod-sqlite-read")
        self._writer = _Writer(conn, current, loop, self._on_commit)

    @classmethod
    async def open(cls, path: Path, *, ring_size: int = 4096, readers: int = 2) -> SQLiteStore:
        """Open (creating if needed) the store file at ``path``.

        ``ring_size``: recent events kept in memory for watchers (0 disables the ring; watchers then
        read the log). ``readers``: threads serving reads.
        """
        path = Path(path)
        loop = asyncio.get_running_loop()
        lock_fd, conn, current, compact = await asyncio.to_thread(_open_writer, path)
        return cls(
            path=path,
            loop=loop,
            lock_fd=lock_fd,
            conn=conn,
            current=current,
            compact=compact,
            ring_size=ring_size,
            readers=readers,
        )

    # ---- plumbing -------------------------------------------------------------------------------

    def _on_commit(self, results: list[_Result], events: list[Event]) -> None:
        """On the loop, in commit order: publish events, then acknowledge the writers."""
        if events:
            self._rev = events[-1].revision
            if self._ring_size > 0:
                self._ring.extend(events)
                if len(self._ring) > 2 * self._ring_size:
                    drop = len(self._ring) - self._ring_size
                    self._ring = self._ring[drop:]
                    self._ring_first += drop
            else:
                self._ring_first = self._rev + 1
            self._wake()
        for fut, result, exc in results:
            if fut.done():
                continue
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(result)

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailableError("store is closed")

    async def _submit(self, kind: str, *args: Any) -> Any:
        self._check_open()
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._writer.submit(_Op(kind, args, fut))
        return await fut

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            conn.execute("PRAGMA query_only = 1")
            conn.execute("PRAGMA cache_size = -32768")
            conn.execute("PRAGMA mmap_size = 268435456")
            self._local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[..., Any], *args: Any) -> Any:
        self._check_open()
        try:
            return await self._loop.run_in_executor(self._readers, fn, *args)
        except sqlite3.Error as e:
            raise StoreUnavailableError(f"sqlite read failed: {e}") from e

    def _snapshot(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``fn`` in one read transaction (one consistent WAL snapshot)."""
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    # ---- reads ----------------------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        # A primary-key lookup in WAL mode (readers never wait for the writer) takes tens of
        # microseconds: cheaper on the event loop's own connection than a hop to a reader thread,
        # whose handoff and GIL contention cost more than the read (every update starts with one).
        self._check_open()
        try:
            return self._get_sync(key)
        except sqlite3.Error as e:
            raise StoreUnavailableError(f"sqlite read failed: {e}") from e

    def _get_sync(self, key: str) -> KeyValue | None:
        row = (
            self._reader()
            .execute("SELECT value, create_rev, mod_rev FROM live WHERE key = ?", (key,))
            .fetchone()
        )
        return KeyValue(key, row[0], row[1], row[2]) if row else None

    async def list(
        self, prefix: str, *, revision: int = 0, limit: int = 0, start_key: str | None = None
    ) -> ListResult:
        if revision < 0 or limit < 0:
            raise ValueError("revision and limit must not be negative")
        return await self._read(
            self._snapshot, lambda conn: self._list_sync(conn, prefix, revision, limit, start_key)
        )

    def _list_sync(
        self, conn: sqlite3.Connection, prefix: str, revision: int, limit: int, start_key: str | None
    ) -> ListResult:
        current, compact = _read_revs(conn)
        lo, hi = prefix_range(prefix)
        params: dict[str, Any] = {"lo": lo, "hi": hi, "start": start_key, "rev": revision, "limit": limit + 1}
        where = "key >= :lo"
        if hi is not None:
            where += " AND key < :hi"
        if start_key is not None:
            where += " AND key > :start"
        tail = " LIMIT :limit" if limit else ""
        if revision in (0, current):
            at = current
            sql = f"SELECT key, value, create_rev, mod_rev FROM live WHERE {where} ORDER BY key{tail}"
        elif revision > current:
            raise FutureRevisionError(revision, current)
        elif revision < compact:
            raise CompactedError(revision, compact)
        else:
            at = revision
            sql = (
                "SELECT l.key, l.value, l.create_rev, l.rev FROM log AS l JOIN ("
                f" SELECT max(rev) AS r FROM log WHERE {where} AND rev <= :rev GROUP BY key"
                f") AS m ON l.rev = m.r WHERE l.deleted = 0 ORDER BY l.key{tail}"
            )
        rows = conn.execute(sql, params).fetchall()
        more = bool(limit) and len(rows) > limit
        if more:
            del rows[limit:]
        return ListResult([KeyValue(k, v, c, m) for k, v, c, m in rows], at, more)

    async def current_revision(self) -> int:
        return self._rev

    async def compacted_revision(self) -> int:
        return self._compact_rev

    # ---- writes ---------------------------------------------------------------------------------

    async def create(self, key: str, value: bytes) -> KeyValue:
        return await self._submit("create", key, bytes(value))

    async def update(self, key: str, value: bytes, expected_revision: int) -> KeyValue:
        return await self._submit("update", key, bytes(value), expected_revision)

    async def delete(self, key: str, expected_revision: int = 0) -> KeyValue:
        return await self._submit("delete", key, expected_revision)

    async def compact(self, revision: int) -> None:
        """Forget history at or before ``revision``. A revision already compacted is a no-op;
        FutureRevisionError if ``revision`` is newer than the current one."""
        if revision <= self._compact_rev:
            return
        previous = await self._submit("compact_mark", revision)
        if previous >= revision:
            return
        self._compact_rev = max(self._compact_rev, revision)
        after = 0  # rows kept by earlier compactions may be superseded now: rescan from the start
        while after < revision:
            after = await self._submit("compact_chunk", after, revision)
        await self._submit("vacuum")

    # ---- watch ----------------------------------------------------------------------------------

    async def watch(self, prefix: str, after_revision: int) -> AsyncIterator[Event]:
        """Every change under ``prefix`` after ``after_revision``, in order, until the store closes.

        CompactedError (raised by the first ``__anext__``) when ``after_revision`` is older than the
        compacted revision, or when a watcher reading the log falls behind a compaction.
        """
        self._check_open()
        if after_revision < self._compact_rev:
            raise CompactedError(after_revision, self._compact_rev)
        lo, hi = prefix_range(prefix)
        pos = after_revision
        while not self._closed:
            if self._rev <= pos:
                await self._changed.wait()
                continue
            start = pos + 1 - self._ring_first
            if start >= 0:
                events = self._ring[start:]
                for event in events:
                    pos = event.revision
                    if event.kv.key.startswith(prefix):
                        yield event
                continue
            events, top = await self._read(self._snapshot, lambda c, p=pos: self._events_sync(c, p, lo, hi))
            for event in events:
                pos = event.revision
                yield event
            if len(events) < _WATCH_BATCH:
                pos = max(pos, top)

    def _events_sync(
        self, conn: sqlite3.Connection, pos: int, lo: str, hi: str | None
    ) -> tuple[list[Event], int]:
        current, compact = _read_revs(conn)
        if pos < compact:
            raise CompactedError(pos, compact)
        where, params = _range_sql(lo, hi, "l.key")
        rows = conn.execute(
            "SELECT l.rev, l.key, l.value, l.create_rev, l.prev_rev, l.deleted, p.value"
            " FROM log AS l LEFT JOIN log AS p ON p.rev = l.prev_rev AND l.deleted = 0"
            f" WHERE l.rev > ? AND {where} ORDER BY l.rev LIMIT ?",
            [pos, *params, _WATCH_BATCH],
        ).fetchall()
        events = []
        for rev, key, value, create_rev, prev_rev, deleted, prev_value in rows:
            kv = KeyValue(key, value, create_rev, rev)
            if deleted:
                events.append(Event("DELETE", kv, KeyValue(key, value, create_rev, prev_rev)))
            else:
                prev = KeyValue(key, prev_value, create_rev, prev_rev) if prev_value is not None else None
                events.append(Event("PUT", kv, prev, create_rev == rev))
        return events, current

    # ---- lifecycle ------------------------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake()
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._writer.submit(_Op("stop", (), fut))
        await fut
        await asyncio.to_thread(self._writer.join)
        await asyncio.to_thread(self._readers.shutdown, True)
        with self._reader_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        os.close(self._lock_fd)
