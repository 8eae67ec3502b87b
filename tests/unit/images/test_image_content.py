import io
import os

import pytest

from peapod.node.images.content import ContentStore, atomic_write, digest_bytes, split_digest
from peapod.node.images.errors import DigestMismatchError


def test_put_and_read(tmp_path):
    store = ContentStore(tmp_path)
    d = store.put(b"hello")
    assert d == digest_bytes(b"hello")
    assert store.has(d) and store.read(d) == b"hello" and store.size(d) == 5
    assert list(store.digests()) == [d]


def test_wrong_digest_is_never_kept(tmp_path):
    store = ContentStore(tmp_path)
    wrong = digest_bytes(b"other")
    with pytest.raises(DigestMismatchError):
        store.put(b"hello", wrong)
    assert not store.has(wrong)
    assert list(store.digests()) == []
    assert os.listdir(store.ingest_dir) == []  # the temp file is gone too


def test_streamed_size_limits(tmp_path):
    store = ContentStore(tmp_path)
    data = b"x" * 1000
    d = digest_bytes(data)
    with pytest.raises(DigestMismatchError, match="larger"):
        store.put_stream(io.BytesIO(data + b"extra"), d, 1000)
    with pytest.raises(DigestMismatchError, match="size"):
        store.put_stream(io.BytesIO(data), d, 1001)
    assert not store.has(d)
    assert store.put_stream(io.BytesIO(data), d, 1000) == d and store.has(d)


def test_ingest_unknown_digest_and_leftovers_cleaned(tmp_path):
    store = ContentStore(tmp_path)
    d, size = store.ingest(io.BytesIO(b"abc"))
    assert d == digest_bytes(b"abc") and size == 3
    (store.ingest_dir / "blob-crashed").write_bytes(b"partial")
    ContentStore(tmp_path)  # reopening discards half-written blobs
    assert not (store.ingest_dir / "blob-crashed").exists()
    assert store.has(d)


def test_split_digest_validates():
    assert split_digest("sha256:" + "a" * 64) == ("sha256", "a" * 64)
    for bad in ["sha256:xyz", "md5:" + "a" * 32, "sha256:" + "A" * 64, "../../etc"]:
        with pytest.raises(ValueError):
            split_digest(bad)


def test_atomic_write_replaces_whole_file(tmp_path):
    p = tmp_path / "index.json"
    atomic_write(p, b"old")
    atomic_write(p, b"new")
    assert p.read_bytes() == b"new"
    assert [f.name for f in tmp_path.iterdir()] == ["index.json"]
