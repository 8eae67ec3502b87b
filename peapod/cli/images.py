"""``peapod images ls|pull|load|rm|prune``: the node's images, like ``crictl images`` / ``docker images``.

While a peapod runs on the data dir, its node agent owns the image store (in-process locks), so the
command goes through the agent's socket ``DATA/node/images.sock`` (:mod:`peapod.node.imageapi`).
With no peapod running it takes the data dir lock and works on ``DATA/node/images`` itself.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import http.client
import json
import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from peapod.cli.datadir import DataDirBusyError, DataDirLock
from peapod.cli.main import CliError
from peapod.node.imageapi import NDJSON, connect_unix, image_json, prune_images, remove_image

Progress = Callable[[dict[str, Any]], None]
Obj = dict[str, Any]


class Backend(Protocol):
    def list(self) -> list[Obj]: ...
    def pull(self, ref: str, auth: Any, progress: Progress) -> Obj: ...
    def load(self, path: Path, name: str | None) -> list[Obj]: ...
    def remove(self, ref: str) -> Obj: ...
    def prune(self) -> Obj: ...
    def close(self) -> None: ...


# -- through the agent -----------------------------------------------------------------------------

class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = connect_unix(self.path, timeout=self.timeout)


def socket_answers(path: Path) -> bool:
    """True when something accepts connections on ``path``."""
    try:
        connect_unix(path, timeout=5.0).close()
    except PermissionError:
        raise CliError(f"cannot use {path}: run as root") from None
    except OSError:
        return False
    return True


class SocketBackend:
    """The running agent's image API."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _send(self, method: str, url: str, body: Obj | None = None, *, accept: str = "application/json",
              timeout: float | None = None) -> tuple[_UnixConnection, http.client.HTTPResponse]:
        conn = _UnixConnection(self.path, timeout)
        headers = {"Accept": accept}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, url, body=data, headers=headers)
            return conn, conn.getresponse()
        except OSError as exc:
            conn.close()
            raise CliError(f"the node agent's image socket {self.path} failed: {exc}; is peapod still up?") \
                from None

    def _call(self, method: str, url: str, body: Obj | None = None, timeout: float | None = None) -> Obj:
        conn, resp = self._send(method, url, body, timeout=timeout)
        try:
            raw = resp.read()
        finally:
            conn.close()
        try:
            obj = json.loads(raw or b"{}")
        except ValueError:
            obj = {"error": raw.decode(errors="replace").strip() or resp.reason}
        if resp.status >= 400:
            raise CliError(str(obj.get("error") or f"{resp.status} {resp.reason}"))
        return obj

    def list(self) -> list[Obj]:
        return list(self._call("GET", "/images", timeout=60)["images"])

    def pull(self, ref: str, auth: Any, progress: Progress) -> Obj:
        body: Obj = {"ref": ref}
        if auth is not None:
            body["auth"] = auth
        conn, resp = self._send("POST", "/images/pull", body, accept=NDJSON)
        try:
            if resp.status >= 400 or NDJSON not in resp.getheader("Content-Type", ""):
                raw = resp.read()
                obj = json.loads(raw or b"{}")
                if resp.status >= 400:
                    raise CliError(str(obj.get("error") or f"{resp.status} {resp.reason}"))
                return dict(obj["image"])
            while line := resp.readline():
                event = json.loads(line)
                if "progress" in event:
                    progress(event["progress"])
                elif "error" in event:
                    raise CliError(str(event["error"]))
                elif "image" in event:
                    return dict(event["image"])
            raise CliError(f"the node agent ended the pull of {ref} without a result; see its log")
        finally:
            conn.close()

    def load(self, path: Path, name: str | None) -> list[Obj]:
        return list(self._call("POST", "/images/load", {"path": str(path), "name": name})["images"])

    def remove(self, ref: str) -> Obj:
        return self._call("DELETE", "/images/" + urllib.parse.quote(ref, safe=""))

    def prune(self) -> Obj:
        return self._call("POST", "/images/prune")

    def close(self) -> None:
        pass


# -- directly on the data dir ------------------------------------------------------------------------

