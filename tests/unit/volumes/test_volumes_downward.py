"""Downward API values: kubelet's formatting of labels/annotations, field paths, resources."""

from __future__ import annotations

import re

import pytest

from peapod.node.volumes.downward import field_value, format_map, go_quote, resource_field_value
from peapod.node.volumes.types import DownwardValues

POD = {
    "metadata": {"name": "web", "namespace": "prod", "uid": "u-1",
                 "labels": {"b": "2", "a": "1"},
                 "annotations": {"note": 'say "hi"\nbye', "z": "é\u200b\x01"}},
    "spec": {"nodeName": "", "serviceAccountName": "robot",
             "containers": [{"name": "c", "resources": {
                 "limits": {"cpu": "250m", "memory": "64Mi"},
                 "requests": {"cpu": "100m", "memory": "32Mi"}}},
                 {"name": "nolimits"}]},
    "status": {"podIP": "10.0.0.5"},
}
VALUES = DownwardValues(node_name="node-1", host_ip="192.168.1.2", host_ips=["192.168.1.2", "fd00::2"],
                        node_allocatable={"cpu": "2", "memory": "4Gi", "ephemeral-storage": "10Gi"})


def exact(text: str) -> str:
    return "^" + re.escape(text) + "$"



def test_format_map_sorted_go_quoted() -> None:
    assert format_map({"b": "2", "a": "1"}) == 'a="1"\nb="2"'
    assert format_map({}) == ""


def test_go_quote_escapes() -> None:
    assert go_quote('say "hi"\nbye') == '"say \\"hi\\"\\nbye"'
    assert go_quote("é") == '"é"'
    assert go_quote("\x01\x7f") == '"\\x01\\x7f"'
    assert go_quote("\u200b") == '"\\u200b"'  # zero width space is not printable in Go
    assert go_quote("\\\t") == '"\\\\\\t"'


@pytest.mark.parametrize(("path", "want"), [
    ("metadata.name", "web"),
    ("metadata.namespace", "prod"),
    ("metadata.uid", "u-1"),
    ("metadata.labels", 'a="1"\nb="2"'),
    ("metadata.annotations", 'note="say \\"hi\\"\\nbye"\nz="é\\u200b\\x01"'),
    ("metadata.labels['a']", "1"),
    ("metadata.annotations['missing']", ""),
    ("spec.nodeName", "node-1"),
    ("spec.serviceAccountName", "robot"),
    ("status.podIP", "10.0.0.5"),
    ("status.podIPs", "10.0.0.5"),
    ("status.hostIP", "192.168.1.2"),
    ("status.hostIPs", "192.168.1.2,fd00::2"),
])
def test_field_paths(path: str, want: str) -> None:
    assert field_value(POD, path, VALUES) == want


def test_unsupported_field_path() -> None:
    with pytest.raises(ValueError, match=exact("unsupported fieldPath: spec.hostname")):
        field_value(POD, "spec.hostname", VALUES)
    with pytest.raises(ValueError, match="does not support subscript"):
        field_value(POD, "metadata.name['x']", VALUES)


@pytest.mark.parametrize(("container", "resource", "divisor", "want"), [
    ("c", "limits.cpu", None, "1"),          # ceil(0.25 cores)
    ("c", "limits.cpu", "1m", "250"),
    ("c", "requests.cpu", "1m", "100"),
    ("c", "limits.memory", None, "67108864"),
    ("c", "limits.memory", "1Mi", "64"),
    ("c", "requests.memory", "1Mi", "32"),
    ("c", "limits.memory", "1G", "1"),        # ceil
    ("nolimits", "limits.cpu", None, "2"),    # node allocatable
    ("nolimits", "limits.memory", "1Gi", "4"),
    ("nolimits", "limits.ephemeral-storage", "1Gi", "10"),
    ("nolimits", "requests.cpu", None, "0"),
    ("nolimits", "requests.memory", None, "0"),
])
def test_resource_field_ref(container: str, resource: str, divisor: str | None, want: str) -> None:
    sel = {"containerName": container, "resource": resource}
    if divisor:
        sel["divisor"] = divisor
    assert resource_field_value(POD, sel, VALUES) == want


def test_resource_errors() -> None:
    with pytest.raises(ValueError, match=exact("container ghost not found")):
        resource_field_value(POD, {"containerName": "ghost", "resource": "limits.cpu"}, VALUES)
    with pytest.raises(ValueError, match=exact("unsupported container resource : limits.gpu")):
        resource_field_value(POD, {"containerName": "c", "resource": "limits.gpu"}, VALUES)
