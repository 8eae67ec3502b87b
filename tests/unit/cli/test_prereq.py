"""The prerequisite checks of `peapod up` on a fake machine: each missing piece is one line with its fix."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

import pytest

from peapod.cli.prereq import Host, _port_free, missing_prerequisites, port_problem

FULL = {
    "/usr/bin/runc", "/usr/bin/conmon", "/usr/bin/catatonit", "/usr/bin/unshare", "/usr/bin/nsenter",
    "/usr/sbin/ip", "/usr/lib/cni/bridge", "/usr/lib/cni/host-local", "/usr/lib/cni/loopback",
    "/usr/lib/cni/portmap", "/sys/fs/cgroup/cgroup.controllers",
}


@dataclass
class FakeMachine:
    uid: int = 0
    files: set[str] = field(default_factory=lambda: set(FULL))
    dirs: set[str] = field(default_factory=lambda: {"/sys/fs/cgroup"})
    bind: str | None = None

    def host(self) -> Host:
        return Host(euid=lambda: self.uid, exists=lambda p: p in self.files or p in self.dirs,
                    is_dir=lambda p: p in self.dirs, which=lambda name: None,
                    bind_error=lambda h, p: self.bind)


def problems(m: FakeMachine) -> list[str]:
    return missing_prerequisites(need_node=True, host=m.host())


def test_a_complete_machine_has_no_problem() -> None:
    assert problems(FakeMachine()) == []


def test_the_control_plane_alone_needs_nothing() -> None:
    assert missing_prerequisites(need_node=False, host=FakeMachine(uid=1000, files=set(), dirs=set()).host()) == []


def test_not_root() -> None:
    [line] = problems(FakeMachine(uid=1000))
    assert "needs root" in line and "sudo peapod up" in line


@pytest.mark.parametrize(("path", "package"), [
    ("/usr/bin/runc", "runc"), ("/usr/bin/conmon", "conmon"), ("/usr/bin/catatonit", "catatonit"),
    ("/usr/bin/nsenter", "util-linux"), ("/usr/sbin/ip", "iproute2"),
])
def test_a_missing_binary_names_its_package(path: str, package: str) -> None:
    m = FakeMachine()
    m.files.discard(path)
    [line] = problems(m)
    assert line.startswith(path.rsplit("/", 1)[1] + " not found") and f"apt-get install {package}" in line


def test_binaries_of_one_package_share_a_line() -> None:
    m = FakeMachine()
    m.files -= {"/usr/bin/unshare", "/usr/bin/nsenter"}
    assert problems(m) == ["unshare, nsenter not found: install with `apt-get install util-linux` (or `make install`)"]


def test_no_cni_plugins() -> None:
    m = FakeMachine()
    m.files = {f for f in m.files if "/cni/" not in f}
    [line] = problems(m)
    assert "CNI plugins (bridge, host-local, loopback, portmap)" in line
    assert "apt-get install containernetworking-plugins" in line


def test_one_missing_cni_plugin_is_named() -> None:
    m = FakeMachine()
    m.files.discard("/usr/lib/cni/portmap")
    [line] = problems(m)
    assert "CNI plugins (portmap)" in line


def test_cni_plugins_in_opt() -> None:
    m = FakeMachine()
    m.files = {f.replace("/usr/lib/cni/", "/opt/cni/bin/") for f in m.files}
    assert problems(m) == []


def test_cgroups_not_mounted() -> None:
    m = FakeMachine()
    m.files.discard("/sys/fs/cgroup/cgroup.controllers")
    [line] = problems(m)
    assert "cgroups are not mounted at /sys/fs/cgroup" in line and "mount -t cgroup2" in line


def test_cgroup_v1_is_enough() -> None:
    m = FakeMachine()
    m.files.discard("/sys/fs/cgroup/cgroup.controllers")
    m.dirs.add("/sys/fs/cgroup/memory")
    assert problems(m) == []


def test_every_problem_at_once_is_one_line_each() -> None:
    found = problems(FakeMachine(uid=5, files=set(), dirs=set()))
    assert len(found) == 4 and all("\n" not in p for p in found)
    assert found[1] == ("runc, conmon, catatonit, unshare, nsenter, ip not found: install with "
                        "`apt-get install runc conmon catatonit util-linux iproute2` (or `make install`)")


@pytest.mark.parametrize(("err", "fragment"), [
    (None, None),
    ("EADDRINUSE", "port 6443 on 127.0.0.1 is already in use: stop what listens there or pass another --port"),
    ("EACCES", "no permission to listen on port 6443"),
    ("EADDRNOTAVAIL", "127.0.0.1 is not an address of this machine"),
    ("EPERM", "cannot listen on 127.0.0.1:6443 (EPERM)"),
])
def test_port_problems(err: str | None, fragment: str | None) -> None:
    got = port_problem("127.0.0.1", 6443, host=FakeMachine(bind=err).host())
    assert got == fragment if fragment is None else fragment in str(got)


def test_a_listening_port_is_busy_and_a_closed_one_free() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert _port_free("127.0.0.1", port) == "EADDRINUSE"
    assert _port_free("127.0.0.1", port) is None
    assert _port_free("no-such-host.invalid", 80) == "EADDRNOTAVAIL"
