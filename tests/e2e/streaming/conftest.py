"""Marks the streaming end-to-end tests (real kubectl against tests/e2e/streaming/fakeapi.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

KUBECTL = shutil.which("kubectl")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.e2e)
            if KUBECTL is None:
                item.add_marker(pytest.mark.skip(reason="kubectl not installed"))
