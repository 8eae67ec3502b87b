"""CNI conflist generation, chaining and result parsing against fake plugin executables."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from peapod.node.network.cni import (
    CniConfig,
    CniNetwork,
    build_conflist,
    parse_result,
    plugin_config,
    port_mappings_config,
)
from peapod.node.network.types import NetworkError, PortMapping

FAKE_PLUGIN = r'''#!{python}
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
kind = os.path.basename(sys.argv[0])
conf = json.load(sys.stdin)
cmd = os.environ["CNI_COMMAND"]
env = {{k: v for k, v in os.environ.items() if k.startswith("CNI_")}}
with open(os.path.join(here, "calls.jsonl"), "a") as f:
    f.write(json.dumps({{"plugin": kind, "env": env, "conf": conf}}) + "\n")
if os.path.exists(os.path.join(here, f"fail-{{kind}}-{{cmd}}")):
    print(json.dumps({{"cniVersion": "1.0.0", "code": 11, "msg": "boom", "details": kind}}))
    sys.exit(1)
if cmd != "ADD":
    sys.exit(0)
if kind == "loopback":
    print(json.dumps({{"cniVersion": "1.0.0", "interfaces": [{{"name": "lo", "sandbox": env["CNI_NETNS"]}}],
                      "ips": [{{"address": "127.0.0.1/8", "interface": 0}}]}}))
elif kind == "bridge":
    print(json.dumps({{"cniVersion": "1.0.0",
        "interfaces": [{{"name": conf["bridge"], "mac": "aa"}}, {{"name": "veth1", "mac": "bb"}},
                       {{"name": env["CNI_IFNAME"], "mac": "cc", "sandbox": env["CNI_NETNS"]}}],
        "ips": [{{"address": "fd00::5/64", "interface": 2}},
                {{"address": "10.77.0.5/16", "gateway": "10.77.0.1", "interface": 2}}],
        "routes": [], "dns": {{}}}}))
else:
    print(json.dumps(conf["prevResult"]))
'''


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    for name in ("bridge", "portmap", "loopback"):
        p = d / name
        p.write_text(FAKE_PLUGIN.format(python=sys.executable))
        p.chmod(0o755)
    return d


def calls(d: Path) -> list[dict]:
    p = d / "calls.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


def make(tmp_path: Path, plugins: Path, **kw: object) -> CniNetwork:
    return CniNetwork(CniConfig(data_dir=str(tmp_path / "cni"), plugin_dirs=[str(plugins)], **kw))  # type: ignore[arg-type]


def test_conflist() -> None:
    c = build_conflist(CniConfig(data_dir="/d", bridge="br9", subnet="10.9.0.0/16"))
    assert c["cniVersion"] == "1.0.0" and c["name"] == "peapod"
    bridge, portmap = c["plugins"]
    assert bridge == {
        "type": "bridge", "bridge": "br9", "isGateway": True, "ipMasq": False, "hairpinMode": True,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.9.0.0/16"}]],
                 "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/d/networks"},
    }
    assert portmap["type"] == "portmap" and portmap["capabilities"] == {"portMappings": True}
    c = build_conflist(CniConfig(data_dir="/d", portmap=False, default_route=False, mtu=1400, ip_masq=True))
    assert len(c["plugins"]) == 1 and c["plugins"][0]["ipam"]["routes"] == []
    assert c["plugins"][0]["mtu"] == 1400 and c["plugins"][0]["ipMasq"] is True
    with pytest.raises(ValueError):
        build_conflist(CniConfig(data_dir="/d", subnet="not-a-cidr"))


def test_plugin_config_injects_only_asked_capabilities() -> None:
    conflist = {"cniVersion": "1.0.0", "name": "n", "plugins": []}
    rc = {"portMappings": [{"hostPort": 1}], "bandwidth": {}}
    a = plugin_config(conflist, {"type": "bridge"}, prev_result=None, runtime_config=rc)
    assert a == {"type": "bridge", "cniVersion": "1.0.0", "name": "n"}
    b = plugin_config(conflist, {"type": "portmap", "capabilities": {"portMappings": True}},
                      prev_result={"ips": []}, runtime_config=rc)
    assert b["runtimeConfig"] == {"portMappings": [{"hostPort": 1}]} and b["prevResult"] == {"ips": []}


def test_port_mappings_config() -> None:
    assert port_mappings_config([PortMapping(8080, 80, "TCP"), PortMapping(53, 53, "udp", "127.0.0.1")]) == [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 53, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"},
    ]


def test_parse_result_picks_sandbox_interface_ipv4_first() -> None:
    result = {
        "interfaces": [{"name": "br"}, {"name": "eth0", "sandbox": "/ns", "mac": "cc"}],
        "ips": [{"address": "fd00::5/64", "interface": 1}, {"address": "10.0.0.5/24", "gateway": "10.0.0.1",
                                                             "interface": 1},
                {"address": "192.168.0.1/24", "interface": 0}],
    }
    st = parse_result(result)
    assert st.ips == ["10.0.0.5", "fd00::5"] and st.gateway == "10.0.0.1" and st.mac == "cc"
    assert st.cidrs == ["10.0.0.5/24", "fd00::5/64"]
    assert parse_result({"ips": [{"address": "10.1.1.1/8"}]}).ips == ["10.1.1.1"]  # no interfaces list


async def test_setup_chains_prev_result_and_records(tmp_path: Path, plugins: Path) -> None:
    net = make(tmp_path, plugins)
    st = await net.setup("uid-1", "/run/ns1", [PortMapping(8080, 80)], pod_name="p", pod_namespace="ns")
    assert st.ips == ["10.77.0.5", "fd00::5"] and st.gateway == "10.77.0.1" and st.interface == "eth0"
    c = calls(plugins)
    assert [x["plugin"] for x in c] == ["loopback", "bridge", "portmap"]
    lo, br, pm = c
    assert lo["env"]["CNI_IFNAME"] == "lo" and br["env"]["CNI_IFNAME"] == "eth0"
    for x in c:
        assert x["env"]["CNI_COMMAND"] == "ADD" and x["env"]["CNI_CONTAINERID"] == "uid-1"
        assert x["env"]["CNI_NETNS"] == "/run/ns1" and x["env"]["CNI_PATH"] == str(plugins)
        assert "K8S_POD_NAME=p" in x["env"]["CNI_ARGS"] and "K8S_POD_NAMESPACE=ns" in x["env"]["CNI_ARGS"]
    assert "prevResult" not in br["conf"] and "runtimeConfig" not in br["conf"]
    assert pm["conf"]["prevResult"]["ips"][1]["address"] == "10.77.0.5/16"
    assert pm["conf"]["runtimeConfig"] == {"portMappings": [{"hostPort": 8080, "containerPort": 80,
                                                            "protocol": "tcp"}]}
    # a new object over the same data dir knows the pod (agent restart)
    again = make(tmp_path, plugins)
    assert again.status("uid-1") == st and again.recorded_pods() == ["uid-1"]


async def test_teardown_reverse_order_with_cached_result(tmp_path: Path, plugins: Path) -> None:
    net = make(tmp_path, plugins)
    await net.setup("u", "/run/ns1", [PortMapping(1, 2)])
    (plugins / "calls.jsonl").unlink()
    await make(tmp_path, plugins).teardown("u", "/run/ns1")
    c = calls(plugins)
    assert [x["plugin"] for x in c] == ["portmap", "bridge"]
    assert all(x["env"]["CNI_COMMAND"] == "DEL" for x in c)
    assert c[0]["conf"]["prevResult"]["ips"][1]["address"] == "10.77.0.5/16"
    assert c[0]["conf"]["runtimeConfig"]["portMappings"][0]["hostPort"] == 1
    # /run/ns1 is not a mounted netns here, so plugins are told it's gone
    assert c[0]["env"]["CNI_NETNS"] == ""
    assert net.status("u") is None
    await net.teardown("u", None)  # idempotent: DEL again without a record


async def test_check(tmp_path: Path, plugins: Path) -> None:
    net = make(tmp_path, plugins)
    with pytest.raises(NetworkError):
        await net.check("u", "/ns")
    await net.setup("u", "/ns")
    await net.check("u", "/ns")
    c = [x for x in calls(plugins) if x["env"]["CNI_COMMAND"] == "CHECK"]
    assert [x["plugin"] for x in c] == ["bridge", "portmap"] and all("prevResult" in x["conf"] for x in c)


async def test_failed_add_is_rolled_back_and_reports_cni_error(tmp_path: Path, plugins: Path) -> None:
    (plugins / "fail-portmap-ADD").touch()
    net = make(tmp_path, plugins)
    with pytest.raises(NetworkError) as ei:
        await net.setup("u", "/ns", [PortMapping(1, 2)])
    assert ei.value.code == 11 and "boom" in str(ei.value)
    cmds = [(x["plugin"], x["env"]["CNI_COMMAND"]) for x in calls(plugins)]
    assert ("bridge", "DEL") in cmds and ("portmap", "DEL") in cmds
    assert net.status("u") is None


async def test_missing_plugin(tmp_path: Path) -> None:
    net = CniNetwork(CniConfig(data_dir=str(tmp_path / "cni"), plugin_dirs=[str(tmp_path / "empty")]))
    with pytest.raises(NetworkError, match="not found"):
        await net.setup("u", "/ns")


async def test_plugin_crash_without_json(tmp_path: Path, plugins: Path) -> None:
    (plugins / "bridge").write_text("#!/bin/sh\necho 'panic' >&2\nexit 2\n")
    os.chmod(plugins / "bridge", 0o755)
    with pytest.raises(NetworkError, match="panic"):
        await make(tmp_path, plugins).setup("u", "/ns")
