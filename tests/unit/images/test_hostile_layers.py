"""A corpus of malicious layer tars: each attack is refused or neutralised, and nothing outside the
target root changes. Every case runs with the kernel resolver (openat2 RESOLVE_IN_ROOT) and with the
userspace fallback walk."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from peapod.node.images.errors import LayerTooLargeError, UnsafeLayerError
from peapod.node.images.layers import LayerStore
from peapod.node.images.unpack import OPAQUE_XATTR, UnpackOptions, unpack_layer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="unpacking preserves ownership: needs root")


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", *, mode: int = 0o644,
          linkname: str = "", pax: dict[str, str] | None = None, size: int | None = None,
          devmajor: int = 0, devminor: int = 0, uid: int = 0) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.uid, info.gid = kind, mode, linkname, uid, uid
    info.devmajor, info.devminor = devmajor, devminor
    info.size = size if size is not None else (len(data) if kind == tarfile.REGTYPE else 0)
    if pax:
        info.pax_headers = dict(pax)
    return info, data


def mktar(*entries: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    return buf.getvalue()


def snapshot(top: Path, skip: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        if Path(dirpath) == skip or Path(dirpath).is_relative_to(skip):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p == skip:
                continue
            st = os.lstat(p)
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else ""
            out[str(p)] = (st.st_mode, st.st_nlink, st.st_size, st.st_mtime_ns, digest)
    return out


@pytest.fixture(params=[False, True], ids=["openat2", "userspace"])
def sandbox(request, tmp_path):
    """tmp_path/outside holds 'host' files; tmp_path/root is the layer root."""
    outside = tmp_path / "outside"
    (outside / "etc").mkdir(parents=True)
    (outside / "etc" / "shadow").write_text("root:$6$secret:19000::::::\n")
    (outside / "bin").mkdir()
    root = tmp_path / "root"
    root.mkdir()
    before = snapshot(tmp_path, root)

    class Box:
        pass

    box = Box()
    box.outside, box.root, box.tmp = outside, root, tmp_path
    box.opts = UnpackOptions(force_userspace_resolve=request.param)

    def unpack(data: bytes, **kw):
        opts = UnpackOptions(force_userspace_resolve=request.param, **kw)
        return unpack_layer(io.BytesIO(gzip.compress(data)), root, opts)

    box.unpack = unpack
    yield box
    assert snapshot(tmp_path, root) == before, "something outside the layer root changed"


def test_absolute_paths_are_neutralised(sandbox):
    target = sandbox.outside / "etc" / "pwned"
    sandbox.unpack(mktar(entry(str(target), data=b"x"), entry("/abs-root-file", data=b"y")))
    assert (sandbox.root / str(target).lstrip("/")).read_bytes() == b"x"
    assert (sandbox.root / "abs-root-file").read_bytes() == b"y"
    assert not target.exists()


@pytest.mark.parametrize("name", ["../escape", "a/../../escape", "./../../outside/etc/shadow",
                                  "a/b/../../../escape"])
def test_dotdot_traversal_is_refused(sandbox, name):
    with pytest.raises(UnsafeLayerError, match="escapes"):
        sandbox.unpack(mktar(entry("a/", tarfile.DIRTYPE, mode=0o755), entry(name, data=b"bad")))


def test_dotdot_inside_root_is_fine(sandbox):
    sandbox.unpack(mktar(entry("a/b/../c", data=b"ok")))
    assert (sandbox.root / "a" / "c").read_bytes() == b"ok"


def test_symlink_escape_then_write_through_it(sandbox):
    sandbox.unpack(mktar(
        entry("abs", tarfile.SYMTYPE, linkname=str(sandbox.outside / "etc")),
        entry("abs/shadow", data=b"owned"),
        entry("rel", tarfile.SYMTYPE, linkname="../../../../../.."),
        entry("rel/outside/etc/shadow", data=b"owned"),
        entry("abs/newdir/deep", data=b"owned"),  # missing dirs behind the symlink: created inside
    ))
    inner = sandbox.root / str(sandbox.outside).lstrip("/") / "etc"
    assert (inner / "shadow").read_bytes() == b"owned"
    assert (inner / "newdir" / "deep").read_bytes() == b"owned"
    assert (sandbox.root / "outside" / "etc" / "shadow").read_bytes() == b"owned"
    assert os.readlink(sandbox.root / "abs") == str(sandbox.outside / "etc")  # kept as data


def test_file_over_symlink_replaces_the_link(sandbox):
    shadow = sandbox.outside / "etc" / "shadow"
    sandbox.unpack(mktar(entry("evil", tarfile.SYMTYPE, linkname=str(shadow)),
                         entry("evil", data=b"replaced")))
    assert not (sandbox.root / "evil").is_symlink()
    assert (sandbox.root / "evil").read_bytes() == b"replaced"


def test_directory_over_symlink_replaces_the_link(sandbox):
    sandbox.unpack(mktar(entry("d", tarfile.SYMTYPE, linkname=str(sandbox.outside / "bin")),
                         entry("d", tarfile.DIRTYPE, mode=0o700), entry("d/f", data=b"in")))
    assert (sandbox.root / "d").is_dir() and not (sandbox.root / "d").is_symlink()
    assert stat.S_IMODE((sandbox.root / "d").stat().st_mode) == 0o700


@pytest.mark.parametrize("linkname", ["OUTSIDE/etc/shadow", "../outside/etc/shadow",
                                      "viadir/shadow", "missing-in-layer"])
def test_hardlink_to_outside_file_is_refused(sandbox, linkname):
    shadow = sandbox.outside / "etc" / "shadow"
    linkname = linkname.replace("OUTSIDE", str(sandbox.outside))
    with pytest.raises(UnsafeLayerError):
        sandbox.unpack(mktar(entry("viadir", tarfile.SYMTYPE, linkname=str(sandbox.outside / "etc")),
                             entry("stolen", tarfile.LNKTYPE, linkname=linkname)))
    assert os.stat(shadow).st_nlink == 1


def test_hardlink_inside_layer_works(sandbox):
    sandbox.unpack(mktar(entry("bin/tool", data=b"#!", mode=0o755),
                         entry("usr/bin/tool", tarfile.LNKTYPE, linkname="bin/tool"),
                         entry("/usr/bin/tool2", tarfile.LNKTYPE, linkname="/bin/tool")))
    a, b = sandbox.root / "bin" / "tool", sandbox.root / "usr" / "bin" / "tool"
    assert os.stat(a).st_ino == os.stat(b).st_ino == os.stat(sandbox.root / "usr/bin/tool2").st_ino


def test_device_nodes_skipped_by_default(sandbox):
    result = sandbox.unpack(mktar(entry("dev/mem", tarfile.CHRTYPE, devmajor=1, devminor=1),
                                  entry("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0),
                                  entry("run/fifo", tarfile.FIFOTYPE)))
    assert not (sandbox.root / "dev" / "mem").exists() and not (sandbox.root / "dev" / "sda").exists()
    assert sorted(result.skipped) == ["dev/mem", "dev/sda"]
    assert stat.S_ISFIFO(os.lstat(sandbox.root / "run" / "fifo").st_mode)  # harmless: kept


def test_device_nodes_when_allowed(sandbox):
    sandbox.unpack(mktar(entry("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666)),
                   allow_devices=True)
    st = os.lstat(sandbox.root / "dev" / "null")
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3


def test_setuid_setgid_and_capabilities_stripped(sandbox):
    cap = "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    sandbox.unpack(mktar(entry("bin/su", data=b"\x7fELF", mode=0o4755),
                         entry("bin/wall", data=b"\x7fELF", mode=0o2755),
                         entry("bin/ping", data=b"\x7fELF", mode=0o755,
                               pax={"SCHILY.xattr.security.capability": cap}),
                         entry("shared/", tarfile.DIRTYPE, mode=0o2775)))
    assert stat.S_IMODE(os.stat(sandbox.root / "bin/su").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(sandbox.root / "bin/wall").st_mode) == 0o755
    assert "security.capability" not in os.listxattr(sandbox.root / "bin/ping")
    assert stat.S_IMODE(os.stat(sandbox.root / "shared").st_mode) == 0o2775  # setgid dir: not a privilege


def test_setuid_kept_when_allowed(sandbox):
    sandbox.unpack(mktar(entry("bin/su", data=b"x", mode=0o4755, uid=0)), allow_setid=True)
    assert stat.S_IMODE(os.stat(sandbox.root / "bin/su").st_mode) == 0o4755


def test_forged_overlay_xattrs_are_ignored(sandbox):
    sandbox.unpack(mktar(entry("d/", tarfile.DIRTYPE, mode=0o755,
                               pax={"SCHILY.xattr.trusted.overlay.opaque": "y",
                                    "SCHILY.xattr.trusted.overlay.redirect": "/etc",
                                    "SCHILY.xattr.user.note": "kept"})))
    names = os.listxattr(sandbox.root / "d")
    assert "trusted.overlay.opaque" not in names and "trusted.overlay.redirect" not in names
    assert os.getxattr(sandbox.root / "d", "user.note") == b"kept"


@pytest.mark.parametrize("name", ["../.wh.outside", "a/../../.wh.etc", ".wh..", ".wh."])
def test_whiteout_escape_is_refused(sandbox, name):
    with pytest.raises(UnsafeLayerError):
        sandbox.unpack(mktar(entry("a/", tarfile.DIRTYPE, mode=0o755), entry(name)))


def test_whiteout_through_symlink_stays_inside(sandbox):
    sandbox.unpack(mktar(entry("etclink", tarfile.SYMTYPE, linkname=str(sandbox.outside / "etc")),
                         entry("etclink/.wh.shadow"), entry("etclink/.wh..wh..opq")))
    inner = sandbox.root / str(sandbox.outside).lstrip("/") / "etc"
    st = os.lstat(inner / "shadow")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(inner, OPAQUE_XATTR) == b"y"
    assert OPAQUE_XATTR not in os.listxattr(sandbox.outside / "etc")


def test_oci_whiteouts_become_overlay_whiteouts(sandbox):
    result = sandbox.unpack(mktar(entry("etc/.wh.motd"), entry("var/cache/.wh..wh..opq"),
                                  entry("var/cache/keep", data=b"k"), entry(".wh..wh.plnk")))
    st = os.lstat(sandbox.root / "etc" / "motd")
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 0 and os.minor(st.st_rdev) == 0
    assert os.getxattr(sandbox.root / "var" / "cache", OPAQUE_XATTR) == b"y"
    assert (sandbox.root / "var" / "cache" / "keep").read_bytes() == b"k"
    assert not (sandbox.root / ".wh..wh.plnk").exists() and result.skipped == [".wh..wh.plnk"]


def test_decompression_bomb_is_bounded(sandbox, tmp_path_factory):
    zeros = gzip.compress(mktar(entry("bomb", data=b"\0" * (16 << 20))), compresslevel=9)
    assert len(zeros) < 100_000
    layers = LayerStore(tmp_path_factory.mktemp("store"))
    opts = UnpackOptions(max_layer_bytes=1 << 20,
                         force_userspace_resolve=sandbox.opts.force_userspace_resolve)
    with pytest.raises(LayerTooLargeError):
        layers.add("sha256:" + "1" * 64, None, "sha256:" + "1" * 64, io.BytesIO(zeros), opts)
    assert layers.chain_ids() == [] and [p.name for p in layers.layers_dir.iterdir()] == []


def test_huge_file_refused_before_writing(sandbox):
    info, _ = entry("huge", size=10 << 30)
    data = info.tobuf(tarfile.PAX_FORMAT)  # a header that promises 10 GiB; no data follows
    with pytest.raises(LayerTooLargeError, match="huge"):
        sandbox.unpack(data, max_file_bytes=1 << 20)
    assert not (sandbox.root / "huge").exists()


def test_too_many_entries(sandbox):
    with pytest.raises(LayerTooLargeError, match="entries"):
        sandbox.unpack(mktar(*(entry(f"f{i}") for i in range(20))), max_entries=10)


def test_symlink_loop_is_refused(sandbox):
    with pytest.raises(UnsafeLayerError):
        sandbox.unpack(mktar(entry("loop", tarfile.SYMTYPE, linkname="loop"), entry("loop/x", data=b"")))


def test_truncated_and_garbage_streams(sandbox):
    good = mktar(entry("a", data=b"x" * 5000))
    with pytest.raises(UnsafeLayerError):
        unpack_layer(io.BytesIO(gzip.compress(good)[:-30]), sandbox.root, sandbox.opts)
    with pytest.raises(UnsafeLayerError):
        unpack_layer(io.BytesIO(good[:2000]), sandbox.root, sandbox.opts)


def test_ownership_modes_mtimes_and_diff_id(sandbox):
    tar = mktar(entry("home/u/", tarfile.DIRTYPE, mode=0o750, uid=1000),
                entry("home/u/file", data=b"data", mode=0o640, uid=1000))
    result = sandbox.unpack(tar)
    assert result.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    st = os.stat(sandbox.root / "home/u/file")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o640)
    assert os.stat(sandbox.root / "home/u").st_uid == 1000