class DirectBackend:
    """No peapod runs on the data dir: hold its lock and use the image store in this process."""

    def __init__(self, data_dir: Path, *, insecure_registries: tuple[str, ...] = ()) -> None:
        self.data_dir = data_dir
        self.root = data_dir / "node" / "images"
        self.insecure_registries = insecure_registries
        self._lock: DataDirLock | None = None
        self._runner: asyncio.Runner | None = None
        self._svc: Any = None

    def _open(self, create: bool) -> Any:
        if self._svc is not None:
            return self._svc
        if not create and not self.root.is_dir():
            return None  # nothing stored yet: do not create a data dir to say so
        from peapod.node.images import OciImageService, RegistryConfig

        lock = DataDirLock(self.data_dir)
        try:
            lock.acquire()
        except DataDirBusyError as exc:
            sock = self.data_dir / "node" / "images.sock"
            raise CliError(f"{exc}; its image socket {sock} does not answer: wait until its node agent "
                           "is up (`peapod server` runs none)") from None
        except PermissionError:
            raise CliError(f"cannot write {self.data_dir}: run as root or pass a --data-dir you own") from None
        self._lock = lock
        self._runner = asyncio.Runner()
        self._svc = OciImageService(
            self.root, registry_config=RegistryConfig(insecure_registries=self.insecure_registries))
        return self._svc

    def _run(self, coro: Any) -> Any:
        from peapod.node.images import ImageError

        assert self._runner is not None
        try:
            return self._runner.run(coro)
        except (ImageError, OSError, ValueError, KeyError) as exc:
            raise CliError(str(exc) or type(exc).__name__) from None

    def list(self) -> list[Obj]:
        svc = self._open(create=False)
        return [] if svc is None else [image_json(i) for i in svc.list()]

    def pull(self, ref: str, auth: Any, progress: Progress) -> Obj:
        svc = self._open(create=True)
        return image_json(self._run(svc.pull(ref, auth=auth, progress=progress)))

    def load(self, path: Path, name: str | None) -> list[Obj]:
        svc = self._open(create=True)
        return [image_json(i) for i in self._run(svc.load(path, name=name))]

    def remove(self, ref: str) -> Obj:
        svc = self._open(create=False)
        if svc is None:
            raise CliError(f"no such image: {ref} (see `peapod images ls`)")
        # no agent: no pod is being run; the store still refuses images of mounted container rootfs
        return dict(self._run(remove_image(svc, ref, set())))

    def prune(self) -> Obj:
        svc = self._open(create=False)
        if svc is None:
            return {"deleted": [], "untagged": [], "layers_removed": 0, "space_reclaimed": 0}
        return dict(self._run(prune_images(svc, set())))

    def close(self) -> None:
        try:
            if self._svc is not None and self._runner is not None:
                self._runner.run(self._svc.close())
        finally:
            if self._runner is not None:
                self._runner.close()
            if self._lock is not None:
                self._lock.release()


def open_backend(data_dir: Path, *, insecure_registries: tuple[str, ...] = ()) -> Backend:
    sock = data_dir / "node" / "images.sock"
    if sock.exists() and socket_answers(sock):
        if insecure_registries:
            print("peapod: note: --insecure-registry is ignored: the running peapod pulls with its own "
                  "registry settings (`peapod up --insecure-registry`)", file=sys.stderr)
        return SocketBackend(sock)
    return DirectBackend(data_dir, insecure_registries=insecure_registries)


# -- output -----------------------------------------------------------------------------------------

