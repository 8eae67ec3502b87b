"""A fake pod sandbox service for agent tests: real directories and files, no namespaces or mounts."""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict
from pathlib import Path

from peapod.node.runtime.sandbox import Sandbox, SandboxConfig, pod_hostname


class FakeSandboxes:
    """Like SandboxManager (get/healthy/create/teardown/list/list_uids) without privileges.

    ``kill(uid)`` makes a sandbox unhealthy (as if its namespaces vanished); ``fail_create`` makes
    the next creates raise."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.root = Path(data_dir) / "sandboxes"
        self.root.mkdir(parents=True, exist_ok=True)
        self.sandboxes: dict[str, Sandbox] = {}
        self.dead: set[str] = set()
        self.fail_create: list[Exception] = []
        self.created: list[str] = []
        self.torn_down: list[str] = []

    def get(self, pod_uid: str) -> Sandbox | None:
        return self.sandboxes.get(pod_uid)

    def list(self) -> list[Sandbox]:
        return [self.sandboxes[k] for k in sorted(self.sandboxes)]

    def list_uids(self) -> list[str]:
        return sorted(self.sandboxes)

    def healthy(self, sb: Sandbox) -> bool:
        return sb.pod_uid not in self.dead

    def kill(self, pod_uid: str) -> None:
        self.dead.add(pod_uid)

    async def create(self, cfg: SandboxConfig) -> Sandbox:
        if self.fail_create:
            raise self.fail_create.pop(0)
        existing = self.sandboxes.get(cfg.pod_uid)
        if existing is not None and self.healthy(existing):
            return existing
        d = self.root / cfg.pod_uid
        (d / "ns").mkdir(parents=True, exist_ok=True)
        for name in ("hosts", "resolv.conf", "hostname"):
            (d / name).touch()
        (d / "shm").mkdir(exist_ok=True)
        sb = Sandbox(pod_uid=cfg.pod_uid, dir=str(d), hostname=pod_hostname(cfg.name, cfg.hostname),
                     host_network=cfg.host_network, host_ipc=cfg.host_ipc, host_pid=cfg.host_pid,
                     share_process_namespace=cfg.share_process_namespace, config=asdict(cfg))
        self.sandboxes[cfg.pod_uid] = sb
        self.dead.discard(cfg.pod_uid)
        self.created.append(cfg.pod_uid)
        return sb

    async def teardown(self, pod_uid: str) -> None:
        self.torn_down.append(pod_uid)
        self.sandboxes.pop(pod_uid, None)
        self.dead.discard(pod_uid)
        shutil.rmtree(self.root / pod_uid, ignore_errors=True)
