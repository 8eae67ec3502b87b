"""The Store contract: a revisioned key-value log (kine's and etcd's model).

Every write appends one revision to a global, strictly increasing counter. An object's
``mod_revision`` is its Kubernetes ``resourceVersion``. Updates and deletes are compare-and-swap on
the expected ``mod_revision``. ``watch(prefix, after)`` yields every change to keys under ``prefix``
with revision > ``after``, in revision order, with no gaps and no duplicates; if ``after`` is older
than the compacted history it raises :class:`CompactedError` (the API answers 410 Gone).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True)
class Event:
    """One change. DELETE: ``kv.value`` is the last value, ``kv.mod_revision`` the delete's revision."""

    type: Literal["PUT", "DELETE"]
    kv: KeyValue
    prev: KeyValue | None = None
    created: bool = False  # PUT that created the key

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


@dataclass(frozen=True)
class ListResult:
    items: list[KeyValue]
    revision: int  # the store revision the list was read at
    more: bool = False  # truncated by ``limit``; continue from the last key


class StoreError(Exception):
    pass


class KeyExistsError(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key exists: {key}")
        self.key = key


class KeyNotFoundError(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key not found: {key}")
        self.key = key


class ConflictError(StoreError):
    """Compare-and-swap failed: the key's mod_revision is not the expected one."""

    def __init__(self, key: str, current: KeyValue | None) -> None:
        super().__init__(f"revision conflict on {key}")
        self.key = key
        self.current = current


class CompactedError(StoreError):
    """The requested revision is older than the oldest revision still kept."""

    def __init__(self, requested: int, compact_revision: int) -> None:
        super().__init__(f"revision {requested} has been compacted (oldest kept: {compact_revision})")
        self.requested = requested
        self.compact_revision = compact_revision


class FutureRevisionError(StoreError):
    """The requested revision is newer than the store's current revision."""

    def __init__(self, requested: int, current: int) -> None:
        super().__init__(f"revision {requested} is in the future (current: {current})")
        self.requested = requested
        self.current = current


class StoreUnavailableError(StoreError):
    """The backend cannot be reached (etcd quorum lost, disk full, ...)."""


@runtime_checkable
class Store(Protocol):
    async def get(self, key: str) -> KeyValue | None:
        """The live value of ``key``, or None."""

    async def list(
        self, prefix: str, *, revision: int = 0, limit: int = 0, start_key: str | None = None
    ) -> ListResult:
        """Keys under ``prefix`` in key order, as of ``revision`` (0: now).

        ``start_key`` (exclusive) continues a previous limited list. Raises CompactedError when
        ``revision`` is older than the kept history.
        """

    async def create(self, key: str, value: bytes) -> KeyValue:
        """Create ``key``; KeyExistsError if it is live."""

    async def update(self, key: str, value: bytes, expected_revision: int) -> KeyValue:
        """Replace ``key`` if its mod_revision is ``expected_revision`` (ConflictError / KeyNotFoundError)."""

    async def delete(self, key: str, expected_revision: int = 0) -> KeyValue:
        """Delete ``key`` (CAS when ``expected_revision`` > 0). Returns the deleted value with the
        delete's revision as ``mod_revision``."""

    def watch(self, prefix: str, after_revision: int) -> AsyncIterator[Event]:
        """Every change under ``prefix`` with revision > ``after_revision``, in order, forever."""

    async def current_revision(self) -> int:
        """The newest revision written."""

    async def compact(self, revision: int) -> None:
        """Forget history at or before ``revision`` (live values are kept)."""

    async def compacted_revision(self) -> int:
        """The newest revision that was compacted away (0 if none)."""

    async def close(self) -> None:
        """Release connections and files."""
