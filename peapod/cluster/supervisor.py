"""The cluster's small supervisor process: TCP proxies, no TLS termination.

- The API proxy: listens on the machine's loopback (for kubectl, through ``DATA/kubeconfig``) and on the
  hosts' gateway address (for the agents); each connection goes to the first API server that accepts it,
  starting from a rotating index, so clients keep working when one server dies.
- Registry forwarders: for each ``--insecure-registry 127.0.0.1:PORT``, a socket bound to 127.0.0.1:PORT
  inside every host's network namespace (made by a thread that enters the namespace with setns(2)),
  whose connections go to 127.0.0.1:PORT of the machine. Images keep the name they have on the machine.

Run as ``python -m peapod.cluster.supervisor CONFIG.json``; it writes ``ready_file`` (the bound ports)
once every socket listens, and stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("peapod.cluster.supervisor")

CLONE_NEWNET = 0x40000000
CONNECT_TIMEOUT = 2.0
BUF = 64 * 1024


@dataclass
class SupervisorConfig:
    api_listen: list[tuple[str, int]]  # port 0: any free port (reported in the ready file)
    api_backends: list[tuple[str, int]]
    registry_ports: list[int] = field(default_factory=list)
    netns: list[str] = field(default_factory=list)  # names under /run/netns
    ready_file: str = ""

    @classmethod
    def load(cls, path: Path) -> SupervisorConfig:
        raw = json.loads(path.read_text())
        return cls(
            api_listen=[(h, int(p)) for h, p in raw["api_listen"]],
            api_backends=[(h, int(p)) for h, p in raw["api_backends"]],
            registry_ports=[int(p) for p in raw.get("registry_ports", [])],
            netns=list(raw.get("netns", [])),
            ready_file=raw.get("ready_file", ""),
        )

    def dump(self) -> str:
        return json.dumps({"api_listen": self.api_listen, "api_backends": self.api_backends,
                           "registry_ports": self.registry_ports, "netns": self.netns,
                           "ready_file": self.ready_file})


def listen_in_netns(netns: str, host: str, port: int) -> socket.socket:
    """A listening TCP socket that lives in another network namespace: a thread enters it, creates and
    binds the socket, and ends (a socket stays in the namespace it was made in)."""
    result: list[socket.socket | BaseException] = []

    def run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {netns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(_listen(host, port))
        except BaseException as e:  # handed to the caller
            result.append(e)

    t = threading.Thread(target=run, name=f"netns-{netns}")
    t.start()
    t.join()
    got = result[0]
    if isinstance(got, BaseException):
        raise got
    return got


def _listen(host: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(512)
    s.setblocking(False)
    return s


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(BUF):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def _splice(
    client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
    up_r: asyncio.StreamReader, up_w: asyncio.StreamWriter,
) -> None:
    try:
        await asyncio.gather(_pipe(client_r, up_w), _pipe(up_r, client_w))
    finally:
        for w in (client_w, up_w):
            w.close()
            with contextlib.suppress(Exception):
                await w.wait_closed()


class Forwarder:
    """Accepts on given sockets and splices each connection to the first backend that answers."""

    def __init__(self, backends: Sequence[tuple[str, int]], name: str) -> None:
        self.backends = list(backends)
        self.name = name
        self._next = itertools.count()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        start = next(self._next) % len(self.backends)
        order = self.backends[start:] + self.backends[:start]
        for host, port in order:
            try:
                up_r, up_w = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
            except (OSError, TimeoutError):
                continue
            await _splice(reader, writer, up_r, up_w)
            return
        log.warning("%s: no backend accepts a connection (%s)", self.name, order)
        writer.close()


def _write_ready(path: str, content: dict[str, Any]) -> None:
    tmp = Path(path + ".tmp")
    tmp.write_text(json.dumps(content))
    os.replace(tmp, path)


async def serve(cfg: SupervisorConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    servers: list[asyncio.AbstractServer] = []
    api = Forwarder(cfg.api_backends, "api")
    bound: dict[str, Any] = {"api": []}
    for host, port in cfg.api_listen:
        srv = await asyncio.start_server(api.handle, sock=_listen(host, port))
        servers.append(srv)
        bound["api"].append([host, srv.sockets[0].getsockname()[1]])
    for port in cfg.registry_ports:
        fwd = Forwarder([("127.0.0.1", port)], f"registry:{port}")
        for ns in cfg.netns:
            servers.append(await asyncio.start_server(fwd.handle, sock=listen_in_netns(ns, "127.0.0.1", port)))
    if cfg.ready_file:
        _write_ready(cfg.ready_file, {"pid": os.getpid(), **bound})
    log.info("supervisor ready: %s", bound)
    await stop.wait()
    for srv in servers:
        srv.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m peapod.cluster.supervisor CONFIG.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(SupervisorConfig.load(Path(args[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
