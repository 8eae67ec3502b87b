"""AtomicWriter: kubelet's layout, atomic updates, removals, validation."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from peapod.node.volumes.atomic_writer import AtomicWriter, file_mode, validate_path
from peapod.node.volumes.types import FileProjection

NOW = datetime(2024, 1, 1, 0, 0, 0, tzinfo=UTC)


def fp(text: str, mode: int = 0o644) -> FileProjection:
    return FileProjection(text.encode(), mode)


def writer(tmp_path: Path, hook=None) -> AtomicWriter:
    return AtomicWriter(tmp_path, now=lambda: NOW, hook=hook)


def test_layout(tmp_path: Path) -> None:
    assert writer(tmp_path).write({"a": fp("1"), "dir/b": fp("2", 0o400)})
    names = sorted(os.listdir(tmp_path))
    ts = [n for n in names if n.startswith("..2")]
    assert len(ts) == 1 and re.fullmatch(r"\.\.2024_01_01_00_00_00\.\d+", ts[0])
    assert sorted(set(names) - set(ts)) == ["..data", "a", "dir"]
    assert os.readlink(tmp_path / "..data") == ts[0]
    assert os.readlink(tmp_path / "a") == "..data/a"
    assert os.readlink(tmp_path / "dir") == "..data/dir"
    assert (tmp_path / "a").read_text() == "1"
    assert (tmp_path / "dir" / "b").read_text() == "2"
    assert file_mode(tmp_path / ts[0]) == 0o755
    assert file_mode(tmp_path / ts[0] / "a") == 0o644
    assert file_mode(tmp_path / ts[0] / "dir" / "b") == 0o400


def test_unchanged_payload_writes_nothing(tmp_path: Path) -> None:
    w = writer(tmp_path)
    assert w.write({"a": fp("1")})
    before = os.readlink(tmp_path / "..data")
    assert not w.write({"a": fp("1")})
    assert os.readlink(tmp_path / "..data") == before


def test_update_and_removal(tmp_path: Path) -> None:
    w = writer(tmp_path)
    w.write({"a": fp("1"), "b": fp("2"), "d/x": fp("3")})
    old = os.readlink(tmp_path / "..data")
    assert w.write({"a": fp("1 new"), "c": fp("new")})
    new = os.readlink(tmp_path / "..data")
    assert new != old and not (tmp_path / old).exists()
    assert sorted(n for n in os.listdir(tmp_path) if not n.startswith("..")) == ["a", "c"]
    assert (tmp_path / "a").read_text() == "1 new"
    assert (tmp_path / "c").read_text() == "new"
    assert not os.path.lexists(tmp_path / "b") and not os.path.lexists(tmp_path / "d")


def test_removing_a_key_alone_rewrites(tmp_path: Path) -> None:
    w = writer(tmp_path)
    w.write({"a": fp("1"), "b": fp("2")})
    assert w.write({"a": fp("1")})
    assert not os.path.lexists(tmp_path / "b")


def test_reader_never_sees_a_mix(tmp_path: Path) -> None:
    """At every step of an update, the files reachable through the user-visible names are all old
    or all new."""
    old = {"a": fp("old-a"), "b": fp("old-b"), "sub/c": fp("old-c")}
    new = {"a": fp("new-a"), "b": fp("new-b"), "sub/c": fp("new-c")}
    snapshots: list[tuple[str, dict[str, str]]] = []

    def observe(step: str) -> None:
        seen = {}
        for key in ("a", "b", "sub/c"):
            try:
                seen[key] = (tmp_path / key).read_text()
            except FileNotFoundError:
                seen[key] = "<missing>"
        snapshots.append((step, seen))

    writer(tmp_path).write(old)
    writer(tmp_path, hook=observe).write(new)
    steps = [s for s, _ in snapshots]
    assert steps == ["ts_dir", "payload", "data_tmp", "swap", "visible", "old_removed", "done"]
    for step, seen in snapshots:
        versions = {v.split("-")[0] for v in seen.values()}
        assert len(versions) == 1, (step, seen)
    assert snapshots[2][1]["a"] == "old-a" and snapshots[3][1]["a"] == "new-a"


def test_failure_before_swap_keeps_old_content(tmp_path: Path) -> None:
    w = writer(tmp_path)
    w.write({"a": fp("1")})

    def boom(_ts: Path) -> None:
        raise PermissionError("chown failed")

    with pytest.raises(PermissionError):
        w.write({"a": fp("2")}, set_perms=boom)
    assert (tmp_path / "a").read_text() == "1"
    assert len([n for n in os.listdir(tmp_path) if n.startswith("..2")]) == 1


def test_repairs_missing_user_visible_link(tmp_path: Path) -> None:
    w = writer(tmp_path)
    w.write({"a": fp("1")})
    (tmp_path / "a").unlink()  # as if the agent crashed between the swap and the links
    assert not w.write({"a": fp("1")})
    assert (tmp_path / "a").read_text() == "1"


def test_stale_ts_dirs_removed(tmp_path: Path) -> None:
    w = writer(tmp_path)
    w.write({"a": fp("1")})
    (tmp_path / "..2023_01_01_00_00_00.1").mkdir()  # left by a crash
    w.write({"a": fp("2")})
    assert len([n for n in os.listdir(tmp_path) if n.startswith("..2")]) == 1


@pytest.mark.parametrize(("path", "msg"), [
    ("", 'invalid path: must not be empty: ""'),
    ("/abs", "invalid path: must be relative path: /abs"),
    ("a/../b", "invalid path: must not contain '..': a/../b"),
    ("..data", "invalid path: must not start with '..': ..data"),
    ("x" * 256, "invalid path: filenames must be less than or equal to 255 characters"),
])
def test_validate_path(path: str, msg: str) -> None:
    with pytest.raises(ValueError) as e:
        validate_path(path)
    assert str(e.value) == msg


def test_invalid_payload_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        writer(tmp_path).write({"ok": fp("1"), "../escape": fp("2")})
    assert os.listdir(tmp_path) == []
