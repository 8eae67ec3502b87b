"""``peapod images`` as a user runs it: the real executable, with no peapod running (the command holds
the data dir lock and uses DATA/node/images itself) and through an image API socket under the data dir
(as the running agent serves it), against Debian's docker-registry on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import stat
import subprocess
from pathlib import Path

import aiohttp
import pytest

from peapod.cli.datadir import DataDirBusyError, DataDirLock
from peapod.node.imageapi import serve_image_api
from peapod.node.images import OciImageService
from peapod.testing.cluster import peapod_executable
from peapod.testing.images import busybox_image, push_image, write_docker_archive, write_oci_layout
from peapod.testing.registry import LoopbackRegistry

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlayfs layers, a root-only socket)"),
]
needs_registry = pytest.mark.skipif(not os.path.exists("/usr/bin/docker-registry"),
                                    reason="docker-registry missing")
SIZE = re.compile(r"^\d+(\.\d+)?(B|kB|MB|GB)$")


def peapod(data: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*peapod_executable(), "images", *args, "--data-dir", str(data)],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


async def apeapod(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI while this test's event loop serves its socket."""
    return await asyncio.to_thread(peapod, data, *args)


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"rc={r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout


def one_line_error(r: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert r.returncode == 1, f"rc={r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    err = r.stderr.strip()
    assert err.startswith("peapod: ") and "\n" not in err and "Traceback" not in r.stderr, r.stderr
    for f in fragments:
        assert f in err, err
    return err


def table(out: str) -> list[dict[str, str]]:
    lines = out.strip().splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["REPOSITORY", "TAG", "IMAGE ID", "SIZE"], lines[0]
    rows = [dict(zip(["repo", "tag", "id", "size"], re.split(r"\s{2,}", ln.strip()), strict=True))
            for ln in lines[1:]]
    for row in rows:
        assert SIZE.match(row["size"]) and re.fullmatch(r"[0-9a-f]{12}", row["id"]), row
    return rows


def lock_is_free(data: Path) -> bool:
    lock = DataDirLock(data)
    try:
        lock.acquire()
    except DataDirBusyError:
        return False
    lock.release()
    return True


@pytest.fixture
def archives(tmp_path: Path) -> dict[str, object]:
    bb = busybox_image()
    app = busybox_image(extra_files={"/hello": "hi\n"}, cmd=["cat", "/hello"])
    return {
        "bb": bb, "app": app,
        "oci": write_oci_layout(tmp_path / "oci", {"localhost/bb:oci": bb}),
        "tar": write_docker_archive(tmp_path / "app.tar", app, ["localhost/app:v1"]),
    }


def test_load_ls_rm_prune_without_peapod(tmp_path, archives):
    data = tmp_path / "data"
    assert table(ok(peapod(data, "ls"))) == []
    assert not data.exists(), "ls of an empty data dir must not create it"

    assert ok(peapod(data, "load", str(archives["oci"]))) == "Loaded image: localhost/bb:oci\n"
    assert ok(peapod(data, "load", str(archives["tar"]))) == "Loaded image: localhost/app:v1\n"
    bb_id, app_id = archives["bb"].id, archives["app"].id
    rows = table(ok(peapod(data, "ls")))
    assert [(r["repo"], r["tag"], r["id"]) for r in rows] == [
        ("localhost/app", "v1", app_id.removeprefix("sha256:")[:12]),
        ("localhost/bb", "oci", bb_id.removeprefix("sha256:")[:12]),
    ]
    listed = json.loads(ok(peapod(data, "ls", "-o", "json")))
    assert {i["id"] for i in listed} == {bb_id, app_id} and all(i["size"] > 1000 for i in listed)
    assert set(ok(peapod(data, "ls", "-q", "--no-trunc")).split()) == {bb_id, app_id}
    assert lock_is_free(data), "the command must release the data dir lock"

    out = ok(peapod(data, "rm", "localhost/bb:oci"))
    assert out.splitlines() == ["Untagged: localhost/bb:oci", f"Deleted: {bb_id}"]
    assert [r["repo"] for r in table(ok(peapod(data, "ls")))] == ["localhost/app"]
    one_line_error(peapod(data, "rm", "localhost/bb:oci"), "no such image: localhost/bb:oci")
    one_line_error(peapod(data, "rm", "Not A Ref"), "no such image")

    one_line_error(peapod(data, "load", str(tmp_path / "missing.tar")), "no such file or directory")
    junk = tmp_path / "junk"
    junk.mkdir()
    one_line_error(peapod(data, "load", str(junk)), "cannot load", "neither an OCI layout nor a docker-archive")

    out = ok(peapod(data, "prune"))
    assert f"Deleted: {app_id}" in out and re.search(r"Total reclaimed space: [1-9][\d.]*MB", out), out
    assert table(ok(peapod(data, "ls"))) == []
    layers = data / "node" / "images" / "layers"
    assert not any(layers.iterdir()), "prune must remove the unused layers"


def test_busy_data_dir_without_socket(tmp_path, archives):
    data = tmp_path / "data"
    ok(peapod(data, "load", str(archives["oci"])))
    lock = DataDirLock(data)
    lock.acquire()  # a peapod without a node agent (or one still starting)
    try:
        one_line_error(peapod(data, "ls"), "in use by another peapod", "images.sock")
        one_line_error(peapod(data, "prune"), "in use by another peapod")
    finally:
        lock.release()
    assert "localhost/bb" in ok(peapod(data, "ls"))


@needs_registry
async def test_pull_from_loopback_registry_without_peapod(tmp_path):
    data = tmp_path / "data"
    async with LoopbackRegistry() as reg:
        img = busybox_image(extra_files={"/etc/pulled": "yes\n"})
        ref = reg.ref("tools/busybox", "v1")
        digest = await push_image(ref, img)
        r = await apeapod(data, "pull", "--insecure-registry", reg.host, ref)
        out = ok(r)
        assert out.splitlines() == [f"Digest: {digest}", f"Image ID: {img.id}", ref]
        # not a terminal: one line per downloaded layer
        assert len(re.findall(r"^[0-9a-f]{12}: downloaded \S+$", r.stderr, re.M)) == len(img.layers), r.stderr
        rows = table(ok(await apeapod(data, "ls")))
        assert [(r["repo"], r["tag"]) for r in rows] == [(f"{reg.host}/tools/busybox", "v1")]
        one_line_error(await apeapod(data, "pull", reg.ref("tools/busybox", "nope")),
                       f'failed to pull image "{reg.ref("tools/busybox", "nope")}"')
        one_line_error(await apeapod(data, "pull", "Busybox"), "invalid reference format")


@needs_registry
async def test_through_the_agent_socket(tmp_path, archives):
    data = tmp_path / "data"
    svc = OciImageService(data / "node" / "images")
    in_use: set[str] = set()
    sock_path = data / "node" / "images.sock"
    server = await serve_image_api(svc, sock_path, in_use=lambda: set(in_use))
    lock = DataDirLock(data)
    lock.acquire()  # as under `peapod up`: the CLI can only succeed through the socket
    try:
        assert stat.S_ISSOCK(sock_path.lstat().st_mode) and stat.S_IMODE(sock_path.lstat().st_mode) == 0o600
        assert ok(await apeapod(data, "load", str(archives["oci"]))) == "Loaded image: localhost/bb:oci\n"
        assert ok(await apeapod(data, "load", str(archives["tar"]))) == "Loaded image: localhost/app:v1\n"
        assert {i.id for i in svc.list()} == {archives["bb"].id, archives["app"].id}  # the agent's store

        async with LoopbackRegistry() as reg:
            img = busybox_image(extra_files={"/x": "1"})
            ref = reg.ref("sock/busybox", "v2")
            await push_image(ref, img)
            r = await apeapod(data, "pull", "--insecure-registry", reg.host, ref)
            assert ok(r).splitlines()[-2:] == [f"Image ID: {img.id}", ref]
            assert "is ignored" in r.stderr  # the agent pulls with its own registry settings
            assert re.search(r"^[0-9a-f]{12}: downloaded ", r.stderr, re.M), r.stderr  # streamed progress
            one_line_error(await apeapod(data, "pull", reg.ref("sock/busybox", "missing")),
                           "failed to pull image", "manifest unknown")
        rows = table(ok(await apeapod(data, "ls")))
        assert {(r["repo"], r["tag"]) for r in rows} == {
            ("localhost/bb", "oci"), ("localhost/app", "v1"), (f"{reg.host}/sock/busybox", "v2")}

        in_use.update({"localhost/bb:oci", img.id})  # containers run these
        one_line_error(await apeapod(data, "rm", "localhost/bb:oci"), "in use by a container",
                       "delete the pods that use it first")
        out = ok(await apeapod(data, "prune"))
        assert f"Deleted: {archives['app'].id}" in out and archives["bb"].id not in out, out
        assert {i.id for i in svc.list()} == {archives["bb"].id, img.id}

        in_use.clear()
        assert ok(await apeapod(data, "rm", "localhost/bb:oci")).splitlines() == [
            "Untagged: localhost/bb:oci", f"Deleted: {archives['bb'].id}"]
        r = await apeapod(data, "rm", ref, "nope:1")  # several refs: go on, report, exit 1
        assert r.returncode == 1 and f"Deleted: {img.id}" in r.stdout and "no such image: nope:1" in r.stderr
        assert table(ok(await apeapod(data, "ls"))) == []
    finally:
        lock.release()
        await server.close()
        await svc.close()
    assert not sock_path.exists(), "close() removes the socket"


async def test_api_errors_stale_socket_and_long_path(tmp_path):
    # a directory deep enough that DATA/node/images.sock is past sun_path's 107 bytes
    data = tmp_path / ("d" * 60) / "data"
    sock_path = data / "node" / "images.sock"
    sock_path.parent.mkdir(parents=True)
    assert len(str(sock_path)) > 107
    svc = OciImageService(data / "node" / "images")
    # a stale socket left by a killed agent
    stale = socket.socket(socket.AF_UNIX)
    os.chdir(sock_path.parent)
    try:
        stale.bind("images.sock")
    finally:
        os.chdir("/")
        stale.close()
    server = await serve_image_api(svc, sock_path, in_use=set)
    try:
        assert table(ok(await apeapod(data, "ls"))) == []
        assert lock_is_free(data)  # it went through the socket, never the data dir lock
        with pytest.raises(RuntimeError, match="already serves"):
            await serve_image_api(svc, sock_path, in_use=set)
        os.chdir(sock_path.parent)  # aiohttp's connector needs a short path
        try:
            conn = aiohttp.UnixConnector(path="images.sock")
            async with aiohttp.ClientSession(connector=conn) as http:
                async with http.post("http://x/images/pull", json={}) as resp:
                    assert resp.status == 400 and "ref" in (await resp.json())["error"]
                async with http.post("http://x/images/pull", json={"ref": "Bad Ref"}) as resp:
                    assert resp.status == 400 and "invalid reference" in (await resp.json())["error"]
                async with http.delete("http://x/images/" + "docker.io%2Flibrary%2Fnope:1") as resp:
                    assert resp.status == 404 and "no such image" in (await resp.json())["error"]
                async with http.post("http://x/images/load", json={"path": "relative.tar"}) as resp:
                    assert resp.status == 400
                async with http.post("http://x/images/prune") as resp:
                    assert resp.status == 200 and (await resp.json())["deleted"] == []
        finally:
            os.chdir("/")
    finally:
        await server.close()
        await svc.close()
    assert not sock_path.exists()
