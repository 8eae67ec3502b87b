"""Step lines of `peapod up` / `peapod run-example`: plain in logs, rich on a terminal, records in JSON mode."""

from __future__ import annotations

import io
import logging

import pytest
from rich.console import Console

from peapod.cli.progress import Steps


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_steps_are_one_line_each_with_changed_details() -> None:
    out, clock = io.StringIO(), FakeClock()
    steps = Steps("plain", stream=out, clock=clock)
    with steps.step("starting") as st:
        st.update("a")
        st.update("a", completed=1, total=2)  # same detail: no new line
        st.update("b", completed=2, total=2)
        clock.now += 1.25
    steps.info("done")
    assert out.getvalue().splitlines() == ["    a", "    b", "ok starting (1.2s)", "done"]


def test_a_failed_plain_step_leaves_the_error_line_alone() -> None:
    out = io.StringIO()
    steps = Steps("plain", stream=out, clock=FakeClock())
    with pytest.raises(RuntimeError), steps.step("checking"):
        raise RuntimeError("no")
    assert out.getvalue() == ""


def test_terminal_steps_show_a_mark_and_the_time() -> None:
    out, clock = io.StringIO(), FakeClock()
    console = Console(file=out, force_terminal=True, width=100, color_system=None)
    steps = Steps("tty", stream=out, clock=clock, console=console)
    with steps.step("building") as st:
        st.update("STEP 1/2", completed=1, total=2)
        clock.now += 2
    with pytest.raises(ValueError), steps.step("waiting"):
        raise ValueError
    text = out.getvalue()
    assert "✓ building (2.0s)" in text and "✗ waiting (0.0s)" in text


def test_log_mode_writes_records(caplog: pytest.LogCaptureFixture) -> None:
    steps = Steps("log", stream=io.StringIO(), clock=FakeClock())
    with caplog.at_level(logging.INFO, logger="peapod"), steps.step("control plane") as st:
        st.update("listening")
    assert [r.getMessage() for r in caplog.records] == ["listening", "ok control plane (0.0s)"]


def test_the_mode_follows_the_stream() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert Steps(stream=io.StringIO()).mode == "plain"
    assert Steps(stream=Tty()).mode == "tty"
