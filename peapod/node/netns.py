"""TCP connections from inside a pod's network namespace, without a process or thread per connection.

A socket belongs to the network namespace its creating thread was in at ``socket()`` time and keeps
it for life. So a dedicated helper thread (one, or a small pool) serves requests: per request it
``setns()``es itself into the pod's namespace once, creates a non-blocking socket, and ``setns()``es
back to the namespace it started in. The fd is handed to the event loop, which connects and does all
I/O as usual (``loop.sock_connect`` + ``asyncio.open_connection(sock=...)``). The event-loop thread
never changes namespace; the helper threads run nothing else, so their namespace switches can't leak
into unrelated code (which is why the default executor is not used).

Namespace fds are opened per request and closed right away: caching them would keep a deleted pod's
namespace alive.
"""

from __future__ import annotations

import asyncio
import ctypes
import ipaddress
import os
import socket
import ssl as _ssl
import threading
from concurrent.futures import ThreadPoolExecutor

CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


class NetnsSocketFactory:
    """Creates sockets inside network namespaces on ``workers`` dedicated helper threads."""

    def __init__(self, workers: int = 1) -> None:
        self._local = threading.local()
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="peapod-netns", initializer=self._init_thread,
        )

    def _init_thread(self) -> None:
        # The namespace this helper thread starts in (the agent's own) is where it returns to.
        self._local.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    def _create(self, netns_path: str, family: int, type_: int, proto: int) -> socket.socket:
        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(fd)
            try:
                return socket.socket(family, type_ | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, proto)
            finally:
                _setns(self._local.home)
        finally:
            os.close(fd)

    async def new_socket(
        self, netns_path: str | None, family: int = socket.AF_INET, type_: int = socket.SOCK_STREAM,
        proto: int = 0,
    ) -> socket.socket:
        """A non-blocking socket in ``netns_path`` (None: the agent's own namespace)."""
        if netns_path is None:
            s = socket.socket(family, type_, proto)
            s.setblocking(False)
            return s
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._create, netns_path, family, type_, proto)

    def new_socket_sync(
        self, netns_path: str | None, family: int = socket.AF_INET, type_: int = socket.SOCK_STREAM,
    ) -> socket.socket:
        """Blocking variant (e.g. to create listening sockets in tests and benchmarks)."""
        if netns_path is None:
            s = socket.socket(family, type_)
            s.setblocking(False)
            return s
        return self._executor.submit(self._create, netns_path, family, type_, 0).result()

    def close(self) -> None:
        self._executor.shutdown(wait=True)


_default: NetnsSocketFactory | None = None
_default_lock = threading.Lock()


def default_factory() -> NetnsSocketFactory:
    """The process-wide helper thread (created on first use; it is a process resource like a fd)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = NetnsSocketFactory()
        return _default


def _literal_family(host: str) -> int | None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return socket.AF_INET6 if ip.version == 6 else socket.AF_INET


async def _addresses(host: str, port: int) -> list[tuple[int, tuple]]:
    family = _literal_family(host)
    if family is not None:
        return [(family, (host, port))]
    # Names resolve with the agent's resolver, as kubelet's do.
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [(fam, addr) for fam, _, _, _, addr in infos]


async def connect_socket(
    netns_path: str | None, host: str, port: int, *, factory: NetnsSocketFactory | None = None,
) -> socket.socket:
    """A connected non-blocking TCP socket to ``host:port`` from inside ``netns_path``.

    Addresses of a name are tried in order (like Go's dialer); the last error is raised.
    The caller bounds the time (``asyncio.timeout``)."""
    factory = factory or default_factory()
    loop = asyncio.get_running_loop()
    last: BaseException | None = None
    for family, addr in await _addresses(host, port):
        sock = await factory.new_socket(netns_path, family)
        try:
            await loop.sock_connect(sock, addr)
            return sock
        except BaseException as e:
            sock.close()
            if not isinstance(e, OSError):
                raise
            last = e
    raise last or OSError(f"no addresses for {host}")


async def connect_in_netns(
    netns_path: str | None,
    host: str,
    port: int,
    timeout: float | None,
    *,
    ssl: _ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    factory: NetnsSocketFactory | None = None,
    limit: int = 64 * 1024,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a TCP (optionally TLS) stream to ``host:port`` from inside ``netns_path``.

    ``netns_path`` None means the agent's own namespace. Raises OSError (e.g. ConnectionRefusedError)
    or TimeoutError when connecting (and the TLS handshake) takes longer than ``timeout`` seconds
    (None: no limit here, the caller bounds it)."""
    async with asyncio.timeout(timeout):
        sock = await connect_socket(netns_path, host, port, factory=factory)
        try:
            if ssl is not None and server_hostname is None:
                server_hostname = host if _literal_family(host) is None else ""
            return await asyncio.open_connection(
                sock=sock, ssl=ssl, server_hostname=server_hostname if ssl else None, limit=limit,
            )
        except BaseException:
            sock.close()
            raise