def human_size(size: float) -> str:
    """Docker's sizes: decimal units, 3 significant digits (``4.26MB``, ``958kB``)."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    while size >= 999.5 and i < len(units) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.3g}{units[i]}"


def _split_tag(tag: str) -> tuple[str, str]:
    name, sep, t = tag.rpartition(":")
    if not sep or "/" in t:
        return tag, "<none>"
    return name, t


def short_id(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def table_rows(images: list[Obj], *, no_trunc: bool = False) -> list[list[str]]:
    rows = []
    for img in images:
        ident = img["id"] if no_trunc else short_id(img["id"])
        size = human_size(int(img.get("size") or 0))
        names = [_split_tag(t) for t in img.get("repo_tags") or []]
        if not names:
            repos = dict.fromkeys(d.split("@", 1)[0] for d in img.get("repo_digests") or [])
            names = [(r, "<none>") for r in repos] or [("<none>", "<none>")]
        rows.extend([repo, tag, ident, size] for repo, tag in names)
    rows.sort(key=lambda r: (r[0] == "<none>", r[0], r[1], r[2]))
    return rows


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    return "\n".join(lines)


class PullProgress:
    """Per-layer download progress on stderr: rich bars on a terminal, a line per finished layer
    otherwise (logs and pipes)."""

    def __init__(self) -> None:
        self._bars: Any = None
        self._tasks: dict[str, Any] = {}
        self._done: set[str] = set()
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            self._bars = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                  TransferSpeedColumn(), console=Console(stderr=True))

    def __enter__(self) -> PullProgress:
        if self._bars is not None:
            self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bars is not None:
            self._bars.stop()

    def __call__(self, event: dict[str, Any]) -> None:
        digest = str(event.get("digest", ""))
        done, total = int(event.get("downloaded") or 0), int(event.get("total") or 0)
        if self._bars is not None:
            if digest not in self._tasks:
                self._tasks[digest] = self._bars.add_task(short_id(digest), total=total or None)
            self._bars.update(self._tasks[digest], completed=done)
        elif total and done >= total and digest not in self._done:
            self._done.add(digest)
            print(f"{short_id(digest)}: downloaded {human_size(total)}", file=sys.stderr, flush=True)


# -- verbs ------------------------------------------------------------------------------------------

def _auth(creds: str | None) -> Obj | None:
    if not creds:
        return None
    user, sep, password = creds.partition(":")
    if not sep:
        password = getpass.getpass(f"Password for {user}: ")
    return {"username": user, "password": password}


def _print_removed(result: Obj) -> None:
    for name in result.get("untagged") or []:
        print(f"Untagged: {name}")
    for image_id in result.get("deleted") or []:
        print(f"Deleted: {image_id}")


def _ls(backend: Backend, args: argparse.Namespace) -> int:
    images = backend.list()
    if args.output == "json":
        print(json.dumps(images, indent=2))
    elif args.quiet:
        for image_id in dict.fromkeys(i["id"] if args.no_trunc else short_id(i["id"]) for i in images):
            print(image_id)
    else:
        print(format_table(["REPOSITORY", "TAG", "IMAGE ID", "SIZE"], table_rows(images, no_trunc=args.no_trunc)))
    return 0


def _pull(backend: Backend, args: argparse.Namespace) -> int:
    from peapod.node.images import InvalidReferenceError, parse_reference

    try:
        ref = str(parse_reference(args.ref))
    except InvalidReferenceError as exc:
        raise CliError(f"{exc}: expected [REGISTRY/]NAME[:TAG|@DIGEST]") from None
    with PullProgress() as progress:
        image = backend.pull(args.ref, _auth(args.creds), progress)
    for digest in image.get("repo_digests") or []:
        print(f"Digest: {digest.split('@', 1)[1]}")
    print(f"Image ID: {image['id']}")
    print(ref)
    return 0


def _load(backend: Backend, args: argparse.Namespace) -> int:
    path = Path(args.path).resolve()
    if not path.exists():
        raise CliError(f"{args.path}: no such file or directory (give a docker-archive tar or an OCI layout)")
    try:
        images = backend.load(path, args.name)
    except CliError as exc:
        raise CliError(f"cannot load {args.path}: {exc}") from None
    for img in images:
        for tag in img.get("repo_tags") or []:
            print(f"Loaded image: {tag}")
        if not img.get("repo_tags"):
            print(f"Loaded image ID: {img['id']}")
    return 0


def _rm(backend: Backend, args: argparse.Namespace) -> int:
    failed = 0
    for ref in args.refs:
        try:
            _print_removed(backend.remove(ref))
        except CliError as exc:
            if len(args.refs) == 1:
                raise
            print(f"peapod: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def _prune(backend: Backend, _args: argparse.Namespace) -> int:
    result = backend.prune()
    _print_removed(result)
    print(f"Total reclaimed space: {human_size(int(result.get('space_reclaimed') or 0))}")
    return 0


VERBS: dict[str, Callable[[Backend, argparse.Namespace], int]] = {
    "ls": _ls, "list": _ls, "pull": _pull, "load": _load, "rm": _rm, "rmi": _rm, "prune": _prune,
}


def run_images(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).absolute()
    backend = open_backend(data_dir, insecure_registries=tuple(getattr(args, "insecure_registry", ()) or ()))
    try:
        return VERBS[args.images_command](backend, args)
    finally:
        backend.close()
