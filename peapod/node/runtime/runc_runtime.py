"""ContainerRuntime on runc, with conmon as each container's monitor (CRI-O's model).

conmon is the container's parent: it outlives the agent, writes the CRI log file, and records the
exit code in ``exits/<id>`` (and ``oom`` in the persist dir when the cgroup OOM-killed). runc keeps
its state under a peapod-owned ``--root``, so a new RuncRuntime over the same data dir re-adopts
everything: running containers from runc, and exit codes of ones that died while no agent ran.

Data dir layout::

    runc/               runc --root
    exits/<id>          exit code written by conmon
    attach/             conmon --socket-dir-path: <id> links to the bundle (attach socket, ctl FIFO)
    containers/<id>/    meta.json, conmon.pid, ctr.pid, persist/ (exit, oom)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import re
import shutil
import signal as _signal
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from peapod.clock import Clock, RealClock
from peapod.node.runtime.attach import STDIN_ONCE_ANNOTATION, AttachConnection
from peapod.node.runtime.bundle import STDIN_ANNOTATION
from peapod.node.runtime.filecache import JsonFileCache
from peapod.node.runtime.logs import parse_timestamp
from peapod.node.runtime.types import (
    ContainerNotFound,
    ContainerRuntimeError,
    ContainerState,
    ContainerStatus,
    ExecProcess,
)

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_CLEAN_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


def _iso(dt: datetime | None) -> str | None:
    return dt.astimezone(UTC).isoformat() if dt else None


def _from_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


async def _wait_pid_exit(pid: int, timeout: float) -> bool:
    """Wait for any process (not only children) to exit, via a pidfd. True if it exited."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, lambda: fut.done() or fut.set_result(None))
    try:
        await asyncio.wait_for(fut, timeout)
        return True
    except TimeoutError:
        return not _pid_alive(pid)
    finally:
        loop.remove_reader(fd)
        os.close(fd)


