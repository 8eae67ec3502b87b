"""subPath: validation, subPathExpr expansion, and escape attempts (symlinks, races)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from peapod.node.volumes.fake import FakeMounter
from peapod.node.volumes.subpath import (
    SubPathError,
    bind_subpath,
    expand,
    expand_subpath_expr,
    safe_mkdir,
    safe_open_subpath,
    validate_subpath,
)


def exact(text: str) -> str:
    return "^" + re.escape(text) + "$"



@pytest.fixture
def vol(tmp_path: Path) -> Path:
    v = tmp_path / "vol"
    (v / "data" / "deep").mkdir(parents=True)
    (v / "data" / "file").write_text("hello")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("host secret")
    return v


def _target(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def test_validate_subpath_messages() -> None:
    with pytest.raises(SubPathError, match=exact("error SubPath `/etc` must not be an absolute path")):
        validate_subpath("/etc")
    msg = "unable to provision SubPath `a/../../b`: must not contain '..'"
    with pytest.raises(SubPathError, match=exact(msg)):
        validate_subpath("a/../../b")
    validate_subpath("a/..b/c..")  # dots inside names are fine


def test_expand_semantics() -> None:
    env = {"A": "x", "B": "y"}.get
    assert expand("$(A)/$(B)", lambda k: env(k) or "") == "x/y"
    assert expand("$$(A)", lambda k: "?") == "$(A)"
    assert expand("$(A", lambda k: "?") == "$(A"
    assert expand("a$b$", lambda k: "?") == "a$b$"


def test_expand_subpath_expr() -> None:
    assert expand_subpath_expr("logs/$(POD_NAME)", {"POD_NAME": "web-1"}) == "logs/web-1"
    with pytest.raises(SubPathError, match=exact("missing value for A, B")):
        expand_subpath_expr("$(B)/$(A)/$(C)", {"C": "c", "A": ""})


def test_open_inside(vol: Path) -> None:
    assert _target(safe_open_subpath(vol, "data/file")) == str(vol / "data" / "file")
    assert _target(safe_open_subpath(vol, "data/deep")) == str(vol / "data" / "deep")


def test_symlink_inside_volume_is_allowed(vol: Path) -> None:
    (vol / "alias").symlink_to("data/deep")
    assert _target(safe_open_subpath(vol, "alias")) == str(vol / "data" / "deep")


@pytest.mark.parametrize("link", ["/", "../..", "../outside", "/etc"])
def test_symlink_escape_refused(vol: Path, link: str) -> None:
    (vol / "evil").symlink_to(link)
    with pytest.raises(SubPathError, match="not within volume path"):
        safe_open_subpath(vol, "evil")
    with pytest.raises(SubPathError, match=r"not within volume path|error resolving symlinks"):
        safe_open_subpath(vol, "evil/secret")


def test_nested_symlink_escape_refused(vol: Path, tmp_path: Path) -> None:
    (vol / "data" / "up").symlink_to("../../outside")
    with pytest.raises(SubPathError, match="not within volume path"):
        safe_open_subpath(vol, "data/up/secret")


def test_symlink_swapped_during_resolution(vol: Path, tmp_path: Path) -> None:
    """The check passes on a real directory, then an attacker replaces it with a symlink to the
    host: the component walk refuses it."""
    def swap() -> None:
        os.rename(vol / "data", vol / "data.real")
        (vol / "data").symlink_to(tmp_path / "outside")

    with pytest.raises(SubPathError, match=exact(f"unexpected symlink found {vol / 'data'}")):
        safe_open_subpath(vol, "data/deep", after_check=swap)


def test_final_component_swapped_to_symlink(vol: Path, tmp_path: Path) -> None:
    def swap() -> None:
        (vol / "data" / "file").unlink()
        (vol / "data" / "file").symlink_to(tmp_path / "outside" / "secret")

    with pytest.raises(SubPathError, match="unexpected symlink found"):
        safe_open_subpath(vol, "data/file", after_check=swap)


def test_missing_subpath(vol: Path) -> None:
    with pytest.raises(SubPathError, match="error resolving symlinks"):
        safe_open_subpath(vol, "nope")


def test_bind_mounts_the_checked_inode(vol: Path, tmp_path: Path) -> None:
    m = FakeMounter()
    target = tmp_path / "subpaths" / "0"
    assert bind_subpath(vol, "data/deep", target, m) == target
    assert target.is_dir()
    assert m.calls == [("bind_fd", str(vol / "data" / "deep"), str(target))]


def test_stale_bind_is_replaced(vol: Path, tmp_path: Path) -> None:
    """A mount at the target that is not the subPath's inode (the fake mounts nothing, so the target
    is its own empty dir) is unmounted and bound again."""
    m = FakeMounter()
    target = tmp_path / "subpaths" / "0"
    bind_subpath(vol, "data/deep", target, m)
    bind_subpath(vol, "data/deep", target, m)
    assert [c[0] for c in m.calls] == ["bind_fd", "unmount", "bind_fd"]


def test_bind_file_creates_file_target(vol: Path, tmp_path: Path) -> None:
    m = FakeMounter()
    target = tmp_path / "subpaths" / "1"
    bind_subpath(vol, "data/file", target, m)
    assert target.is_file() and m.calls[0][1] == str(vol / "data" / "file")


def test_bind_refuses_escape_without_mounting(vol: Path, tmp_path: Path) -> None:
    (vol / "evil").symlink_to("/")
    m = FakeMounter()
    with pytest.raises(SubPathError):
        bind_subpath(vol, "evil", tmp_path / "t", m)
    assert m.calls == [] and not (tmp_path / "t").exists()


def test_safe_mkdir(vol: Path, tmp_path: Path) -> None:
    safe_mkdir(vol, "new/a/b")
    assert (vol / "new" / "a" / "b").is_dir()
    (vol / "evil").symlink_to(tmp_path / "outside")
    with pytest.raises(SubPathError, match="is not within"):
        safe_mkdir(vol, "evil/created")
    assert not (tmp_path / "outside" / "created").exists()
