"""The fault injector's agent fault on a fake split node (no processes)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from peapod.testing.cluster import PeapodCluster
from peapod.testing.robustness.faults import Injector
from peapod.testing.robustness.history import History


class FakeSplitNode:
    def __init__(self, base: Path) -> None:
        self.agent_dir = base / "agent"
        self.calls: list[str] = []
        self.pid = 100

    def kill_agent(self) -> int:
        self.calls.append("kill")
        return self.pid

    def restart_agent(self, timeout: float = 90.0) -> int:
        self.calls.append("restart")
        self.pid += 1
        return self.pid


def injector(tmp_path: Path, agent: Any = None) -> tuple[Injector, History]:
    history = History(seed=1, namespace="ns")
    server = PeapodCluster(tmp_path / "server", command="server", port=1)
    return Injector(server, history, random.Random(1), agent=agent, say=lambda _m: None), history


async def test_kill_agent_kills_then_restarts_the_agent_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_sleep(_s: float) -> None:
        return None

    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    node = FakeSplitNode(tmp_path)
    inj, history = injector(tmp_path, node)
    assert inj.node_dir == node.agent_dir  # the node checks look at the agent's data dir
    rec = await inj.inject("kill-agent")
    assert node.calls == ["kill", "restart"]
    assert rec.kind == "kill-agent" and "pid 100" in rec.detail and "restarted as 101" in rec.detail
    assert history.faults == [rec]


async def test_kill_agent_needs_a_split_node(tmp_path: Path) -> None:
    inj, _ = injector(tmp_path)
    assert inj.node_dir == tmp_path / "server"
    with pytest.raises(RuntimeError, match="split node"):
        await inj.inject("kill-agent")
