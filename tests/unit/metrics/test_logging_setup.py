"""`--log-level` / `--log-format json`: one JSON object per line."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from peapod.cli.logging_setup import setup_logging
from peapod.cli.main import build_parser


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level, hook = list(root.handlers), root.level, sys.excepthook
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)
    sys.excepthook = hook
    logging.captureWarnings(False)


def test_json_lines_with_level_logger_extra_fields_and_exceptions() -> None:
    out = io.StringIO()
    setup_logging("info", "json", stream=out)
    log = logging.getLogger("peapod.test")
    log.debug("hidden")
    log.info("pod %s started", "web", extra={"pod": "ns/web", "obj": object()})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(ln) for ln in lines)
    assert first["level"] == "info" and first["logger"] == "peapod.test" and first["msg"] == "pod web started"
    assert first["pod"] == "ns/web" and first["obj"].startswith("<object")
    assert first["time"].endswith("Z")
    assert second["level"] == "error" and "ValueError: boom" in second["exc"]


def test_text_format_and_level() -> None:
    out = io.StringIO()
    setup_logging("warning", "text", stream=out)
    logging.getLogger("x").info("quiet")
    logging.getLogger("x").warning("loud")
    assert out.getvalue().rstrip().endswith("WARNING x: loud")
    assert "quiet" not in out.getvalue()


def test_uncaught_exceptions_are_json_too() -> None:
    out = io.StringIO()
    setup_logging("info", "json", stream=out)
    try:
        raise RuntimeError("crash")
    except RuntimeError as e:
        sys.excepthook(type(e), e, e.__traceback__)
    rec = json.loads(out.getvalue())
    assert rec["level"] == "critical" and "RuntimeError: crash" in rec["exc"]


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError):
        setup_logging("loud", "text")
    with pytest.raises(ValueError):
        setup_logging("info", "xml")


def test_flags_on_up_and_server() -> None:
    for cmd in ("up", "server"):
        args = build_parser().parse_args([cmd, "--log-format", "json", "--log-level", "debug"])
        assert (args.log_format, args.log_level) == ("json", "debug")
        assert build_parser().parse_args([cmd]).log_format == "text"
