"""A pod's rootfs mounts are released even when a crash left one without a container record."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from peapod.node.agent import _POD_CONTAINER_ID
from peapod.node.sync import PodExecutor

UID = "0b6e2f3c-8a4d-4e21-9f7a-1c2d3e4f5a6b"
OTHER = "1b6e2f3c-8a4d-4e21-9f7a-1c2d3e4f5a6b"


class Images:
    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self.released: list[str] = []

    def rootfs_ids(self) -> list[str]:
        return list(self.ids)

    async def release_rootfs(self, cid: str) -> None:
        self.released.append(cid)


async def test_records_and_unrecorded_rootfs_of_the_pod_are_released_and_no_other() -> None:
    images = Images([f"{UID}-app-0", f"{UID}-app-1", f"{OTHER}-app-0", "build-0123456789abcdef"])
    fake: Any = SimpleNamespace(images=images, records=lambda uid: [{"id": f"{UID}-app-0"}])
    await PodExecutor._release_rootfs_of(fake, UID)
    assert images.released == [f"{UID}-app-0", f"{UID}-app-1"]


def test_only_pod_container_ids_count_as_strays() -> None:
    assert _POD_CONTAINER_ID.match(f"{UID}-my-container-3")
    assert not _POD_CONTAINER_ID.match("build-0123456789abcdef")
    assert not _POD_CONTAINER_ID.match(f"{UID}")
