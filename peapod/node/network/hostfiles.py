"""A pod's /etc/hosts and /etc/resolv.conf, with kubelet's rules (pure renderers + an atomic write)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_NAMESERVERS = 3
MAX_SEARCHES = 32

_MANAGED_HEADER = "# Kubernetes-managed hosts file.\n"
_STANDARD = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "fe00::0\tip6-mcastprefix\n"
    "fe00::1\tip6-allnodes\n"
    "fe00::2\tip6-allrouters\n"
)


def render_hosts(
    *,
    pod_ips: Sequence[str],
    hostname: str,
    subdomain: str | None = None,
    namespace: str = "default",
    cluster_domain: str = "cluster.local",
    host_aliases: Sequence[Mapping[str, Any]] = (),
    host_network: bool = False,
    node_hosts: str = "",
) -> str:
    """hostNetwork pods get the node's hosts file; others a managed one naming the pod's IPs."""
    if host_network:
        out = node_hosts if node_hosts.endswith("\n") or not node_hosts else node_hosts + "\n"
    else:
        out = _MANAGED_HEADER + _STANDARD
        for ip in pod_ips:
            if subdomain:
                out += f"{ip}\t{hostname}.{subdomain}.{namespace}.svc.{cluster_domain}\t{hostname}\n"
            else:
                out += f"{ip}\t{hostname}\n"
    if host_aliases:
        out += "\n# Entries added by HostAliases.\n"
        for alias in host_aliases:
            names = alias.get("hostnames") or []
            if alias.get("ip") and names:
                out += alias["ip"] + "\t" + "\t".join(names) + "\n"
    return out


@dataclass
class ResolvConf:
    nameservers: list[str] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = []
        if self.searches:
            lines.append("search " + " ".join(self.searches))
        lines += [f"nameserver {ns}" for ns in self.nameservers]
        if self.options:
            lines.append("options " + " ".join(self.options))
        return "\n".join(lines) + "\n" if lines else ""


def parse_resolv_conf(text: str) -> ResolvConf:
    rc = ResolvConf()
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        key, *vals = line.split()
        if key == "nameserver" and vals:
            rc.nameservers.append(vals[0])
        elif key in ("search", "domain"):
            rc.searches = list(vals)  # the last search/domain line wins
        elif key == "options":
            rc.options.extend(vals)
    return rc


def _dedupe(items: Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for i in items:
        seen.setdefault(i, None)
    return list(seen)


def _merge_options(base: Sequence[str], extra: Sequence[Mapping[str, Any]]) -> list[str]:
    opts: dict[str, str | None] = {}
    for o in base:
        name, _, val = o.partition(":")
        opts[name] = val or None
    for o in extra:
        name = o.get("name")
        if name:
            opts[name] = o.get("value")
    return [f"{k}:{v}" if v is not None else k for k, v in opts.items()]


def render_resolv_conf(
    *,
    dns_policy: str = "ClusterFirst",
    node_resolv: str = "",
    cluster_dns: Sequence[str] = (),
    cluster_domain: str = "cluster.local",
    namespace: str = "default",
    dns_config: Mapping[str, Any] | None = None,
    host_network: bool = False,
) -> str:
    """kubelet's GetPodDNS: ClusterFirst (falls back to Default without cluster DNS, and for
    hostNetwork pods unless ClusterFirstWithHostNet), Default (the node's), None (dnsConfig only);
    then dnsConfig is merged in."""
    node = parse_resolv_conf(node_resolv)
    policy = dns_policy or "ClusterFirst"
    if policy == "ClusterFirst" and host_network:
        policy = "Default"
    if policy == "ClusterFirstWithHostNet":
        policy = "ClusterFirst"
    if policy == "ClusterFirst" and not cluster_dns:
        policy = "Default"
    if policy == "ClusterFirst":
        rc = ResolvConf(
            nameservers=list(cluster_dns),
            searches=[f"{namespace}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain,
                      *node.searches],
            options=["ndots:5"],
        )
    elif policy == "None":
        rc = ResolvConf()
    else:
        rc = node
    cfg = dns_config or {}
    rc.nameservers = _dedupe([*rc.nameservers, *(cfg.get("nameservers") or [])])[:MAX_NAMESERVERS]
    rc.searches = _dedupe([*rc.searches, *(cfg.get("searches") or [])])[:MAX_SEARCHES]
    rc.options = _merge_options(rc.options, cfg.get("options") or [])
    return rc.render()


def write_pod_file(path: str | os.PathLike[str], text: str, mode: int = 0o644) -> None:
    """Replace ``path``'s content. The file is bind-mounted into containers, so it must keep its
    inode: write in place (truncate + write) when it exists, else create it."""
    p = Path(path)
    data = text.encode()
    if p.exists():
        with open(p, "r+b") as f:
            f.write(data)
            f.truncate()
        return
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    os.replace(tmp, p)


def node_file(path: str) -> str:
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        return ""
