"""Pods for real: runc + conmon + CNI bridge on a busybox rootfs."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from peapod.node.runtime.logs import LogOptions, parse_line, read_logs
from peapod.node.runtime.runc_runtime import RuncRuntime
from peapod.node.runtime.types import ContainerStatus, Resources

from .conftest import Harness


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False

# Debian's static busybox wget crashes (glibc NSS in a static binary); nc + a hand-made GET works.
GET = "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} 8080"
WAIT_HTTP = (
    "for i in $(seq 100); do " + GET + " > /tmp/r && grep -q 200 /tmp/r && tail -n1 /tmp/r && exit 0; "
    "sleep 0.1; done; exit 1"
)
SERVE = "mkdir -p /tmp/www && echo {text} > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"


async def test_containers_in_a_pod_share_localhost_shm_and_hostname(harness: Harness) -> None:
    pod = await harness.pod("web", hostname="webhost")
    serve = "echo shared > /dev/shm/x; " + SERVE.format(text="hi")
    server = await harness.run(pod, "server", ["sh", "-c", serve])
    client = await harness.run(pod, "client", ["sh", "-c", "sleep 1000"])
    rc, out = await harness.exec_out(client, "sh", "-c", WAIT_HTTP.format(ip="127.0.0.1"))
    assert rc == 0 and out.strip() == "hi", out
    rc, out = await harness.exec_out(client, "cat", "/dev/shm/x")
    assert out.strip() == "shared"
    for cid in (server, client):
        rc, out = await harness.exec_out(cid, "hostname")
        assert out.strip() == "webhost"
    rc, out = await harness.exec_out(client, "cat", "/etc/hosts")
    assert f"{pod.ip}\twebhost" in out and "alias.example" in out
    rc, out = await harness.exec_out(client, "cat", "/etc/resolv.conf")
    assert "nameserver 127.0.0.53" in out
    # the pod IP is on eth0, the loopback is up
    rc, out = await harness.exec_out(client, "ip", "-o", "addr")
    assert pod.ip in out and "127.0.0.1" in out
    await harness.delete_pod(pod)


async def test_a_pod_reaches_another_pods_ip(harness: Harness) -> None:
    a = await harness.pod("a")
    b = await harness.pod("b")
    assert a.ip != b.ip
    await harness.run(a, "server", ["sh", "-c", SERVE.format(text="from-a")])
    client = await harness.run(b, "client", ["sh", "-c", "sleep 1000"])
    rc, out = await harness.exec_out(client, "sh", "-c", WAIT_HTTP.format(ip=a.ip))
    assert rc == 0 and out.strip() == "from-a", out
    # separate network namespaces: b's localhost has no server
    rc, out = await harness.exec_out(client, "sh", "-c", GET.format(ip="127.0.0.1"))
    assert rc != 0
    assert harness.network.status(a.uid).ips == [a.ip]
    await harness.network.check(a.uid, a.sandbox.netns_path)


async def test_pid_namespace_is_shared_only_when_asked(harness: Harness) -> None:
    shared = await harness.pod("shared", share_pid=True)
    await harness.run(shared, "sleeper", ["sleep", "1001"])
    looker = await harness.run(shared, "looker", ["sleep", "1000"])
    _rc, out = await harness.exec_out(looker, "ps", "-o", "pid,args")
    assert "sleep 1001" in out and "catatonit" in out, out
    private = await harness.pod("private")
    await harness.run(private, "sleeper", ["sleep", "1001"])
    looker2 = await harness.run(private, "looker", ["sleep", "1000"])
    _rc, out = await harness.exec_out(looker2, "ps", "-o", "pid,args")
    assert "sleep 1001" not in out, out
    await harness.delete_pod(shared)
    await harness.delete_pod(private)


async def test_exit_code_and_cri_logs(harness: Harness) -> None:
    pod = await harness.pod("job")
    script = "echo out-line; echo err-line >&2; printf partial; exit 3"
    cid = await harness.run(pod, "main", ["sh", "-c", script])
    st = await harness.runtime.wait(cid, 30)
    assert st.status == ContainerStatus.STOPPED and st.exit_code == 3 and st.reason == "Error"
    assert st.started_at and st.finished_at and st.finished_at >= st.started_at
    assert st.annotations["io.peapod.container"] == "main"
    raw = Path(st.log_path).read_bytes().splitlines()  # noqa: ASYNC240
    entries = [parse_line(line) for line in raw]
    assert all(e is not None for e in entries), raw
    # stdout and stderr are separate pipes: order is kept within a stream only
    assert sorted((e.stream, e.content, e.partial) for e in entries if e and e.content) == [
        ("stderr", b"err-line", False), ("stdout", b"out-line", False), ("stdout", b"partial", True)]
    assert read_logs(st.log_path, LogOptions(stream="stdout")) == b"out-line\npartial"
    assert read_logs(st.log_path, LogOptions(tail=1, stream="stdout")) == b"partial"
    stamped = read_logs(st.log_path, LogOptions(tail=1, stream="stderr", timestamps=True))
    assert stamped.endswith(b"Z err-line\n")


async def test_stop_sigterm_then_sigkill_after_timeout(harness: Harness) -> None:
    pod = await harness.pod("stops")
    polite = await harness.run(pod, "polite", ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"])
    stubborn = await harness.run(pod, "stubborn", ["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"])
    await asyncio.sleep(0.3)
    t = time.monotonic()
    await harness.runtime.stop(polite, 10)
    assert time.monotonic() - t < 5
    st = await harness.runtime.state(polite)
    assert st.status == ContainerStatus.STOPPED and st.exit_code == 0
    t = time.monotonic()
    await harness.runtime.stop(stubborn, 1.5)
    elapsed = time.monotonic() - t
    st = await harness.runtime.state(stubborn)
    assert st.status == ContainerStatus.STOPPED and st.exit_code == 137
    assert 1.4 <= elapsed < 10


async def test_memory_limit_oom_kills_and_is_reported(harness: Harness) -> None:
    pod = await harness.pod("hog")
    cid = await harness.run(pod, "hog", ["sh", "-c", "tail /dev/zero"],
                            resources=Resources(memory_limit=16 * 1024 * 1024))
    st = await harness.runtime.wait(cid, 60)
    assert st.status == ContainerStatus.STOPPED
    assert st.exit_code == 137
    assert st.oom_killed and st.reason == "OOMKilled"


async def test_readopt_running_and_dead_containers(harness: Harness) -> None:
    pod = await harness.pod("adopt")
    alive = await harness.run(pod, "alive", ["sleep", "1000"])
    doomed = await harness.run(pod, "doomed", ["sleep", "1000"])
    doomed_pid = (await harness.runtime.state(doomed)).pid
    del harness.runtime  # the agent goes away; conmon keeps the containers
    os.kill(doomed_pid, signal.SIGKILL)  # one dies while nobody watches
    await asyncio.sleep(0.5)
    harness.runtime = RuncRuntime(harness.data / "rt")
    states = {s.id: s for s in await harness.runtime.list()}
    assert states[alive].status == ContainerStatus.RUNNING and states[alive].pid > 0
    assert states[doomed].status == ContainerStatus.STOPPED and states[doomed].exit_code == 137
    assert states[alive].started_at is not None
    _rc, out = await harness.exec_out(alive, "echo", "still-here")
    assert out.strip() == "still-here"
    stats = harness.cg.stats(harness.cg.container_relpath(pod.uid, alive))
    assert stats.memory_usage_bytes and stats.memory_usage_bytes > 0
    assert stats.cpu_usage_ns is not None and stats.pids == 1
    await harness.delete_pod(pod)


async def test_exec_with_stdin_and_tty(harness: Harness) -> None:
    pod = await harness.pod("exec")
    cid = await harness.run(pod, "main", ["sleep", "1000"])
    p = await harness.runtime.exec(cid, ["cat"], stdin=True)
    out, _ = await asyncio.wait_for(p.process.communicate(b"via-stdin"), 30)
    assert out == b"via-stdin"
    p = await harness.runtime.exec(cid, ["sh", "-c", "tty; exit 4"], tty=True)
    assert p.master_fd is not None
    p.resize(30, 100)
    loop = asyncio.get_running_loop()
    chunks = b""
    while True:
        try:
            data = await loop.run_in_executor(None, os.read, p.master_fd, 4096)
        except OSError:
            break
        if not data:
            break
        chunks += data
    assert await asyncio.wait_for(p.wait(), 30) == 4
    p.close()
    assert b"/dev/pts/" in chunks


async def test_sandbox_teardown_is_idempotent_after_a_crash(harness: Harness) -> None:
    pod = await harness.pod("crash", share_pid=True)
    reaper = pod.sandbox.reaper_pid
    assert reaper and _alive(reaper)
    from peapod.node.runtime.sandbox import SandboxManager

    fresh = SandboxManager(harness.data, cgroups=harness.cg)  # no in-memory state
    assert fresh.healthy(fresh.get(pod.uid))
    await harness.network.teardown(pod.uid, pod.sandbox.netns_path)
    await harness.network.teardown(pod.uid, pod.sandbox.netns_path)
    await fresh.teardown(pod.uid)
    await fresh.teardown(pod.uid)
    assert not _alive(reaper)
    assert fresh.get(pod.uid) is None


async def test_created_container_can_be_stopped_and_removed(harness: Harness) -> None:
    pod = await harness.pod("never")
    cid = await harness.run(pod, "main", ["echo", "never printed"], start=False)
    st = await harness.runtime.state(cid)
    assert st.status == ContainerStatus.CREATED and st.pid > 0 and st.started_at is None
    await harness.runtime.stop(cid, 5)
    st = await harness.runtime.state(cid)
    assert st.status == ContainerStatus.STOPPED and st.exit_code == 137
    await harness.runtime.remove(cid)
    await harness.runtime.remove(cid)  # idempotent
    assert cid not in {s.id for s in await harness.runtime.list()}
    assert read_logs(harness.data / "logs" / f"{cid}.log") == b""
