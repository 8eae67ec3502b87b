"""The node agent's local image API: JSON over a root-only unix socket (like crictl and a CRI socket).

The image store belongs to the running agent (its locks are in-process), so ``peapod images`` talks
to the agent through ``DATA/node/images.sock`` while one runs. Routes::

    GET    /images          {"images": [image...]}
    POST   /images/pull     {"ref", "auth"?} -> {"image"}; with ``Accept: application/x-ndjson`` one
                            JSON line per progress update ({"progress": {digest, downloaded, total}})
                            and a last line {"image"} or {"error", "status"}
    POST   /images/load     {"path", "name"?} -> {"images": [...]}   (a path on this host)
    DELETE /images/{ref}    {"untagged": [...], "deleted": [...]}; 409 when a container uses it
    POST   /images/prune    {"deleted": [...], "untagged": [...], "layers_removed", "space_reclaimed"}

Errors are ``{"error": message}`` with 400/404/409/502. :func:`remove_image` and :func:`prune_images`
are shared with the CLI's direct mode (no agent running), so both print the same thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from peapod.node.images import (
    Image,
    ImageError,
    ImageInUseError,
    ImageNotFoundError,
    ImagePullError,
    ImageService,
    InvalidReferenceError,
)
from peapod.node.images.reference import is_image_id, parse_reference

log = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"
_MAX_SUN_PATH = 107  # sockaddr_un.sun_path holds 108 bytes with the NUL
_PROGRESS_EVERY = 0.1  # seconds: coalesce progress lines per layer


def image_json(img: Image) -> dict[str, Any]:
    """What the API reports of an image (crictl's ``Image``: id, tags, digests, size, created)."""
    return {"id": img.id, "repo_tags": list(img.repo_tags), "repo_digests": list(img.repo_digests),
            "size": img.size, "created": img.created, "digest": img.digest}


def in_use_ids(images: ImageService, in_use: set[str]) -> set[str]:
    """Image ids of the refs/ids in ``in_use`` that resolve to a local image."""
    out: set[str] = set()
    for ref in in_use:
        with contextlib.suppress(ImageError, ValueError):
            img = images.get(ref)
            if img is not None:
                out.add(img.id)
    return out


def _tag_of(ref: str) -> str | None:
    if is_image_id(ref):
        return None
    with contextlib.suppress(InvalidReferenceError):
        parsed = parse_reference(ref)
        return str(parsed) if not parsed.digest else None
    return None


async def remove_image(images: ImageService, ref: str, in_use: set[str]) -> dict[str, list[str]]:
    """Untag ``ref`` (when the image keeps other tags) or delete the image.

    Deleting an image a container uses (``in_use``, or a mounted rootfs) raises ImageInUseError;
    untagging one of several tags is always allowed (Docker's ``rmi`` semantics).
    """
    img = images.get(ref)
    if img is None:
        raise ImageNotFoundError(f"no such image: {ref} (see `peapod images ls`)")
    tag = _tag_of(ref)
    untag_only = tag is not None and tag in img.repo_tags and len(img.repo_tags) > 1
    hint = "delete the pods that use it first"
    if not untag_only and img.id in in_use_ids(images, in_use):
        raise ImageInUseError(f"image {ref} ({img.id}) is in use by a container: {hint}")
    try:
        await images.remove(ref)
    except ImageInUseError as exc:
        raise ImageInUseError(f"{exc}: {hint}") from exc
    after = images.get(img.id)
    if after is None:
        return {"untagged": [*img.repo_tags, *img.repo_digests], "deleted": [img.id]}
    gone = [n for n in img.names if n not in after.names]
    return {"untagged": gone, "deleted": []}


async def prune_images(images: ImageService, in_use: set[str]) -> dict[str, Any]:
    """Remove every image no container uses, then the layers and blobs nothing refers to."""
    before = {img.id: img for img in images.list()}
    layer_sizes: dict[str, int] = {}
    layers = getattr(images, "layers", None)
    if layers is not None:  # OciImageService: measure what the removed layers held
        for chain in layers.chain_ids():
            with contextlib.suppress(OSError, ValueError, KeyError):
                layer_sizes[chain] = layers.get(chain).size
    result = await images.prune(set(in_use))
    removed = [before[i] for i in result.images_removed if i in before]
    if layers is not None:
        reclaimed = sum(layer_sizes.get(c, 0) for c in result.layers_removed)
    else:
        reclaimed = sum(img.size for img in removed)
    return {"deleted": [img.id for img in removed],
            "untagged": [n for img in removed for n in img.names],
            "layers_removed": len(result.layers_removed), "space_reclaimed": reclaimed}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def error_status(exc: BaseException) -> int:
    """HTTP status for an image error (the CLI only prints the message)."""
    if isinstance(exc, ImageNotFoundError | FileNotFoundError):
        return 404
    if isinstance(exc, ImageInUseError):
        return 409
    if isinstance(exc, ImagePullError):
        return 502
    return 400


_EXPECTED = (ImageError, OSError, ValueError, KeyError)


def _peer_uid(request: web.Request) -> int | None:
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


@web.middleware
async def _guard(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
    uid = _peer_uid(request)
    if uid is not None and uid not in (0, os.geteuid()):
        return _error(403, "only root may use the image socket")
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except _EXPECTED as exc:
        return _error(error_status(exc), str(exc) or type(exc).__name__)
    except Exception as exc:  # a bug: keep the agent serving, tell the client
        log.exception("image api %s %s", request.method, request.path)
        return _error(500, f"internal error: {exc}")


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


async def _body(request: web.Request, required: str) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise _bad_request("request body must be JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get(required), str) or not body[required]:
        raise _bad_request(f'"{required}" (a string) is required')
    return body


def build_app(images: ImageService, in_use: Callable[[], set[str]]) -> web.Application:
    async def list_images(_request: web.Request) -> web.Response:
        return web.json_response({"images": [image_json(i) for i in images.list()]})

    async def pull(request: web.Request) -> web.StreamResponse:
        body = await _body(request, "ref")
        ref, auth = body["ref"], body.get("auth")
        parse_reference(ref)  # a bad reference is a 400 before anything is streamed
        streams = "progress" in inspect.signature(images.pull).parameters
        if NDJSON not in request.headers.get("Accept", "") or not streams:
            return web.json_response({"image": image_json(await images.pull(ref, auth=auth))})
        return await _pull_stream(request, images, ref, auth)

    async def load(request: web.Request) -> web.Response:
        body = await _body(request, "path")
        path = Path(body["path"])
        if not path.is_absolute():
            return _error(400, f"path must be absolute: {path}")
        if not await asyncio.to_thread(path.exists):
            return _error(404, f"{path}: no such file or directory")
        name = body.get("name") or None
        loaded = await images.load(path, name=name)
        return web.json_response({"images": [image_json(i) for i in loaded]})

    async def remove(request: web.Request) -> web.Response:
        return web.json_response(await remove_image(images, request.match_info["ref"], in_use()))

    async def prune(_request: web.Request) -> web.Response:
        return web.json_response(await prune_images(images, in_use()))

    app = web.Application(middlewares=[_guard], client_max_size=1 << 20)
    app.router.add_get("/images", list_images)
    app.router.add_post("/images/pull", pull)
    app.router.add_post("/images/load", load)
    app.router.add_post("/images/prune", prune)
    app.router.add_delete("/images/{ref:.+}", remove)
    return app


async def _pull_stream(request: web.Request, images: ImageService, ref: str, auth: Any) -> web.StreamResponse:
    changed: dict[str, dict[str, Any]] = {}
    wake = asyncio.Event()

    def progress(event: dict[str, Any]) -> None:
        changed[str(event.get("digest"))] = dict(event)
        wake.set()

    resp = web.StreamResponse(headers={"Content-Type": NDJSON})
    await resp.prepare(request)
    task = asyncio.create_task(images.pull(ref, auth=auth, progress=progress))
    try:
        while True:
            waiter = asyncio.create_task(wake.wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            wake.clear()
            lines = [json.dumps({"progress": ev}) + "\n" for ev in changed.values()]
            changed.clear()
            if lines:
                await resp.write("".join(lines).encode())
            if task.done():
                break
            await asyncio.sleep(_PROGRESS_EVERY)
        exc = task.exception()
        if exc is None:
            last: dict[str, Any] = {"image": image_json(task.result())}
        elif isinstance(exc, _EXPECTED):
            last = {"error": str(exc), "status": error_status(exc)}
        else:
            log.error("image pull %s failed", ref, exc_info=exc)
            last = {"error": f"internal error: {exc}", "status": 500}
        await resp.write((json.dumps(last) + "\n").encode())
        await resp.write_eof()
    except ConnectionError:
        log.info("image pull %s: the client went away", ref)
    finally:
        if not task.done():  # the client went away: stop the download
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
    return resp


@contextlib.contextmanager
def unix_path(path: Path) -> Iterator[str]:
    """A name for ``path`` usable with bind/connect even past sun_path's 107 bytes (through the
    parent directory's ``/proc/self/fd`` entry)."""
    path = Path(path)
    if len(os.fsencode(str(path))) <= _MAX_SUN_PATH:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def connect_unix(path: Path, timeout: float | None = None) -> socket.socket:
    """A connected stream socket to ``path`` (any length)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        with unix_path(path) as name:
            sock.connect(name)
    except BaseException:
        sock.close()
        raise
    return sock


def _bind(path: Path) -> socket.socket:
    """Listen on ``path`` with mode 0600 from the first moment: bind a temporary name, chmod, then
    rename over any stale socket (atomic; a live server there is an error)."""
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise FileExistsError(f"{path} exists and is not a socket")
        try:
            connect_unix(path, timeout=1.0).close()
        except OSError:
            pass  # stale: nobody listens, replace it
        else:
            raise RuntimeError(f"another process already serves {path}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with unix_path(tmp) as name:
            sock.bind(name)
        os.chmod(tmp, 0o600)
        sock.listen(128)
        os.replace(tmp, path)
    except BaseException:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    sock.setblocking(False)
    return sock


@dataclass
class ImageApiServer:
    socket_path: Path
    runner: web.AppRunner
    _inode: int

    async def close(self) -> None:
        """Stop serving and remove the socket (unless another server replaced it since)."""
        await self.runner.cleanup()
        with contextlib.suppress(FileNotFoundError):
            if self.socket_path.lstat().st_ino == self._inode:
                self.socket_path.unlink()


async def serve_image_api(images: ImageService, socket_path: Path, *,
                          in_use: Callable[[], set[str]]) -> ImageApiServer:
    """Serve the image API on ``socket_path`` (mode 0600). ``in_use()`` returns the image refs or
    ids the node's containers use: those are never removed or pruned."""
    socket_path = Path(socket_path)
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    runner = web.AppRunner(build_app(images, in_use), handle_signals=False, access_log=None,
                           shutdown_timeout=1.0)
    await runner.setup()
    try:
        sock = _bind(socket_path)
        await web.SockSite(runner, sock).start()
    except BaseException:
        await runner.cleanup()
        raise
    return ImageApiServer(socket_path, runner, socket_path.lstat().st_ino)
