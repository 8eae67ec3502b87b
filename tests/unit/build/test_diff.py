"""The layer differ: an overlayfs upper dir -> OCI layer tar with whiteouts."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from peapod.build.diff import write_diff

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="overlayfs whiteouts need root")


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def diff(upper: Path, **kw: object) -> tuple[bytes, str]:
    buf = io.BytesIO()
    result = write_diff(upper, buf, **kw)  # type: ignore[arg-type]
    return buf.getvalue(), result.diff_id


def test_plain_files_links_and_order(tmp_path: Path) -> None:
    up = tmp_path / "upper"
    (up / "b" / "c").mkdir(parents=True)
    (up / "a.txt").write_text("A")
    (up / "b" / "c" / "f").write_text("F")
    os.chmod(up / "b" / "c" / "f", 0o750)
    os.link(up / "a.txt", up / "b" / "hard")
    os.symlink("../a.txt", up / "b" / "sym")
    data, diff_id = diff(up)
    m = members(data)
    assert list(m) == ["a.txt", "b", "b/c", "b/c/f", "b/hard", "b/sym"]
    assert m["b/hard"].islnk() and m["b/hard"].linkname == "a.txt"
    assert m["b/sym"].issym() and m["b/sym"].linkname == "../a.txt"
    assert m["b/c/f"].mode == 0o750 and m["b"].isdir()
    assert diff(up)[1] == diff_id  # the same dir gives the same tar


def test_skip_leaves_out_a_subtree(tmp_path: Path) -> None:
    up = tmp_path / "upper"
    (up / "proc").mkdir(parents=True)
    (up / "proc" / "x").write_text("")
    (up / "keep").write_text("k")
    data, _ = diff(up, skip=lambda rel: rel == "proc")
    assert list(members(data)) == ["keep"]


@pytest.fixture
def overlay(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    for d in (lower, upper, work, merged):
        d.mkdir()
    (lower / "etc").mkdir()
    (lower / "etc" / "gone").write_text("x")
    (lower / "etc" / "kept").write_text("x")
    (lower / "data").mkdir()
    (lower / "data" / "old").write_text("x")
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={lower},upperdir={upper},workdir={work},index=off", str(merged)], check=True)
    try:
        yield merged, upper
    finally:
        subprocess.run(["umount", str(merged)], check=True)


@root_only
def test_deletions_become_whiteouts_and_replaced_dirs_opaque(overlay: tuple[Path, Path]) -> None:
    merged, upper = overlay
    (merged / "etc" / "gone").unlink()
    subprocess.run(["rm", "-rf", str(merged / "data")], check=True)
    (merged / "data").mkdir()
    (merged / "data" / "new").write_text("n")
    (merged / "etc" / "added").write_text("a")
    m = members(diff(upper)[0])
    assert "etc/.wh.gone" in m and m["etc/.wh.gone"].isfile() and m["etc/.wh.gone"].size == 0
    assert "etc/kept" not in m  # unchanged lower files are not in the layer
    assert "etc/added" in m
    assert "data/.wh..wh..opq" in m and "data/new" in m and "data/old" not in m
    names = list(m)
    assert names.index("data") < names.index("data/.wh..wh..opq")
    # the upper dir's whiteout device itself never appears as a device entry
    assert not any(x.ischr() for x in m.values())


@root_only
def test_round_trip_through_the_unpacker(overlay: tuple[Path, Path], tmp_path: Path) -> None:
    from peapod.node.images.unpack import unpack_layer

    merged, upper = overlay
    (merged / "etc" / "gone").unlink()
    data, diff_id = diff(upper)
    dest = tmp_path / "unpacked"
    dest.mkdir()
    result = unpack_layer(io.BytesIO(data), dest)
    assert result.diff_id == diff_id
    st = os.lstat(dest / "etc" / "gone")  # back to an overlayfs whiteout
    assert os.major(st.st_rdev) == 0 and os.minor(st.st_rdev) == 0