class RuncRuntime:
    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        runc: str = "/usr/bin/runc",
        conmon: str = "/usr/bin/conmon",
        log_size_max: int | None = None,
        clock: Clock | None = None,
        create_timeout: float = 60.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.runc = runc
        self.conmon = conmon
        self.log_size_max = log_size_max
        self.clock = clock or RealClock()
        self.create_timeout = create_timeout
        self.runc_root = self.data_dir / "runc"
        self.exit_dir = self.data_dir / "exits"
        self.attach_dir = self.data_dir / "attach"
        self.records = self.data_dir / "containers"
        self._json = JsonFileCache()  # meta.json and runc's state.json, parsed once per change
        for d in (self.runc_root, self.exit_dir, self.attach_dir, self.records):
            d.mkdir(parents=True, exist_ok=True)

    # ---- helpers -------------------------------------------------------------------------

    def _record(self, cid: str) -> Path:
        if not _ID.match(cid):
            raise ValueError(f"invalid container id {cid!r}")
        return self.records / cid

    def _meta(self, cid: str) -> dict[str, Any] | None:
        try:
            return dict(self._json.load(self._record(cid) / "meta.json"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _write_meta(self, cid: str, meta: dict[str, Any]) -> None:
        p = self._record(cid) / "meta.json"
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, p)

    async def _runc(self, *args: str, check: bool = True) -> tuple[int, bytes, bytes]:
        proc = await asyncio.create_subprocess_exec(
            self.runc, "--root", str(self.runc_root), *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=_CLEAN_ENV,
        )
        out, err = await proc.communicate()
        rc = proc.returncode or 0
        if check and rc != 0:
            msg = err.decode(errors="replace").strip()
            if "does not exist" in msg or "not exist" in msg:
                raise ContainerNotFound(f"runc {args[0]}: {msg}")
            raise ContainerRuntimeError(f"runc {' '.join(args)}: {msg}")
        return rc, out, err

    async def _runc_state(self, cid: str) -> dict[str, Any] | None:
        """What `runc state` prints, read from runc's own state file without a process per call
        (the agent asks for every container every second); `runc state` only as a fallback."""
        fast = read_runc_state(self.runc_root, cid, self._json)
        if fast is not _UNREADABLE:
            return fast  # type: ignore[return-value]
        rc, out, _err = await self._runc("state", cid, check=False)
        if rc != 0:
            return None
        return json.loads(out)

    def _conmon_pid(self, cid: str) -> int | None:
        try:
            pid = int((self._record(cid) / "conmon.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            return None
        # guard against PID reuse: it must be conmon for this container
        if cmdline and cmdline[0].endswith(b"conmon") and cid.encode() in cmdline:
            return pid
        return None

    # ---- ContainerRuntime ----------------------------------------------------------------

    async def create(self, container_id: str, bundle_dir: str, log_path: str) -> None:
        rec = self._record(container_id)
        if (rec / "meta.json").exists() or await self._runc_state(container_id) is not None:
            raise ContainerRuntimeError(f"container {container_id} already exists")
        bundle = Path(bundle_dir).absolute()  # noqa: ASYNC240 - no I/O
        spec = json.loads((bundle / "config.json").read_text())
        terminal = bool(spec.get("process", {}).get("terminal"))
        stdin = spec.get("annotations", {}).get(STDIN_ANNOTATION) == "true"
        (rec / "persist").mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (self.exit_dir / container_id).unlink()
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        self._write_meta(container_id, {
            "id": container_id, "bundle": str(bundle), "log_path": str(log_path),
            "created_at": _iso(self.clock.now()), "started_at": None,
        })
        args = [
            self.conmon, "--api-version", "1",
            "-c", container_id, "-u", container_id, "-n", container_id,
            "-r", self.runc, "-b", str(bundle),
            "-p", str(rec / "ctr.pid"), "-P", str(rec / "conmon.pid"),
            "--exit-dir", str(self.exit_dir), "--persist-dir", str(rec / "persist"),
            "-l", f"k8s-file:{log_path}", "--socket-dir-path", str(self.attach_dir),
            "--runtime-arg", f"--root={self.runc_root}",
        ]
        if self.log_size_max is not None:
            args += ["--log-size-max", str(self.log_size_max)]
        args += _stdio_flags(terminal=terminal, stdin=stdin,
                             stdin_once=spec.get("annotations", {}).get(STDIN_ONCE_ANNOTATION) == "true")
        r, w = os.pipe()
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        try:
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(r, "rb", buffering=0)
            )
        except BaseException:
            os.close(w)
            raise
        try:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE, pass_fds=(w,),
                    env={**_CLEAN_ENV, "_OCI_SYNCPIPE": str(w)}, cwd=str(bundle),
                )
            finally:
                os.close(w)
            _, err = await proc.communicate()  # the launcher exits at once; the monitor daemonizes
            line = await asyncio.wait_for(reader.readline(), self.create_timeout)
        except BaseException:
            transport.close()
            await self._cleanup_failed(container_id)
            raise
        transport.close()
        msg = _parse_sync_message(line)
        if msg is None or int(msg.get("data", -1)) <= 0:
            detail = (msg or {}).get("message") or err.decode(errors="replace").strip()
            await self._cleanup_failed(container_id)
            raise ContainerRuntimeError(f"create {container_id}: {detail or 'conmon failed'}")

    async def _cleanup_failed(self, cid: str) -> None:
        with contextlib.suppress(ContainerRuntimeError):
            await self._runc("delete", "--force", cid, check=False)
        self._remove_files(cid)

    async def start(self, container_id: str) -> None:
        meta = self._meta(container_id)
        if meta is None:
            raise ContainerNotFound(container_id)
        await self._runc("start", container_id)
        meta["started_at"] = _iso(self.clock.now())
        self._write_meta(container_id, meta)

    async def kill(self, container_id: str, signal: int) -> None:
        rc, _out, err = await self._runc("kill", container_id, str(int(signal)), check=False)
        if rc != 0:
            msg = err.decode(errors="replace")
            if "not running" in msg or "process already finished" in msg:
                return
            if "does not exist" in msg:
                raise ContainerNotFound(container_id)
            raise ContainerRuntimeError(f"kill {container_id}: {msg.strip()}")

    async def _wait_exit_file(self, cid: str, timeout: float) -> bool:
        """conmon writes the exit file after draining logs; wait for it while conmon lives."""
        path = self.exit_dir / cid
        deadline = self.clock.monotonic() + timeout
        while not path.exists():
            if self._conmon_pid(cid) is None and not path.exists():
                return path.exists()
            if self.clock.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def wait(self, container_id: str, timeout: float | None = None) -> ContainerState:
        """Wait until the container has stopped and its exit code is recorded."""
        st = await self.state(container_id)
        if st.status in (ContainerStatus.RUNNING, ContainerStatus.CREATED) and st.pid:
            if not await _wait_pid_exit(st.pid, timeout if timeout is not None else 1e9):
                return await self.state(container_id)
        await self._wait_exit_file(container_id, 10.0)
        return await self.state(container_id)

    async def stop(self, container_id: str, timeout: float, signal: int = _signal.SIGTERM) -> None:
        st = await self.state(container_id)
        if st.status not in (ContainerStatus.RUNNING, ContainerStatus.CREATED):
            return
        if st.status == ContainerStatus.CREATED:
            signal, timeout = _signal.SIGKILL, 0  # never started: nothing to shut down gracefully
        await self.kill(container_id, signal)
        if st.pid and await _wait_pid_exit(st.pid, max(timeout, 0)):
            await self._wait_exit_file(container_id, 10.0)
            return
        await self.kill(container_id, _signal.SIGKILL)
        if st.pid and not await _wait_pid_exit(st.pid, 30.0):
            raise ContainerRuntimeError(f"container {container_id} survived SIGKILL")
        await self._wait_exit_file(container_id, 10.0)

    async def remove(self, container_id: str) -> None:
        self._record(container_id)  # validates the id
        rs = await self._runc_state(container_id)
        if rs is not None:
            if rs.get("status") in ("running", "created", "paused"):
                await self.stop(container_id, 0)
            await self._runc("delete", "--force", container_id, check=False)
        cpid = self._conmon_pid(container_id)
        if cpid is not None and not await _wait_pid_exit(cpid, 5.0):
            with contextlib.suppress(ProcessLookupError):
                os.kill(cpid, _signal.SIGKILL)
            await _wait_pid_exit(cpid, 5.0)
        self._remove_files(container_id)

    def _remove_files(self, cid: str) -> None:
        self._json.forget(self._record(cid) / "meta.json")
        self._json.forget(self.runc_root / cid / "state.json")
        shutil.rmtree(self._record(cid), ignore_errors=True)
        for p in (self.exit_dir / cid, self.attach_dir / cid):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    async def state(self, container_id: str) -> ContainerState:
        meta = self._meta(container_id)
        rs = await self._runc_state(container_id)
        if meta is None and rs is None:
            raise ContainerNotFound(container_id)
        meta = meta or {}
        exit_path = self.exit_dir / container_id
        runc_status = (rs or {}).get("status", "stopped")
        if runc_status == "stopped" and not exit_path.exists():
            await self._wait_exit_file(container_id, 1.0)
        status = {
            "created": ContainerStatus.CREATED, "running": ContainerStatus.RUNNING,
            "paused": ContainerStatus.RUNNING, "stopped": ContainerStatus.STOPPED,
        }.get(runc_status, ContainerStatus.UNKNOWN)
        exit_code = finished_at = None
        try:
            text = exit_path.read_text().strip()
            exit_code = int(text)
            finished_at = datetime.fromtimestamp(exit_path.stat().st_mtime, UTC)
            status = ContainerStatus.STOPPED
        except (FileNotFoundError, ValueError):
            pass
        created_at = _from_iso(meta.get("created_at"))
        if rs and rs.get("created"):
            with contextlib.suppress(ValueError):
                created_at = parse_timestamp(rs["created"].encode())[0]
        started_at = _from_iso(meta.get("started_at"))
        persist = self._record(container_id) / "persist"
        oom = (persist / "oom").exists() or (Path(meta.get("bundle", "/nonexistent")) / "oom").exists()
        annotations = dict((rs or {}).get("annotations") or {})
        if not annotations and meta.get("bundle"):
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                spec = json.loads((Path(meta["bundle"]) / "config.json").read_text())
                annotations = dict(spec.get("annotations") or {})
        return ContainerState(
            id=container_id,
            status=status,
            pid=int((rs or {}).get("pid") or 0) if status != ContainerStatus.STOPPED else 0,
            exit_code=exit_code,
            created_at=created_at,
            started_at=started_at,
            finished_at=finished_at,
            oom_killed=oom,
            bundle=(rs or {}).get("bundle") or meta.get("bundle", ""),
            log_path=meta.get("log_path", ""),
            annotations=annotations,
        )

    async def list(self) -> list[ContainerState]:
        ids = {p.name for p in self.records.iterdir() if p.is_dir() and _ID.match(p.name)}
        if self.runc_root.is_dir():  # runc's containers: one directory each under its root
            ids.update(p.name for p in self.runc_root.iterdir() if (p / "state.json").exists())
        states = []
        for cid in sorted(ids):
            with contextlib.suppress(ContainerNotFound):
                states.append(await self.state(cid))
        return states

    async def attach(self, container_id: str) -> AttachConnection:
        """Connect to the container's conmon attach socket (its main process' stdio).

        Raises ContainerNotFound, or ContainerRuntimeError when conmon no longer runs.
        """
        if self._meta(container_id) is None:
            raise ContainerNotFound(container_id)
        sock_dir = self.attach_dir / container_id  # conmon's symlink to the bundle
        try:
            return await AttachConnection.open(sock_dir)
        except OSError as e:
            raise ContainerRuntimeError(f"attach {container_id}: {e.strerror or e}") from None

    async def exec(
        self,
        container_id: str,
        argv: Sequence[str],
        *,
        tty: bool = False,
        stdin: bool = False,
        env: Sequence[str] = (),
        cwd: str | None = None,
    ) -> ExecProcess:
        """``runc exec`` in the foreground: a subprocess with pipes, or with a pty (``master_fd``)."""
        if not argv:
            raise ValueError("exec argv must not be empty")
        args = [self.runc, "--root", str(self.runc_root), "exec"]
        if tty:
            args.append("--tty")
        for e in env:
            args += ["--env", e]
        if cwd:
            args += ["--cwd", cwd]
        args += [container_id, *argv]
        if tty:
            master, slave = pty.openpty()
            try:
                proc = await asyncio.create_subprocess_exec(
                    *args, stdin=slave, stdout=slave, stderr=slave, env=_CLEAN_ENV, start_new_session=True,
                )
            except BaseException:
                os.close(master)
                raise
            finally:
                os.close(slave)
            return ExecProcess(proc, master_fd=master)
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=_CLEAN_ENV,
        )
        return ExecProcess(proc)


