"""Acknowledged SQLite writes survive kill -9 and the file stays intact.

A child process writes in a loop (several concurrent creators, so commits are grouped, plus one
compare-and-swap counter) and prints each key only after its write returned. The parent SIGKILLs it at
a random moment, several times, restarting it on the same file, then checks that every acknowledged
write is there, that the revision history has no holes and that SQLite finds the file intact.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from peapod.store.sqlite import SQLiteStore

REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import asyncio, sys
from pathlib import Path
from peapod.store.base import ConflictError
from peapod.store.sqlite import SQLiteStore

async def main(path: str, run: str) -> None:
    store = await SQLiteStore.open(Path(path))
    out = sys.stdout

    async def creator(w: int) -> None:
        i = 0
        while True:
            key = f"/crash/{run}/{w}/{i}"
            await store.create(key, key.encode() * 20)
            out.write(f"key {key}\n")
            out.flush()
            i += 1

    async def counter() -> None:
        while True:
            cur = await store.get("/counter")
            if cur is None:
                kv = await store.create("/counter", b"1")
            else:
                try:
                    kv = await store.update("/counter", str(int(cur.value) + 1).encode(), cur.mod_revision)
                except ConflictError:
                    continue
            out.write(f"counter {int(kv.value)}\n")
            out.flush()

    out.write("ready\n")
    out.flush()
    await asyncio.gather(counter(), *(creator(w) for w in range(8)))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def acknowledged(output: Path) -> tuple[bool, set[str], int]:
    """(child was ready, acknowledged keys, highest acknowledged counter) from complete lines."""
    text = output.read_text()
    lines = text.split("\n")[:-1]  # the last piece may be a torn line
    keys = {line[4:] for line in lines if line.startswith("key ")}
    counters = [int(line[8:]) for line in lines if line.startswith("counter ")]
    return "ready" in lines, keys, max(counters, default=0)


def run_and_kill(db: Path, output: Path, run: int, rng: random.Random) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with output.open("w") as out:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(db), str(run)], stdout=out, stderr=subprocess.PIPE, env=env
        )
    try:
        deadline = time.monotonic() + 15
        while not acknowledged(output)[0]:
            if child.poll() is not None:
                raise AssertionError(f"child exited early: {child.stderr.read().decode()}")  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "child did not start"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.02, 0.4))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stderr.close()  # type: ignore[union-attr]
    assert child.returncode == -signal.SIGKILL


async def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    rng = random.Random()
    acked: set[str] = set()
    counter = 0
    for run in range(6):
        output = tmp_path / f"out{run}.txt"
        await asyncio.to_thread(run_and_kill, db, output, run, rng)
        _, keys, top = acknowledged(output)
        assert keys, "the child acknowledged nothing before it was killed"
        acked |= keys
        counter = max(counter, top)

    store = await SQLiteStore.open(db)
    try:
        present = {kv.key: kv.value for kv in (await store.list("/crash/")).items}
        missing = acked - present.keys()
        assert not missing, f"{len(missing)} acknowledged keys lost, e.g. {sorted(missing)[:3]}"
        assert all(present[k] == k.encode() * 20 for k in acked)
        kv = await store.get("/counter")
        assert kv is not None and int(kv.value) >= counter

        # The history is whole: one event per revision, 1..current, no holes.
        current = await store.current_revision()
        revisions = []
        async with asyncio.timeout(30):
            async for ev in store.watch("", 0):
                revisions.append(ev.revision)
                if ev.revision == current:
                    break
        assert revisions == list(range(1, current + 1))
    finally:
        await store.close()

    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
