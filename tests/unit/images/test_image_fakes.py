import asyncio

import pytest

from peapod.node.images import ImageError, ImageNeverPullError, ImagePullError, ImageService
from peapod.node.images.errors import ImageInUseError
from peapod.testing.fakes_images import FakeImageService


async def test_fake_satisfies_protocol_and_records_calls():
    fake = FakeImageService()
    assert isinstance(fake, ImageService)
    fake.add_remote("busybox:1.36", cmd=["sh"])
    img = await fake.ensure("busybox:1.36", "IfNotPresent")
    assert img.config.cmd == ("sh",) and fake.get("busybox:1.36") == img
    assert [c[0] for c in fake.calls] == ["ensure", "pull"]
    assert await fake.ensure("busybox:1.36") == img  # present: no second pull
    assert len(fake.calls_to("pull")) == 1


async def test_fake_failures_and_never():
    fake = FakeImageService()
    with pytest.raises(ImagePullError, match="manifest unknown"):
        await fake.pull("nope:1")
    with pytest.raises(ImageNeverPullError):
        await fake.ensure("nope:1", "Never")
    fake.add_remote("a:1")
    fake.fail_next("pull", ImagePullError('failed to pull image "a:1": 401 Unauthorized'))
    with pytest.raises(ImagePullError, match="401"):
        await fake.pull("a:1")
    assert (await fake.pull("a:1")).repo_tags == ("docker.io/library/a:1",)
    fake.fail_always("prepare_rootfs", ImageError("disk full"))
    with pytest.raises(ImageError, match="disk full"):
        await fake.prepare_rootfs("a:1", "c1")
    fake.fail_always("prepare_rootfs", None)
    assert (await fake.prepare_rootfs("a:1", "c1")).name == "c1"


async def test_fake_pull_gate_and_rootfs(tmp_path):
    fake = FakeImageService(rootfs_dir=tmp_path)
    fake.add_remote("a:1")
    fake.pull_gate = asyncio.Event()
    task = asyncio.create_task(fake.pull("a:1"))
    await asyncio.sleep(0)
    assert not task.done() and fake.calls_to("pull")
    fake.pull_gate.set()
    img = await task
    path = await fake.prepare_rootfs(img, "c1")
    assert path.is_dir()
    with pytest.raises(ImageInUseError):
        await fake.remove("a:1")
    await fake.release_rootfs("c1")
    await fake.release_rootfs("c1")
    assert not path.exists()
    assert (await fake.prune(set())).images_removed == [img.id]
