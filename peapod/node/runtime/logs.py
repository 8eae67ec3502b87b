"""CRI ``k8s-file`` container logs (written by conmon): parsing and reading for pods/log.

Each file line is ``<RFC3339Nano time> <stdout|stderr> <F|P> <content>``; ``P`` marks a partial
line whose rest follows in the next entry. conmon writes times as ``...+00:00``; the API shows ``Z``.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

_TS = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


@dataclass(frozen=True)
class LogEntry:
    timestamp: datetime  # microsecond precision, UTC
    timestamp_text: str  # RFC3339Nano with 'Z', nanoseconds kept
    stream: str  # "stdout" | "stderr"
    partial: bool
    content: bytes  # without the trailing newline


def parse_timestamp(raw: bytes) -> tuple[datetime, str]:
    m = _TS.match(raw)
    if not m:
        raise ValueError(f"bad log timestamp {raw!r}")
    base, frac, zone = m.group(1).decode(), (m.group(2) or b"").decode(), m.group(3).decode()
    offset = "+00:00" if zone == "Z" else zone
    dt = datetime.fromisoformat(f"{base}.{(frac + '000000')[:6]}{offset}").astimezone(UTC)
    if offset != "+00:00":
        base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    text = f"{base}.{frac}Z" if frac else f"{base}Z"
    return dt, text


def parse_line(line: bytes) -> LogEntry | None:
    """One file line (with or without its newline); None if malformed."""
    line = line.rstrip(b"\n")
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        return None
    try:
        dt, text = parse_timestamp(parts[0])
    except ValueError:
        return None
    stream = parts[1].decode(errors="replace")
    if stream not in ("stdout", "stderr") or parts[2] not in (b"F", b"P"):
        return None
    return LogEntry(dt, text, stream, parts[2] == b"P", parts[3] if len(parts) == 4 else b"")


def format_line(ts: datetime, stream: str, content: bytes, *, partial: bool = False) -> bytes:
    """A k8s-file line, as conmon writes it (for fakes and tests)."""
    stamp = ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000+00:00"
    return b"%s %s %s %s\n" % (stamp.encode(), stream.encode(), b"P" if partial else b"F", content)


@dataclass(frozen=True)
class LogOptions:
    """pods/log query: tailLines, sinceTime (sinceSeconds resolved by the caller), timestamps,
    limitBytes, follow; ``stream`` filters one stream ("all" keeps both)."""

    tail: int | None = None
    since: datetime | None = None
    timestamps: bool = False
    limit_bytes: int | None = None
    follow: bool = False
    stream: str = "all"


def _render(e: LogEntry, timestamps: bool) -> bytes:
    body = e.content if e.partial else e.content + b"\n"
    return (e.timestamp_text.encode() + b" " + body) if timestamps else body


def _select(entries: Iterable[LogEntry], opts: LogOptions) -> Iterator[LogEntry]:
    for e in entries:
        if opts.stream != "all" and e.stream != opts.stream:
            continue
        if opts.since is not None and e.timestamp < opts.since:
            continue
        yield e


def _tail(entries: Iterable[LogEntry], n: int) -> list[LogEntry]:
    """The entries making up the last ``n`` logical lines. A line is a stream's partial entries plus
    the full one ending it (stdout and stderr interleave in the file); an unterminated last line
    counts as a line. Entries keep file order."""
    if n <= 0:
        return []
    items = list(entries)
    lines: list[list[int]] = []
    pending: dict[str, list[int]] = {}
    for i, e in enumerate(items):
        pending.setdefault(e.stream, []).append(i)
        if not e.partial:
            lines.append(pending.pop(e.stream))
    lines.extend(pending.values())
    lines.sort(key=lambda line: line[-1])
    return [items[i] for i in sorted(i for line in lines[-n:] for i in line)]


def _entries_from(data: bytes) -> list[LogEntry]:
    out = []
    for raw in data.splitlines():
        e = parse_line(raw)
        if e is not None:
            out.append(e)
    return out


class _Limiter:
    def __init__(self, limit: int | None) -> None:
        self.left = limit

    def cut(self, chunk: bytes) -> bytes:
        if self.left is None:
            return chunk
        chunk = chunk[: self.left]
        self.left -= len(chunk)
        return chunk

    @property
    def exhausted(self) -> bool:
        return self.left is not None and self.left <= 0


def read_logs(path: str | os.PathLike[str], opts: LogOptions = LogOptions()) -> bytes:
    """The log as pods/log returns it (no follow). A missing file reads as empty."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return b""
    entries = list(_select(_entries_from(data), opts))
    if opts.tail is not None:
        entries = _tail(entries, opts.tail)
    limiter = _Limiter(opts.limit_bytes)
    out = bytearray()
    for e in entries:
        out += limiter.cut(_render(e, opts.timestamps))
        if limiter.exhausted:
            break
    return bytes(out)


async def follow_logs(
    path: str | os.PathLike[str],
    opts: LogOptions,
    *,
    done: Callable[[], Awaitable[bool]],
    poll_interval: float = 0.2,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[bytes]:
    """Yield the selected log so far, then new entries as they are written, until ``done()`` is true
    and the file has no more data. Survives rotation (the file replaced by a new one)."""
    limiter = _Limiter(opts.limit_bytes)
    first = read_logs(path, LogOptions(tail=opts.tail, since=opts.since, timestamps=opts.timestamps,
                                       limit_bytes=opts.limit_bytes, stream=opts.stream))
    if first:
        yield limiter.cut(first)
    if limiter.exhausted:
        return
    # Continue after what existed when we read it.
    f = None
    ino = None
    pos = 0
    try:
        try:
            st = os.stat(path)
            ino, pos = st.st_ino, st.st_size
        except FileNotFoundError:
            pass
        buf = b""
        while True:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                st = None
            if st is not None and (ino != st.st_ino or st.st_size < pos):
                if f is not None:
                    # drain the old file before switching
                    f.seek(pos)
                    buf += f.read()
                    f.close()
                    f = None
                ino, pos = st.st_ino, 0
            if f is None and st is not None:
                f = open(path, "rb")  # noqa: ASYNC230 - local file, kept open across polls
            chunk = b""
            if f is not None:
                f.seek(pos)
                chunk = f.read()
                pos += len(chunk)
            buf += chunk
            if b"\n" in buf:
                complete, _, buf = buf.rpartition(b"\n")
                out = bytearray()
                for e in _select(_entries_from(complete + b"\n"), opts):
                    out += _render(e, opts.timestamps)
                if out:
                    yield limiter.cut(bytes(out))
                    if limiter.exhausted:
                        return
            if not chunk:
                if await done():
                    # one last look for data written just before exit
                    if f is not None:
                        f.seek(pos)
                        tail = f.read()
                        if tail:
                            pos += len(tail)
                            buf += tail
                            continue
                    return
                await sleep(poll_interval)
    finally:
        if f is not None:
            f.close()
