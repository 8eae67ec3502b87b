"""Pod networking through CNI plugins, invoked per the CNI spec (like libcni).

The peapod network is a conflist: ``bridge`` (+ ``host-local`` IPAM over the node's pod CIDR) then
``portmap`` for hostPorts (capability ``portMappings``). ``loopback`` is run on its own for ``lo``.
Each plugin gets CNI_COMMAND/CNI_CONTAINERID/CNI_NETNS/CNI_IFNAME/CNI_PATH/CNI_ARGS in its
environment and its config on stdin; in a chain, each plugin's result is the next one's
``prevResult``. The ADD result is recorded per pod on disk; DEL and CHECK feed it back as
``prevResult``, so teardown works after an agent restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peapod.node.network.types import NetworkError, NetworkStatus, PortMapping

DEFAULT_POD_CIDR = "10.77.0.0/16"  # not docker's, podman's, flannel's, calico's or k3s's default
DEFAULT_PLUGIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class CniConfig:
    data_dir: str  # results/ and host-local's networks/ live here
    bridge: str = "peapod0"
    subnet: str = DEFAULT_POD_CIDR
    network_name: str = "peapod"
    cni_version: str = "1.0.0"
    plugin_dirs: Sequence[str] = DEFAULT_PLUGIN_DIRS
    ip_masq: bool = False  # never NAT pods to outside networks unless asked
    hairpin: bool = True
    is_gateway: bool = True
    default_route: bool = True  # pods route 0.0.0.0/0 via the bridge; tests turn it off
    mtu: int | None = None
    portmap: bool = True
    ifname: str = "eth0"
    extra_plugins: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    # Multi-node: the whole cluster's pod range (``subnet`` is this node's share of it). Pod traffic
    # to it must keep its source IP, so the bridge plugin's per-pod masquerade (which NATs all but
    # the node's own subnet) stays off; CrossNodeNetwork(masquerade=True) NATs only traffic leaving
    # the cluster CIDR. Pods without a default route get a route to it via the bridge.
    cluster_cidr: str | None = None

    @property
    def ipam_dir(self) -> str:
        return os.path.join(self.data_dir, "networks")

    @property
    def results_dir(self) -> str:
        return os.path.join(self.data_dir, "results")


def build_conflist(cfg: CniConfig) -> dict[str, Any]:
    subnet = ipaddress.ip_network(cfg.subnet)  # validate
    routes = [{"dst": "0.0.0.0/0"}] if cfg.default_route else []
    ip_masq = cfg.ip_masq
    if cfg.cluster_cidr:
        cluster = ipaddress.ip_network(cfg.cluster_cidr)
        if subnet.version != cluster.version or not subnet.subnet_of(cluster):  # type: ignore[arg-type]
            raise ValueError(f"pod subnet {cfg.subnet} is not inside the cluster CIDR {cfg.cluster_cidr}")
        ip_masq = False
        if not cfg.default_route:
            routes = [{"dst": str(cluster)}]
    bridge: dict[str, Any] = {
        "type": "bridge",
        "bridge": cfg.bridge,
        "isGateway": cfg.is_gateway,
        "ipMasq": ip_masq,
        "hairpinMode": cfg.hairpin,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": cfg.subnet}]],
            "routes": routes,
            "dataDir": cfg.ipam_dir,
        },
    }
    if cfg.mtu:
        bridge["mtu"] = cfg.mtu
    plugins: list[dict[str, Any]] = [bridge]
    if cfg.portmap:
        plugins.append({"type": "portmap", "capabilities": {"portMappings": True}, "snat": True})
    plugins.extend(dict(p) for p in cfg.extra_plugins)
    return {"cniVersion": cfg.cni_version, "name": cfg.network_name, "plugins": plugins}


def loopback_config(cfg: CniConfig) -> dict[str, Any]:
    return {"cniVersion": cfg.cni_version, "name": "cni-loopback", "type": "loopback"}


def plugin_config(
    conflist: Mapping[str, Any], plugin: Mapping[str, Any], *, prev_result: Mapping[str, Any] | None,
    runtime_config: Mapping[str, Any],
) -> dict[str, Any]:
    """One plugin's stdin config: its conf plus cniVersion/name, prevResult and the runtimeConfig
    keys its ``capabilities`` ask for (libcni's injectRuntimeConfig)."""
    conf = dict(plugin)
    conf["cniVersion"] = conflist["cniVersion"]
    conf["name"] = conflist["name"]
    caps = {k for k, v in (plugin.get("capabilities") or {}).items() if v}
    rc = {k: v for k, v in runtime_config.items() if k in caps}
    if rc:
        conf["runtimeConfig"] = rc
    if prev_result is not None:
        conf["prevResult"] = prev_result
    return conf


def port_mappings_config(mappings: Sequence[PortMapping]) -> list[dict[str, Any]]:
    out = []
    for m in mappings:
        e: dict[str, Any] = {"hostPort": m.host_port, "containerPort": m.container_port,
                             "protocol": m.protocol.lower()}
        if m.host_ip:
            e["hostIP"] = m.host_ip
        out.append(e)
    return out


def parse_result(result: Mapping[str, Any], ifname: str = "eth0") -> NetworkStatus:
    """NetworkStatus from a CNI 0.4/1.0 result: the IPs on the sandbox interface ``ifname``."""
    interfaces = result.get("interfaces") or []
    wanted = {i for i, itf in enumerate(interfaces) if itf.get("name") == ifname and itf.get("sandbox")}
    mac = next((interfaces[i].get("mac") for i in sorted(wanted)), None)
    cidrs: list[str] = []
    gateway = None
    for ip in result.get("ips") or []:
        idx = ip.get("interface")
        if wanted and idx is not None and idx not in wanted:
            continue
        cidrs.append(ip["address"])
        if gateway is None and ip.get("gateway"):
            gateway = ip["gateway"]
    cidrs.sort(key=lambda c: ipaddress.ip_interface(c).version)
    ips = [str(ipaddress.ip_interface(c).ip) for c in cidrs]
    return NetworkStatus(ips=ips, gateway=gateway, interface=ifname, mac=mac, cidrs=cidrs)


class CniInvoker:
    """Finds and runs one plugin binary (the CNI spec's execution protocol)."""

    def __init__(self, plugin_dirs: Sequence[str]) -> None:
        self.plugin_dirs = list(plugin_dirs)

    def find(self, plugin_type: str) -> str:
        for d in self.plugin_dirs:
            p = os.path.join(d, plugin_type)
            if os.access(p, os.X_OK):
                return p
        raise NetworkError(f"CNI plugin {plugin_type!r} not found in {self.plugin_dirs}")

    async def invoke(
        self, command: str, config: Mapping[str, Any], *, container_id: str, netns: str, ifname: str,
        args: Mapping[str, str] | None = None,
    ) -> dict[str, Any] | None:
        binary = self.find(config["type"])
        env = {
            "PATH": _PATH,
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns,
            "CNI_IFNAME": ifname,
            "CNI_PATH": os.pathsep.join(self.plugin_dirs),
        }
        if args:
            env["CNI_ARGS"] = ";".join(f"{k}={v}" for k, v in args.items())
        proc = await asyncio.create_subprocess_exec(
            binary, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env,
        )
        out, err = await proc.communicate(json.dumps(config).encode())
        if proc.returncode != 0:
            try:
                e = json.loads(out)
                raise NetworkError(
                    f"CNI {config['type']} {command}: {e.get('msg', '')}"
                    + (f" ({e['details']})" if e.get("details") else ""),
                    code=e.get("code"), details=e.get("details", ""),
                )
            except (json.JSONDecodeError, AttributeError):
                raise NetworkError(
                    f"CNI {config['type']} {command} failed ({proc.returncode}): "
                    f"{(out + err).decode(errors='replace').strip()}"
                ) from None
        if command != "ADD":
            return None
        try:
            return json.loads(out)
        except json.JSONDecodeError as e:
            raise NetworkError(f"CNI {config['type']} ADD: bad result {out[:200]!r}") from e


class CniNetwork:
    """PodNetwork on CNI plugins: pod eth0 on a node bridge, lo up, hostPorts through portmap."""

    def __init__(self, cfg: CniConfig, *, invoker: CniInvoker | None = None) -> None:
        self.cfg = cfg
        self.invoker = invoker or CniInvoker(cfg.plugin_dirs)
        self.conflist = build_conflist(cfg)
        Path(cfg.results_dir).mkdir(parents=True, exist_ok=True)
        Path(cfg.ipam_dir).mkdir(parents=True, exist_ok=True)

    def _result_path(self, pod_uid: str) -> Path:
        if not pod_uid or "/" in pod_uid:
            raise ValueError(f"invalid pod uid {pod_uid!r}")
        return Path(self.cfg.results_dir) / f"{self.cfg.network_name}-{pod_uid}.json"

    def _load(self, pod_uid: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._result_path(pod_uid).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _cni_args(self, pod_uid: str, pod_name: str, pod_namespace: str) -> dict[str, str]:
        args = {"IgnoreUnknown": "1"}
        if pod_namespace:
            args["K8S_POD_NAMESPACE"] = pod_namespace
        if pod_name:
            args["K8S_POD_NAME"] = pod_name
        args["K8S_POD_INFRA_CONTAINER_ID"] = pod_uid
        args["K8S_POD_UID"] = pod_uid
        return args

    async def setup(
        self, pod_uid: str, netns_path: str, port_mappings: Sequence[PortMapping] = (), *,
        pod_name: str = "", pod_namespace: str = "",
    ) -> NetworkStatus:
        args = self._cni_args(pod_uid, pod_name, pod_namespace)
        runtime_config = {"portMappings": port_mappings_config(port_mappings)}
        await self.invoker.invoke("ADD", loopback_config(self.cfg), container_id=pod_uid, netns=netns_path,
                                  ifname="lo", args=args)
        prev: dict[str, Any] | None = None
        done: list[Mapping[str, Any]] = []
        try:
            for plugin in self.conflist["plugins"]:
                conf = plugin_config(self.conflist, plugin, prev_result=prev, runtime_config=runtime_config)
                prev = await self.invoker.invoke("ADD", conf, container_id=pod_uid, netns=netns_path,
                                                 ifname=self.cfg.ifname, args=args)
                done.append(plugin)
        except BaseException:
            # undo what was added (libcni leaves this to the caller; kubelet calls DEL)
            with contextlib.suppress(Exception):
                await self._delete(pod_uid, netns_path, prev, runtime_config, args)
            raise
        assert prev is not None
        record = {
            "kind": "cniCacheV1", "containerId": pod_uid, "ifName": self.cfg.ifname,
            "netns": netns_path, "config": self.conflist, "runtimeConfig": runtime_config,
            "cniArgs": args, "result": prev,
        }
        p = self._result_path(pod_uid)
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, p)
        return parse_result(prev, self.cfg.ifname)

    async def _delete(
        self, pod_uid: str, netns_path: str, prev: Mapping[str, Any] | None,
        runtime_config: Mapping[str, Any], args: Mapping[str, str], conflist: Mapping[str, Any] | None = None,
    ) -> None:
        conflist = conflist or self.conflist
        errors: list[NetworkError] = []
        for plugin in reversed(conflist["plugins"]):
            conf = plugin_config(conflist, plugin, prev_result=prev, runtime_config=runtime_config)
            try:
                await self.invoker.invoke("DEL", conf, container_id=pod_uid, netns=netns_path,
                                          ifname=self.cfg.ifname, args=args)
            except NetworkError as e:
                errors.append(e)
        if errors:
            raise errors[0]

    async def teardown(self, pod_uid: str, netns_path: str | None) -> None:
        rec = self._load(pod_uid) or {}
        args = rec.get("cniArgs") or self._cni_args(pod_uid, "", "")
        ns = netns_path or ""
        if ns and not _is_netns(ns):
            ns = ""  # the namespace is gone: plugins still release IPs and host-side state
        await self._delete(pod_uid, ns, rec.get("result"), rec.get("runtimeConfig") or {}, args,
                           conflist=rec.get("config"))
        with contextlib.suppress(FileNotFoundError):
            self._result_path(pod_uid).unlink()

    async def check(self, pod_uid: str, netns_path: str) -> None:
        rec = self._load(pod_uid)
        if rec is None:
            raise NetworkError(f"no network recorded for pod {pod_uid}")
        conflist = rec.get("config") or self.conflist
        for plugin in conflist["plugins"]:
            conf = plugin_config(conflist, plugin, prev_result=rec["result"],
                                 runtime_config=rec.get("runtimeConfig") or {})
            await self.invoker.invoke("CHECK", conf, container_id=pod_uid, netns=netns_path,
                                      ifname=self.cfg.ifname, args=rec.get("cniArgs"))

    def status(self, pod_uid: str) -> NetworkStatus | None:
        rec = self._load(pod_uid)
        return parse_result(rec["result"], rec.get("ifName", self.cfg.ifname)) if rec else None

    def recorded_pods(self) -> list[str]:
        prefix = self.cfg.network_name + "-"
        return sorted(p.stem[len(prefix):] for p in Path(self.cfg.results_dir).glob(f"{prefix}*.json"))

    def remove_bridge(self) -> None:
        """Delete the node bridge (uninstall / test teardown). Pods must be torn down first."""
        ip = shutil.which("ip") or "/usr/sbin/ip"
        import subprocess

        subprocess.run([ip, "link", "del", self.cfg.bridge], capture_output=True, check=False)


def _is_netns(path: str) -> bool:
    """True if ``path`` is a bound network namespace (an nsfs file), not a leftover empty file."""
    try:
        return os.stat(path).st_dev != os.stat(os.path.dirname(path) or "/").st_dev
    except FileNotFoundError:
        return False
