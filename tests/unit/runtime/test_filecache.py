"""JsonFileCache: parsed once per change of the file, dropped when it vanishes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from peapod.node.runtime.filecache import JsonFileCache


def test_reparses_only_when_the_file_changes(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    p.write_text(json.dumps({"a": 1}))
    cache = JsonFileCache()
    first = cache.load(p)
    assert first == {"a": 1} and cache.load(p) is first  # unchanged file: the same parsed object

    tmp = tmp_path / "state.tmp"  # runc and peapod replace their state files by rename
    tmp.write_text(json.dumps({"a": 2}))
    os.replace(tmp, p)
    assert cache.load(p) == {"a": 2}

    st = p.stat()
    p.write_text(json.dumps({"a": 3}))  # same size, rewritten in place with the same mtime
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert cache.load(p) == {"a": 3}


def test_vanished_and_broken_files(tmp_path: Path) -> None:
    p = tmp_path / "meta.json"
    p.write_text("{}")
    cache = JsonFileCache()
    cache.load(p)
    p.unlink()
    with pytest.raises(FileNotFoundError):
        cache.load(p)
    assert len(cache) == 0
    p.write_text("{not json")
    with pytest.raises(json.JSONDecodeError):
        cache.load(p)
    cache.forget(p)
    assert len(cache) == 0
