"""Cross-node networking, the firewall side: two chains of peapod's own, jumped to from the top of
FORWARD (filter) and POSTROUTING (nat).

* ``PEAPOD-FORWARD`` accepts traffic from and to the cluster's pod addresses, so pod traffic routed
  between the pod bridge and the node's uplink/vxlan device is forwarded even where the FORWARD
  policy is DROP (as Docker sets it).
* ``PEAPOD-POSTROUTING`` (only when masquerading): traffic from this node's pods to the cluster
  CIDR RETURNs (keeps its source IP), everything else from the pods is MASQUERADEd (flannel's rules).

Uses the ``iptables`` command (iptables-nft or legacy, whichever the host has, so its rules sit with
the host's other ones). A chain is rewritten whole (``iptables-restore --noflush``) when its rules
differ from the desired ones, compared with ``iptables -S`` output.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Sequence

from peapod.node.network.crossnode_plan import FORWARD_CHAIN, NAT_CHAIN

_CHAINS = (("filter", FORWARD_CHAIN, "FORWARD"), ("nat", NAT_CHAIN, "POSTROUTING"))


class IptablesError(Exception):
    pass


class IptablesFirewall:
    def __init__(self, *, iptables: str | None = None, iptables_restore: str | None = None) -> None:
        self.iptables = iptables or shutil.which("iptables") or "/usr/sbin/iptables"
        self.restore = iptables_restore or shutil.which("iptables-restore") or "/usr/sbin/iptables-restore"

    async def _run(self, *args: str, stdin: str | None = None, check: bool = True) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        if check and proc.returncode != 0:
            raise IptablesError(f"{' '.join(args)}: {(err or out).decode(errors='replace').strip()}")
        return proc.returncode or 0, out.decode()

    async def rules(self, table: str, chain: str) -> list[str] | None:
        """The rule specs of ``chain`` as ``iptables -S`` prints them, without ``-A CHAIN``; None if
        the chain does not exist."""
        code, out = await self._run(self.iptables, "-w", "-t", table, "-S", chain, check=False)
        if code != 0:
            return None
        prefix = f"-A {chain} "
        return [ln[len(prefix):] for ln in out.splitlines() if ln.startswith(prefix)]

    async def has_jump(self, table: str, chain: str, parent: str) -> bool:
        code, _ = await self._run(self.iptables, "-w", "-t", table, "-C", parent, "-j", chain, check=False)
        return code == 0

    async def ensure(self, forward_rules: Sequence[str], nat_rules: Sequence[str]) -> bool:
        """Make both chains hold exactly the given rules, jumped to first from their parent chain
        (an empty rule list removes the chain). Returns True if anything changed."""
        changed = False
        for (table, chain, parent), want in zip(_CHAINS, (forward_rules, nat_rules), strict=True):
            if not want:
                changed |= await self.remove_chain(table, chain, parent)
                continue
            if await self.rules(table, chain) != list(want):
                lines = [f"*{table}", f":{chain} - [0:0]", *(f"-A {chain} {r}" for r in want), "COMMIT", ""]
                await self._run(self.restore, "-w", "--noflush", stdin="\n".join(lines))
                changed = True
            if not await self.has_jump(table, chain, parent):
                await self._run(self.iptables, "-w", "-t", table, "-I", parent, "1", "-j", chain)
                changed = True
        return changed

    async def remove_chain(self, table: str, chain: str, parent: str) -> bool:
        changed = False
        while await self.has_jump(table, chain, parent):
            await self._run(self.iptables, "-w", "-t", table, "-D", parent, "-j", chain)
            changed = True
        if await self.rules(table, chain) is not None:
            await self._run(self.iptables, "-w", "-t", table, "-F", chain)
            await self._run(self.iptables, "-w", "-t", table, "-X", chain)
            changed = True
        return changed

    async def remove_all(self) -> None:
        for table, chain, parent in _CHAINS:
            await self.remove_chain(table, chain, parent)
