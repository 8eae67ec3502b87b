"""RBACCache follows the store: list, then watch (SQLite store in a temp dir, no sleeps of our own)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from peapod.apiserver.rbac import RBACAuthorizer, RBACCache, Request
from peapod.store.sqlite import SQLiteStore

ROLES = "/registry/roles.rbac.authorization.k8s.io"
BINDINGS = "/registry/rolebindings.rbac.authorization.k8s.io"


async def _until(cond, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    """Yield to the cache's watch task until ``cond`` holds."""
    async with asyncio.timeout(timeout):
        while not cond():  # noqa: ASYNC110 - polling a plain predicate, no event to wait on
            await asyncio.sleep(0)


async def test_cache_lists_then_follows(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "s.db")
    try:
        role = {"kind": "Role", "metadata": {"name": "r", "namespace": "ns"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]}
        await store.create(f"{ROLES}/ns/r", json.dumps(role).encode())
        cache = RBACCache(store)
        await cache.start()
        try:
            assert ("ns", "r") in cache.snapshot.roles
            authz = RBACAuthorizer(cache)
            ask = Request("alice", (), "list", "", "pods", "", "ns", "")
            assert not authz.authorize(ask).allowed
            rb = {"kind": "RoleBinding", "metadata": {"name": "b", "namespace": "ns"},
                  "roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "User", "name": "alice"}]}
            kv = await store.create(f"{BINDINGS}/ns/b", json.dumps(rb).encode())
            await _until(lambda: authz.authorize(ask).allowed)
            await store.delete(f"{BINDINGS}/ns/b", kv.mod_revision)
            await _until(lambda: not authz.authorize(ask).allowed)
            assert cache.snapshot.role_bindings == {}
        finally:
            await cache.stop()
    finally:
        await store.close()
