"""runc's state read from its state file, as `runc state` would report it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from peapod.node.runtime.runc_runtime import _proc_start_time, read_runc_state


def write_state(root: Path, cid: str, pid: int, start: str, *, fifo: bool = False) -> None:
    d = root / cid
    d.mkdir(parents=True)
    (d / "state.json").write_text(json.dumps({
        "id": cid, "init_process_pid": pid, "init_process_start": int(start), "created": "2026-01-01T00:00:00Z",
        "config": {"labels": ["bundle=/b", "io.peapod.x=1"]},
    }))
    if fifo:
        (d / "exec.fifo").write_text("")


def test_running_created_stopped_and_missing(tmp_path: Path) -> None:
    me = os.getpid()
    start = _proc_start_time(me)
    assert start is not None
    write_state(tmp_path, "run", me, start)
    write_state(tmp_path, "new", me, start, fifo=True)
    write_state(tmp_path, "reused", me, str(int(start) + 1))  # same PID, another process
    st = read_runc_state(tmp_path, "run")
    assert isinstance(st, dict) and st["status"] == "running" and st["pid"] == me
    assert st["annotations"] == {"io.peapod.x": "1"}
    assert read_runc_state(tmp_path, "new")["status"] == "created"  # type: ignore[index]
    gone = read_runc_state(tmp_path, "reused")
    assert gone["status"] == "stopped" and gone["pid"] == 0  # type: ignore[index]
    assert read_runc_state(tmp_path, "missing") is None
