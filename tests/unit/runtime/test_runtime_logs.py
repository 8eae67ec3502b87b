"""CRI k8s-file log parsing and pods/log options."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from peapod.node.runtime.logs import LogOptions, follow_logs, format_line, parse_line, read_logs

LOG = (
    b"2016-10-06T00:17:09.669794202Z stdout F first\n"
    b"2016-10-06T00:17:10.000000001+00:00 stderr F oops\n"
    b"garbage line\n"
    b"2016-10-06T00:17:11.5Z stdout P par\n"
    b"2016-10-06T00:17:11.6Z stdout F tial\n"
    b"2016-10-06T02:17:12.000000000+02:00 stdout F last\n"
)


def _append(p, data: bytes) -> None:
    with open(p, "ab") as f:
        f.write(data)


def test_parse_line() -> None:
    e = parse_line(b"2016-10-06T00:17:09.669794202Z stdout F log line\n")
    assert e is not None
    assert e.timestamp == datetime(2016, 10, 6, 0, 17, 9, 669794, tzinfo=UTC)
    assert e.timestamp_text == "2016-10-06T00:17:09.669794202Z"
    assert (e.stream, e.partial, e.content) == ("stdout", False, b"log line")
    e = parse_line(b"2026-11-24T01:29:07.221773396+00:00 stderr P  two  spaces")
    assert e and e.content == b" two  spaces" and e.partial and e.timestamp_text.endswith("396Z")
    assert parse_line(b"2016-10-06T00:17:09Z stdout F ") .content == b""  # type: ignore[union-attr]
    for bad in (b"", b"x stdout F a", b"2016-10-06T00:17:09Z stdin F a", b"2016-10-06T00:17:09Z stdout X a"):
        assert parse_line(bad) is None


def test_offset_converted_to_utc() -> None:
    e = parse_line(b"2016-10-06T02:17:12.000000000+02:00 stdout F last")
    assert e and e.timestamp_text == "2016-10-06T00:17:12.000000000Z"


def test_format_roundtrip() -> None:
    ts = datetime(2020, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    e = parse_line(format_line(ts, "stderr", b"hi", partial=True))
    assert e and e.timestamp == ts and e.stream == "stderr" and e.partial and e.content == b"hi"


@pytest.mark.parametrize(
    ("opts", "expected"),
    [
        (LogOptions(), b"first\noops\npartial\nlast\n"),
        (LogOptions(stream="stdout"), b"first\npartial\nlast\n"),
        (LogOptions(tail=2), b"partial\nlast\n"),
        (LogOptions(tail=0), b""),
        (LogOptions(tail=100), b"first\noops\npartial\nlast\n"),
        (LogOptions(limit_bytes=8), b"first\noo"),
        (LogOptions(since=datetime(2016, 10, 6, 0, 17, 10, tzinfo=UTC)), b"oops\npartial\nlast\n"),
        (LogOptions(timestamps=True, tail=1), b"2016-10-06T00:17:12.000000000Z last\n"),
        (LogOptions(timestamps=True, tail=2, stream="stdout"),
         b"2016-10-06T00:17:11.5Z par2016-10-06T00:17:11.6Z tial\n2016-10-06T00:17:12.000000000Z last\n"),
    ],
)
def test_read_logs(tmp_path, opts: LogOptions, expected: bytes) -> None:
    p = tmp_path / "c.log"
    p.write_bytes(LOG)
    assert read_logs(p, opts) == expected


def test_tail_groups_partials_per_stream(tmp_path) -> None:
    p = tmp_path / "c.log"
    p.write_bytes(
        b"2020-01-01T00:00:00Z stdout P ab\n"
        b"2020-01-01T00:00:01Z stderr F err\n"
        b"2020-01-01T00:00:02Z stdout F cd\n"
        b"2020-01-01T00:00:03Z stderr P tail-no-newline\n"
    )
    assert read_logs(p, LogOptions(tail=1)) == b"tail-no-newline"
    assert read_logs(p, LogOptions(tail=2)) == b"abcd\ntail-no-newline"
    assert read_logs(p, LogOptions(tail=3)) == b"aberr\ncd\ntail-no-newline"


def test_missing_file_reads_empty(tmp_path) -> None:
    assert read_logs(tmp_path / "nope.log") == b""


async def test_follow_sees_new_lines_rotation_and_ends_when_done(tmp_path) -> None:
    p = tmp_path / "c.log"
    ts = datetime(2020, 1, 1, tzinfo=UTC)
    p.write_bytes(format_line(ts, "stdout", b"one"))
    state = {"step": 0, "done": False}

    async def fake_sleep(_: float) -> None:
        # each poll, the "container" writes something new
        state["step"] += 1
        if state["step"] == 1:
            _append(p, format_line(ts, "stdout", b"two") + format_line(ts, "stderr", b"half")[:-3])
        elif state["step"] == 2:
            _append(p, b"lf\n")
        elif state["step"] == 3:  # rotation: the file is replaced
            new = tmp_path / "c.log.new"
            new.write_bytes(format_line(ts, "stdout", b"three"))
            new.replace(p)
        else:
            state["done"] = True

    async def done() -> bool:
        return state["done"]

    chunks = [c async for c in follow_logs(p, LogOptions(follow=True), done=done, sleep=fake_sleep)]
    assert b"".join(chunks) == b"one\ntwo\nhalf\nthree\n"


async def test_follow_respects_limit_bytes(tmp_path) -> None:
    p = tmp_path / "c.log"
    ts = datetime(2020, 1, 1, tzinfo=UTC)
    p.write_bytes(format_line(ts, "stdout", b"abcdef"))

    async def never() -> bool:
        raise AssertionError("should stop on the byte limit first")

    chunks = [c async for c in follow_logs(p, LogOptions(follow=True, limit_bytes=3), done=never)]
    assert b"".join(chunks) == b"abc"