def _stdio_flags(*, terminal: bool, stdin: bool, stdin_once: bool) -> list[str]:
    """conmon's stdio flags, as CRI-O picks them.

    A terminal gets ``-t`` alone: attach input goes to the pty, which no detaching client closes.
    Without one, ``-i`` gives the container a stdin pipe that conmon closes when an attached client
    stops writing, unless ``--leave-stdin-open`` (every container but stdinOnce ones).
    """
    if terminal:
        return ["-t"]
    if stdin:
        return ["-i"] if stdin_once else ["--leave-stdin-open", "-i"]
    return []


def _parse_sync_message(line: bytes) -> dict[str, Any] | None:
    """The first JSON message conmon writes to the sync pipe ({"data": pid} or {"data": -1, ...})."""
    if not line.strip():
        return None
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return {"data": -1, "message": line.decode(errors="replace")}


_UNREADABLE = object()


def _proc_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks), as runc records it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] if len(fields) > 19 else None


def read_runc_state(runc_root: Path, cid: str, cache: JsonFileCache | None = None) -> dict[str, Any] | object | None:
    """runc's view of a container from ``<root>/<id>/state.json``, computed as runc does: the init
    process gone (or its PID reused) means stopped; an exec FIFO still present means created (not
    started). Returns None when the container does not exist, ``_UNREADABLE`` when the file cannot
    be used (the caller asks runc)."""
    d = runc_root / cid
    try:
        raw = cache.load(d / "state.json") if cache is not None else json.loads((d / "state.json").read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, OSError):
        return _UNREADABLE
    pid = int(raw.get("init_process_pid") or 0)
    start = str(raw.get("init_process_start") or "")
    alive = pid > 0 and _proc_start_time(pid) == start
    if not alive:
        status = "stopped"
    elif (d / "exec.fifo").exists():
        status = "created"
    else:
        status = "running"
    annotations: dict[str, str] = {}
    for label in (raw.get("config") or {}).get("labels") or []:
        key, _, value = str(label).partition("=")
        if key != "bundle":
            annotations[key] = value
    return {
        "id": cid, "pid": pid if alive else 0, "status": status, "created": raw.get("created"),
        "annotations": annotations,
    }

