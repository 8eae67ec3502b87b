"""One test "host" for the cross-node network tests; run under ``ip netns exec HOST``, as an agent would.

It sets up one pod (a CNI bridge network on the real plugins into the given pod netns) and runs the
real CrossNodeNetwork (netlink + iptables) fed by a fake Node API:
  stdin  JSON lines: {"nodes": [...]} replaces the Node set (watch events follow); {"stop": true}
  stdout JSON lines: {"event": "pod", "ip": ...}, {"event": "patch", "name": ..., "patch": ...},
                     {"event": "stopped", "error": null | str}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from peapod.node.network.cni import CniConfig, CniNetwork
from peapod.node.network.crossnode import CrossNodeNetwork
from peapod.node.network.crossnode_fakes import FakeNodeClient


def emit(**event: Any) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


class ReportingClient(FakeNodeClient):
    async def patch(self, info: Any, name: str, patch: Any, namespace: str | None = None, **kw: Any) -> Any:
        out = await super().patch(info, name, patch, namespace, **kw)
        emit(event="patch", name=name, patch=patch)
        return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--node-name", required=True)
    ap.add_argument("--node-ip", required=True)
    ap.add_argument("--mode", required=True)
    ap.add_argument("--cluster-cidr", required=True)
    ap.add_argument("--pod-cidr", required=True)
    ap.add_argument("--pod-netns", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--mtu", type=int, default=0)
    ap.add_argument("--masquerade", action="store_true")
    a = ap.parse_args()

    cni = CniNetwork(CniConfig(data_dir=a.data_dir, subnet=a.pod_cidr, cluster_cidr=a.cluster_cidr,
                               mtu=a.mtu or None, portmap=False))
    status = await cni.setup("pod0", a.pod_netns, pod_name="pod0", pod_namespace="default")
    emit(event="pod", ip=status.ips[0])
    client = ReportingClient()
    net = CrossNodeNetwork(client, node_name=a.node_name, node_ip=a.node_ip, mode=a.mode,  # type: ignore[arg-type]
                           cluster_cidr=a.cluster_cidr, masquerade=a.masquerade, resync_period=2.0)
    await net.start()
    error = None
    loop = asyncio.get_running_loop()
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            msg = json.loads(line)
            if msg.get("stop"):
                break
            if "nodes" in msg:
                client.set_nodes(msg["nodes"])
    finally:
        try:
            await net.stop()
        except Exception as e:
            error = str(e)
        await cni.teardown("pod0", a.pod_netns)
        cni.remove_bridge()
        emit(event="stopped", error=error)


if __name__ == "__main__":
    asyncio.run(main())
