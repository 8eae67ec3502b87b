"""Store specs: what ``--store`` accepts and which backend it opens."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from peapod.store.factory import StoreSpec, open_store, parse_store_spec
from peapod.store.sqlite import SQLiteStore


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, StoreSpec("sqlite", path=Path("/data/state.db"))),
        ("sqlite", StoreSpec("sqlite", path=Path("/data/state.db"))),
        ("sqlite:///var/lib/x/s.db", StoreSpec("sqlite", path=Path("/var/lib/x/s.db"))),
        ("etcd://h1:2379,h2:2379", StoreSpec("etcd", endpoints=("http://h1:2379", "http://h2:2379"))),
        ("etcd://127.0.0.1:2379", StoreSpec("etcd", endpoints=("http://127.0.0.1:2379",))),
        ("etcd+http://h1:2379", StoreSpec("etcd", endpoints=("http://h1:2379",))),
        (
            "etcd+https://h1:2379, h2:2379",
            StoreSpec("etcd", endpoints=("https://h1:2379", "https://h2:2379")),
        ),
    ],
)
def test_parse(spec: str | None, expected: StoreSpec) -> None:
    assert parse_store_spec(spec, Path("/data")) == expected


@pytest.mark.parametrize(
    "spec",
    [
        "mysql://x",
        "postgres://u@h/db",
        "bogus",
        "sqlite://relative.db",
        "sqlite://",
        "etcd://",
        "etcd://a,,b",
    ],
)
def test_rejects_with_one_line_message(spec: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_store_spec(spec, Path("/data"))
    message = str(err.value)
    assert "\n" not in message
    assert spec in message


def test_unknown_scheme_lists_what_is_accepted() -> None:
    with pytest.raises(ValueError, match=r"sqlite.*etcd://HOST:PORT.*etcd\+https"):
        parse_store_spec("redis://h:6379", Path("/data"))


async def test_opens_sqlite_in_data_dir(tmp_path: Path) -> None:
    store = await open_store(None, tmp_path)
    try:
        assert isinstance(store, SQLiteStore)
        await store.create("/a", b"1")
    finally:
        await store.close()
    assert (tmp_path / "state.db").exists()


async def test_opens_sqlite_at_path(tmp_path: Path) -> None:
    store = await open_store(f"sqlite://{tmp_path}/other/s.db", tmp_path / "unused")
    await store.close()
    assert (tmp_path / "other" / "s.db").exists()
    assert not (tmp_path / "unused").exists()


async def test_opens_etcd_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[list[str]] = []

    class FakeEtcdStore:
        @classmethod
        async def open(cls, endpoints: list[str]) -> FakeEtcdStore:
            opened.append(endpoints)
            return cls()

    module = types.ModuleType("peapod.store.etcd")
    module.EtcdStore = FakeEtcdStore  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "peapod.store.etcd", module)
    store = await open_store("etcd://h1:2379,h2:2379", Path("/unused"))
    assert isinstance(store, FakeEtcdStore)
    assert opened == [["http://h1:2379", "http://h2:2379"]]
