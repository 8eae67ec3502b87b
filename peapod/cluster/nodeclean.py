"""``python -m peapod.cluster.nodeclean NODE_DATA_DIR BRIDGE``: remove what a killed agent's pods left
(containers, mounts, sandboxes, CNI allocations, cgroups, the pods' bridge). ``peapod cluster down`` runs
it inside the host's network namespace; prints one line per item removed."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path


def node_dir(data_dir: Path) -> Path:
    """The directory holding the agent's runtime state (``peapod up`` keeps it in DATA/node)."""
    return data_dir / "node" if (data_dir / "node").is_dir() else data_dir


def main(argv: list[str] | None = None) -> int:
    from peapod.node.agent import cleanup_data_dir

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m peapod.cluster.nodeclean NODE_DATA_DIR BRIDGE", file=sys.stderr)
        return 2
    for item in asyncio.run(cleanup_data_dir(node_dir(Path(args[0])), bridge=args[1])):
        print(item)
    return 0


if __name__ == "__main__":
    sys.exit(main())
