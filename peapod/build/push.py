"""Push an image of the node's store to a registry without writing to the store (the running
agent owns it): blobs are read from their immutable content-store files."""

from __future__ import annotations

from typing import Any

from peapod.node.images import ImageNotFoundError, RegistryClient, RegistryConfig, credentials_for, parse_reference

from .store import NodeImages


async def push_image(node: NodeImages, ref: str, dest: str | None = None, *, auth: Any = None,
                     registry_config: RegistryConfig | None = None) -> str:
    """Push ``ref`` (a name or image id in ``node``) to ``dest`` (default ``ref``); returns the digest."""
    image = node.get(ref)
    if image is None:
        raise ImageNotFoundError(f"no such image: {ref} (see `peapod images ls`)")
    target = parse_reference(dest or ref)
    creds = (credentials_for(target, auth) or [None])[0]
    async with RegistryClient(config=registry_config or RegistryConfig()) as client:
        for digest in (image.id, *image.layer_digests):
            path = node.blob(digest)
            await client.push_blob(target, digest, path.stat().st_size, path, creds=creds)
        body = node.blob(image.digest).read_bytes()
        return await client.push_manifest(target, body, image.manifest_media_type, creds=creds)
