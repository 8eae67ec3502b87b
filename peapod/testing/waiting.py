"""Polling for tests and harnesses: wait until a condition holds, or fail saying what was awaited."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_until(cond: Callable[[], T], timeout: float = 60.0, what: str = "the condition holds",
               interval: float = 0.2) -> T:
    """Poll ``cond()`` until it returns something truthy (returned); AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting until {what}")
        time.sleep(interval)


async def eventually(check: Callable[[], Any | Awaitable[Any]], timeout: float = 20.0,
                     what: str = "the condition holds", interval: float = 0.05,
                     retry_on: tuple[type[BaseException], ...] = ()) -> Any:
    """The asynchronous :func:`wait_until`: poll ``check()`` (a function or a coroutine function) on
    the running loop until it returns something truthy, which is returned. Exceptions in
    ``retry_on`` count as "not yet"; the AssertionError after ``timeout`` shows the last result."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while True:
        try:
            got = check()
            if inspect.isawaitable(got):
                got = await got
        except retry_on as e:
            last = e
        else:
            if got:
                return got
            last = got
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting until {what}: last {last!r}")
        await asyncio.sleep(interval)
