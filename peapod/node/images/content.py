"""Content-addressed blob store: ``<root>/blobs/<alg>/<hex>``.

Blobs are written to ``<root>/ingest/`` while being hashed and only renamed into place once the digest
(and size, when known) match, so a visible blob is always a verified one. Crash leftovers in
``ingest/`` are removed when the store opens.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .errors import DigestMismatchError

_DIGEST = re.compile(r"^(sha256):([a-f0-9]{64})$|^(sha512):([a-f0-9]{128})$")


def split_digest(digest: str) -> tuple[str, str]:
    """``"sha256:ab.."`` -> ``("sha256", "ab..")``; raises ValueError for anything else."""
    m = _DIGEST.match(digest)
    if not m:
        raise ValueError(f"invalid digest {digest!r}")
    return (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))


def digest_bytes(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=1, sort_keys=True).encode())


class BlobWriter:
    """Streams one blob into the store; :meth:`commit` verifies and publishes it."""

    def __init__(self, store: ContentStore, digest: str, size: int | None) -> None:
        self.digest = digest
        self.expected_size = size if size is not None and size >= 0 else None
        alg, _ = split_digest(digest)
        self._hash = hashlib.new(alg)
        self._store = store
        self.written = 0
        fd, name = tempfile.mkstemp(prefix="blob-", dir=store.ingest_dir)
        self._tmp = Path(name)
        self._fh: BinaryIO | None = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        assert self._fh is not None, "writer already closed"
        self.written += len(chunk)
        if self.expected_size is not None and self.written > self.expected_size:
            self.abort()
            raise DigestMismatchError(
                f"blob {self.digest} is larger than its descriptor size {self.expected_size}"
            )
        self._hash.update(chunk)
        self._fh.write(chunk)

    def commit(self) -> Path:
        assert self._fh is not None, "writer already closed"
        actual = f"{self._hash.name}:{self._hash.hexdigest()}"
        if actual != self.digest:
            self.abort()
            raise DigestMismatchError(f"digest mismatch: expected {self.digest}, got {actual}")
        if self.expected_size is not None and self.written != self.expected_size:
            self.abort()
            raise DigestMismatchError(
                f"size mismatch for {self.digest}: expected {self.expected_size}, got {self.written}"
            )
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        dest = self._store.path(self.digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self._tmp, 0o644)
        os.replace(self._tmp, dest)
        fsync_dir(dest.parent)
        return dest

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()  # no-op after commit


class ContentStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs"
        self.ingest_dir = self.root / "ingest"
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.ingest_dir, ignore_errors=True)  # crash leftovers: never trusted
        self.ingest_dir.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        alg, hexpart = split_digest(digest)
        return self.blobs_dir / alg / hexpart

    def has(self, digest: str) -> bool:
        try:
            return self.path(digest).is_file()
        except ValueError:
            return False

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def open(self, digest: str) -> BinaryIO:
        return open(self.path(digest), "rb")

    def read(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()

    def writer(self, digest: str, size: int | None = None) -> BlobWriter:
        return BlobWriter(self, digest, size)

    def put(self, data: bytes, digest: str | None = None) -> str:
        """Store ``data`` (verified against ``digest`` when given); returns its digest."""
        digest = digest or digest_bytes(data)
        if self.has(digest):
            return digest
        with self.writer(digest, len(data)) as w:
            w.write(data)
            w.commit()
        return digest

    def put_stream(self, stream: BinaryIO, digest: str, size: int | None = None) -> str:
        if self.has(digest):
            return digest
        with self.writer(digest, size) as w:
            while chunk := stream.read(1 << 20):
                w.write(chunk)
            w.commit()
        return digest

    def ingest(self, stream: BinaryIO) -> tuple[str, int]:
        """Store a stream whose digest is not known in advance; returns (digest, size)."""
        hasher = hashlib.sha256()
        fd, name = tempfile.mkstemp(prefix="blob-", dir=self.ingest_dir)
        tmp = Path(name)
        size = 0
        try:
            with os.fdopen(fd, "wb") as fh:
                while chunk := stream.read(1 << 20):
                    hasher.update(chunk)
                    fh.write(chunk)
                    size += len(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            digest = f"sha256:{hasher.hexdigest()}"
            dest = self.path(digest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
            fsync_dir(dest.parent)
            return digest, size
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def delete(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(digest).unlink()

    def digests(self) -> Iterator[str]:
        for alg_dir in self.blobs_dir.iterdir():
            if alg_dir.is_dir():
                for f in alg_dir.iterdir():
                    yield f"{alg_dir.name}:{f.name}"
