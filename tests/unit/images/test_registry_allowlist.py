from __future__ import annotations

import pytest

from peapod.node.images import RegistryClient, RegistryConfig, parse_reference
from peapod.node.images.errors import RegistryError
from peapod.node.images.registry import is_allowed


def test_allowlist_matches_host_or_host_and_port() -> None:
    cfg = RegistryConfig(allowed_registries=("127.0.0.1", "reg.example:5000"))
    assert is_allowed("127.0.0.1:5000", cfg) and is_allowed("127.0.0.1", cfg)
    assert is_allowed("reg.example:5000", cfg) and not is_allowed("reg.example:5001", cfg)
    assert not is_allowed("registry-1.docker.io", cfg)
    assert is_allowed("anything", RegistryConfig())


async def test_a_refused_registry_is_never_contacted() -> None:
    client = RegistryClient(config=RegistryConfig(allowed_registries=("127.0.0.1",)))

    def no_network() -> None:
        raise AssertionError("a session was opened for a refused registry")

    client._get_session = no_network  # type: ignore[method-assign]
    with pytest.raises(RegistryError, match=r"registry-1\.docker\.io is not allowed on this node"):
        await client.get_manifest(parse_reference("busybox:1"))
    await client.close()
