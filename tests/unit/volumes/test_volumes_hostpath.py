"""hostPath type checks: kubelet's creation rules and messages."""

from __future__ import annotations

import os
import re
import socket
import stat
from pathlib import Path

import pytest

from peapod.node.volumes.hostpath import check_host_path


def exact(text: str) -> str:
    return "^" + re.escape(text) + "$"



def test_unset_type_checks_nothing(tmp_path: Path) -> None:
    check_host_path(str(tmp_path / "missing"), None)
    check_host_path(str(tmp_path / "missing"), "")
    assert not (tmp_path / "missing").exists()


def test_directory_or_create(tmp_path: Path) -> None:
    p = tmp_path / "a" / "b"
    check_host_path(str(p), "DirectoryOrCreate")
    assert p.is_dir()
    check_host_path(str(p), "DirectoryOrCreate")  # exists: fine
    f = tmp_path / "f"
    f.write_text("")
    with pytest.raises(ValueError, match=exact(f"hostPath type check failed: {f} is not a directory")):
        check_host_path(str(f), "DirectoryOrCreate")


def test_file_or_create(tmp_path: Path) -> None:
    p = tmp_path / "f"
    check_host_path(str(p), "FileOrCreate")
    assert p.is_file() and stat.S_IMODE(p.stat().st_mode) & 0o644 == 0o644 & ~_umask()
    check_host_path(str(p), "FileOrCreate")
    with pytest.raises(FileNotFoundError):  # like kubelet, the parent is not created
        check_host_path(str(tmp_path / "nodir" / "f"), "FileOrCreate")
    with pytest.raises(ValueError, match=exact(f"hostPath type check failed: {tmp_path} is not a file")):
        check_host_path(str(tmp_path), "FileOrCreate")


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


@pytest.mark.parametrize(("kind", "what"), [
    ("Directory", "a directory"), ("File", "a file"), ("Socket", "a socket file"),
    ("CharDevice", "a character device"), ("BlockDevice", "a block device"),
])
def test_missing_path_fails_typed_checks(tmp_path: Path, kind: str, what: str) -> None:
    p = tmp_path / "missing"
    with pytest.raises(ValueError, match=exact(f"hostPath type check failed: {p} is not {what}")):
        check_host_path(str(p), kind)
    assert not p.exists()


def test_types_match(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    check_host_path(str(tmp_path), "Directory")
    check_host_path(str(f), "File")
    check_host_path("/dev/null", "CharDevice")
    sock_path = tmp_path / "s.sock"
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(sock_path))
        check_host_path(str(sock_path), "Socket")
        with pytest.raises(ValueError, match="is not a file"):
            check_host_path(str(sock_path), "File")
    finally:
        s.close()
    msg = "hostPath type check failed: /dev/null is not a block device"
    with pytest.raises(ValueError, match=exact(msg)):
        check_host_path("/dev/null", "BlockDevice")
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    check_host_path(str(link), "Directory")  # followed, as os.Stat does


def test_invalid_type() -> None:
    with pytest.raises(ValueError, match=exact("Weird is an invalid volume type")):
        check_host_path("/", "Weird")
