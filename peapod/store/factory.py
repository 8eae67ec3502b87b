"""Open the store named by a ``--store`` spec.

Accepted specs:

- ``None`` or ``sqlite``: ``<data_dir>/state.db``
- ``sqlite:///abs/path/state.db``: that file
- ``etcd://h1:2379,h2:2379`` (or ``etcd+http://``): an etcd cluster over plain HTTP
- ``etcd+https://h1:2379,h2:2379``: an etcd cluster over HTTPS
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from peapod.store.base import Store
from peapod.store.faults import wrap_from_env

ACCEPTED = "sqlite, sqlite:///ABS/PATH, etcd://HOST:PORT[,HOST:PORT...] or etcd+https://HOST:PORT[,...]"
_ETCD_SCHEMES = {"etcd": "http", "etcd+http": "http", "etcd+https": "https"}


@dataclass(frozen=True)
class StoreSpec:
    kind: str  # "sqlite" | "etcd"
    path: Path | None = None
    endpoints: tuple[str, ...] = ()


def parse_store_spec(spec: str | None, data_dir: Path) -> StoreSpec:
    """Parse a store spec; ValueError (one line, listing what is accepted) when it is not understood."""
    if spec is None or spec.strip() in ("", "sqlite"):
        return StoreSpec("sqlite", path=Path(data_dir) / "state.db")
    spec = spec.strip()
    scheme, sep, rest = spec.partition("://")
    if not sep:
        raise ValueError(f"unknown store {spec!r}: expected {ACCEPTED}")
    scheme = scheme.lower()
    if scheme == "sqlite":
        path = Path(rest)
        if not rest or not path.is_absolute():
            raise ValueError(f"store {spec!r}: sqlite needs an absolute path (sqlite:///abs/path/state.db)")
        return StoreSpec("sqlite", path=path)
    if scheme in _ETCD_SCHEMES:
        hosts = [h.strip().rstrip("/") for h in rest.split(",")]
        if not hosts or any(not h or "/" in h for h in hosts):
            raise ValueError(f"store {spec!r}: expected {scheme}://HOST:PORT[,HOST:PORT...]")
        return StoreSpec("etcd", endpoints=tuple(f"{_ETCD_SCHEMES[scheme]}://{h}" for h in hosts))
    raise ValueError(f"unknown store scheme {scheme!r} in {spec!r}: expected {ACCEPTED}")


async def open_store(spec: str | None, data_dir: Path) -> Store:
    """Open the store ``spec`` names (see the module docstring); relative state lives in ``data_dir``."""
    parsed = parse_store_spec(spec, data_dir)
    if parsed.kind == "etcd":
        from peapod.store.etcd import EtcdStore  # only etcd users pay for its imports

        return wrap_from_env(await EtcdStore.open(list(parsed.endpoints)))
    from peapod.store.sqlite import SQLiteStore

    assert parsed.path is not None
    # Test-only: PEAPOD_FAULT_STORE_DELAY_MS makes the store slow (robustness suite); unset, a no-op.
    return wrap_from_env(await SQLiteStore.open(parsed.path))
