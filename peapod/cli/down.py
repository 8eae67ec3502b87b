"""``peapod down``: remove what a data dir's pods hold, without the API (after a crash or --keep-pods)."""

from __future__ import annotations

import argparse
import asyncio

from peapod.cli.datadir import DataDirBusyError, DataDirLock
from peapod.cli.main import CliError


def run_down(args: argparse.Namespace) -> int:
    from peapod.node.agent import cleanup_data_dir

    lock = DataDirLock(args.data_dir)
    try:
        lock.acquire()
    except DataDirBusyError as e:
        raise CliError(f"{e} (stop it first: peapod down never pulls pods from under a running peapod)") from None
    try:
        node_dir = args.data_dir / "node"
        if not node_dir.exists():
            print(f"nothing to remove in {args.data_dir}")
            return 0
        recorded = node_dir / "bridge"
        bridge = args.bridge or (recorded.read_text().strip() if recorded.exists() else "peapod0")
        removed = asyncio.run(cleanup_data_dir(node_dir, bridge=bridge))
        for item in removed:
            print(f"removed {item}")
        print(f"peapod down: {len(removed)} item(s) removed")
    finally:
        lock.release()
    return 0
