"""The layer cache key and the cache file."""

from __future__ import annotations

from pathlib import Path

from peapod.build.cache import BuildCache, CachedLayer, cache_key

BASE = dict(parent_chain="sha256:" + "a" * 64, instruction='["RUN", ["/bin/sh", "-c", "echo"]]',
            state={"env": ["A=1"], "user": "", "workdir": "/"}, inputs="")


def test_same_inputs_same_key() -> None:
    assert cache_key(**BASE) == cache_key(**dict(BASE, state={"workdir": "/", "user": "", "env": ["A=1"]}))


def test_every_part_changes_the_key() -> None:
    key = cache_key(**BASE)
    changed = [
        dict(BASE, parent_chain="sha256:" + "b" * 64),
        dict(BASE, parent_chain=None),
        dict(BASE, instruction='["RUN", ["/bin/sh", "-c", "echo x"]]'),
        dict(BASE, state={"env": ["A=2"], "user": "", "workdir": "/"}),
        dict(BASE, state={"env": ["A=1"], "user": "app", "workdir": "/"}),
        dict(BASE, inputs="sha256:" + "c" * 64),
    ]
    keys = {cache_key(**c) for c in changed}
    assert key not in keys and len(keys) == len(changed)


def test_cache_file_round_trip_and_damage(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    layer = CachedLayer("sha256:" + "1" * 64, "sha256:" + "2" * 64, 10, "application/x", "2024-01-01T00:00:00Z")
    BuildCache(path).put("k", layer)
    assert BuildCache(path).get("k") == layer
    BuildCache(path).forget("k")
    assert BuildCache(path).get("k") is None
    path.write_text("{not json")
    assert BuildCache(path).entries == {}
