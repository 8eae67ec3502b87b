"""Downward API values with kubelet's formatting: fieldRef paths and resourceFieldRef with divisors."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from peapod.api.quantity import parse_quantity

from .types import DownwardValues

_SUBSCRIPT = re.compile(r"^(.+)\['(.*)'\]$")
_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
               "\\": "\\\\", '"': '\\"'}


def go_quote(s: str) -> str:
    """Go's strconv.Quote (what ``%q`` prints): printable runes kept, others escaped."""
    out = ['"']
    for ch in s:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80 or 0xDC80 <= ord(ch) <= 0xDCFF:  # ASCII controls, undecodable bytes
            out.append(f"\\x{ord(ch) & 0xFF:02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def format_map(m: Mapping[str, str]) -> str:
    """kubelet's fieldpath.FormatMap: sorted ``key="value"`` lines, no trailing newline."""
    return "\n".join(f"{k}={go_quote(m[k])}" for k in sorted(m))


def field_value(pod: Mapping[str, Any], field_path: str, values: DownwardValues | None = None) -> str:
    """The value of a fieldRef; ValueError("unsupported fieldPath: ...") like kubelet."""
    values = values or DownwardValues()
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    m = _SUBSCRIPT.match(field_path)
    if m:
        path, key = m.group(1), m.group(2)
        if path == "metadata.annotations":
            return (meta.get("annotations") or {}).get(key, "")
        if path == "metadata.labels":
            return (meta.get("labels") or {}).get(key, "")
        raise ValueError(f'fieldPath "{field_path}" does not support subscript')
    if field_path == "metadata.annotations":
        return format_map(meta.get("annotations") or {})
    if field_path == "metadata.labels":
        return format_map(meta.get("labels") or {})
    if field_path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        return str(meta.get(field_path.split(".", 1)[1]) or "")
    if field_path == "spec.nodeName":
        return values.node_name or spec.get("nodeName", "")
    if field_path == "spec.serviceAccountName":
        return spec.get("serviceAccountName") or ""
    if field_path == "status.hostIP":
        return values.host_ip or status.get("hostIP", "")
    if field_path == "status.hostIPs":
        ips = list(values.host_ips) or [i.get("ip", "") for i in status.get("hostIPs") or []]
        single = values.host_ip or status.get("hostIP", "")
        return ",".join(ips or ([single] if single else []))
    if field_path == "status.podIP":
        return values.pod_ip or status.get("podIP", "")
    if field_path == "status.podIPs":
        ips = list(values.pod_ips) or [i.get("ip", "") for i in status.get("podIPs") or []]
        single = values.pod_ip or status.get("podIP", "")
        return ",".join(ips or ([single] if single else []))
    raise ValueError(f"unsupported fieldPath: {field_path}")


def find_container(pod: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    spec = pod.get("spec") or {}
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            if c.get("name") == name:
                return c
    raise ValueError(f"container {name} not found")


_NODE_DEFAULTED = ("cpu", "memory", "ephemeral-storage")


def _milli(q: Fraction) -> int:
    return math.ceil(q * 1000)


def resource_value(selector: Mapping[str, Any], container: Mapping[str, Any],
                   node_allocatable: Mapping[str, str] | None = None) -> str:
    """kubelet's ExtractContainerResourceValue after merging unset limits with node allocatable."""
    resource = selector.get("resource", "")
    divisor = parse_quantity(selector.get("divisor") or "0")
    if divisor == 0:
        divisor = Fraction(1)
    res = container.get("resources") or {}
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or not name:
        raise ValueError(f"unsupported container resource : {resource}")
    if name not in _NODE_DEFAULTED and not name.startswith("hugepages-"):
        raise ValueError(f"unsupported container resource : {resource}")
    raw = (res.get(kind) or {}).get(name)
    if raw is None and kind == "limits" and name in _NODE_DEFAULTED:
        raw = (node_allocatable or {}).get(name)
    amount = parse_quantity(raw) if raw is not None else Fraction(0)
    if name == "cpu":
        return str(math.ceil(Fraction(_milli(amount), _milli(divisor))))
    return str(math.ceil(Fraction(math.ceil(amount), math.ceil(divisor))))


def resource_field_value(pod: Mapping[str, Any], selector: Mapping[str, Any],
                         values: DownwardValues | None = None, *, default_container: str = "") -> str:
    """resourceFieldRef of a volume item (``containerName`` required there) or of an env var."""
    name = selector.get("containerName") or default_container
    container = find_container(pod, name)
    return resource_value(selector, container, (values or DownwardValues()).node_allocatable)
