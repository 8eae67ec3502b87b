"""``peapod build`` and ``peapod push``.

The build works in ``DATA/build`` (its own image store, layer cache and RUN containers, guarded by
``DATA/build/lock``) and stores the result in the node's image store like ``peapod images load``:
through the running agent's socket, else directly under the data dir lock.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

from peapod.cli.datadir import DataDirBusyError, DataDirLock
from peapod.cli.main import CliError


def _say(line: str) -> None:
    print(line, flush=True)


def _output(data: bytes) -> None:
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _build_args(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise CliError(f"--build-arg {item!r}: expected KEY=VALUE")
        if not sep:  # Docker: a bare name takes its value from the environment
            if key not in os.environ:
                continue
            value = os.environ[key]
        out[key] = value
    return out


def _containerfile(context: Path, given: str | None) -> Path:
    if given:
        path = Path(given)
        if not path.is_absolute() and not path.exists() and (context / given).exists():
            path = context / given
        if not path.is_file():
            raise CliError(f"{given}: no such Containerfile")
        return path
    for name in ("Containerfile", "Dockerfile"):
        if (context / name).is_file():
            return context / name
    raise CliError(f"no Containerfile or Dockerfile in {context} (pass -f FILE)")


def run_build(args: argparse.Namespace) -> int:
    from peapod.build import Builder, BuildError, BuildOptions, BuildStore, write_layout
    from peapod.cli.images import PullProgress, open_backend, short_id
    from peapod.node.images import ImageError, InvalidReferenceError, RegistryConfig, parse_reference

    if os.geteuid() != 0:
        raise CliError("peapod build runs RUN steps in containers and mounts overlays: run it as root")
    data_dir = Path(args.data_dir).absolute()
    context = Path(args.context).absolute()
    if not context.is_dir():
        raise CliError(f"{args.context}: the build context must be a directory")
    tags = []
    for tag in args.tag or []:
        try:
            tags.append(str(parse_reference(tag)))
        except InvalidReferenceError as exc:
            raise CliError(f"-t {tag}: {exc}") from None
    opts = BuildOptions(context=context, containerfile=_containerfile(context, args.file), tags=list(args.tag or []),
                        build_args=_build_args(args.build_arg or []), network=args.network,
                        no_cache=args.no_cache)
    work = data_dir / "build"
    lock = DataDirLock(work)
    try:
        lock.acquire()
    except DataDirBusyError:
        raise CliError(f"another peapod build is using {work}; wait for it to finish") from None
    except PermissionError:
        raise CliError(f"cannot write {work}: run as root or pass a --data-dir you own") from None
    layout: Path | None = None
    try:
        async def build() -> Any:
            store = BuildStore(work, data_dir / "node" / "images",
                               RegistryConfig(insecure_registries=tuple(args.insecure_registry or ())))
            try:
                with PullProgress() as progress:
                    builder = Builder(store, state_dir=work / "state", say=_say, output=_output, progress=progress)
                    return store, await builder.build(opts)
            finally:
                await store.close()

        try:
            store, result = asyncio.run(build())
        except (BuildError, ImageError) as exc:
            raise CliError(str(exc)) from None
        _say(f"COMMIT {' '.join(opts.tags)}".rstrip())
        layout = store.tmp / f"result-{uuid.uuid4().hex[:12]}"
        desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": result.manifest_digest,
                "size": len(result.manifest)}
        write_layout(layout, result.blobs, desc, tags)
        backend = open_backend(data_dir)
        try:
            loaded = backend.load(layout, None)
        except CliError as exc:
            raise CliError(f"the image was built but could not be stored in the node's image store: {exc}") \
                from None
        finally:
            backend.close()
        if not loaded or loaded[0]["id"] != result.image_id:
            raise CliError("the node's image store did not report the built image")
        _say(f"Successfully built {short_id(result.image_id)}")
        for tag in opts.tags:
            _say(f"Successfully tagged {tag}")
        _say(result.image_id)
        return 0
    finally:
        if layout is not None:
            shutil.rmtree(layout, ignore_errors=True)
        lock.release()


def run_push(args: argparse.Namespace) -> int:
    from peapod.build import NodeImages, push_image
    from peapod.cli.images import _auth, socket_answers
    from peapod.node.images import ImageError, InvalidReferenceError, OciImageService, RegistryConfig, parse_reference

    data_dir = Path(args.data_dir).absolute()
    root = data_dir / "node" / "images"
    for ref in (args.image, args.dest):
        if ref:
            try:
                parse_reference(ref)
            except InvalidReferenceError as exc:
                raise CliError(f"{ref}: {exc}: expected [REGISTRY/]NAME[:TAG]") from None
    config = RegistryConfig(insecure_registries=tuple(args.insecure_registry or ()))
    auth = _auth(args.creds)
    target = str(parse_reference(args.dest or args.image))
    sock = data_dir / "node" / "images.sock"
    _say(f"Pushing {target}")
    try:
        if sock.exists() and socket_answers(sock):  # the agent owns the store: read it, change nothing
            digest = asyncio.run(push_image(NodeImages(root), args.image, args.dest, auth=auth,
                                            registry_config=config))
        else:
            if not (root / "images.json").exists():
                raise CliError(f"no such image: {args.image} (see `peapod images ls`)")
            lock = DataDirLock(data_dir)
            try:
                lock.acquire()
            except DataDirBusyError as exc:
                raise CliError(f"{exc}; its image socket {sock} does not answer") from None
            except PermissionError:
                raise CliError(f"cannot use {data_dir}: run as root") from None
            try:
                async def push() -> str:
                    async with OciImageService(root, registry_config=config) as svc:
                        return await svc.push(args.image, args.dest, auth=auth)

                digest = asyncio.run(push())
            finally:
                lock.release()
    except (ImageError, OSError) as exc:
        raise CliError(f"push {target}: {exc}") from None
    _say(f"Digest: {digest}")
    return 0
