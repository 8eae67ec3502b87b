"""Progress of multi-step commands (``peapod up``, ``peapod run-example``): one line per step.

On a terminal a step shows a rich spinner (and a bar when it counts something) while it runs and
turns into ``✓ title (1.2s)`` or ``✗ title`` when it ends. Elsewhere (a pipe, a log file, CI) each
step is one plain line when it ends, with changed details on indented lines while it runs, so logs
stay readable. In JSON log mode each line is a log record instead.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Literal

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

Mode = Literal["tty", "plain", "log"]
log = logging.getLogger("peapod")


class Step:
    """The running step: ``update()`` changes its detail line (and its bar, given ``total``)."""

    def __init__(self, steps: Steps, title: str) -> None:
        self._steps = steps
        self.title = title
        self.detail = ""
        self._progress: Progress | None = None
        self._task: int | None = None

    def update(self, detail: str, *, completed: int | None = None, total: int | None = None) -> None:
        changed = detail != self.detail
        self.detail = detail
        if self._progress is not None and self._task is not None:
            counts = {} if completed is None else {"completed": completed, "total": total,
                                                   "count": f"{completed}/{total}" if total else ""}
            self._progress.update(self._task, description=self._describe(), **counts)
        elif detail and changed:
            self._steps._line(f"    {detail}")

    def _describe(self) -> str:
        return f"{self.title}: [dim]{self.detail}[/]" if self.detail else self.title


class Steps:
    """A sequence of steps, printed to ``stream`` (stderr by default)."""

    def __init__(self, mode: Mode | None = None, *, stream: IO[str] | None = None,
                 clock: Callable[[], float] = time.monotonic, console: Console | None = None) -> None:
        self.stream = stream or sys.stderr
        self.mode: Mode = mode or ("tty" if self.stream.isatty() else "plain")
        self.clock = clock
        self.console = console or Console(file=self.stream, highlight=False,
                                          force_terminal=True if self.mode == "tty" else None)

    def _line(self, text: str) -> None:
        if self.mode == "log":
            log.info(text.strip())
        elif self.mode == "tty":
            self.console.print(text)
        else:
            print(text, file=self.stream, flush=True)

    def info(self, text: str) -> None:
        """A line that is not a step (e.g. how to use what was started)."""
        if self.mode == "tty":
            self.console.print(text, markup=False, highlight=False)
        else:
            self._line(text)

    @contextmanager
    def step(self, title: str) -> Iterator[Step]:
        """Run one step; an exception marks it failed and propagates."""
        st = Step(self, title)
        start = self.clock()
        progress = None
        if self.mode == "tty":
            progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=20),
                                TextColumn("{task.fields[count]}"), TimeElapsedColumn(), console=self.console,
                                transient=True)
            st._progress = progress
            st._task = progress.add_task(title, total=None, count="")
            progress.start()
        ok = False
        try:
            yield st
            ok = True
        finally:
            if progress is not None:
                progress.stop()
            took = self.clock() - start
            if self.mode == "tty":
                mark = "[green]✓[/]" if ok else "[red]✗[/]"
                self.console.print(f"{mark} {title} [dim]({took:.1f}s)[/]")
            elif ok:  # a failed step says nothing here: the error line that follows says why
                self._line(f"ok {title} ({took:.1f}s)")
