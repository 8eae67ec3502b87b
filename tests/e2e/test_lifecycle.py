"""The pod lifecycle on the real runtime, through `peapod up` and the real kubectl.

Each case checks what Kubernetes' conformance tests (or its documentation) check: phases and exit
codes per restart policy, CrashLoopBackOff, ``logs --previous``, termination messages, probes
(liveness restarts, readiness gates Ready, startup holds liveness), lifecycle hooks, grace periods
(SIGKILL when the grace runs out, a forced delete cutting it short), init containers, native
sidecars, OOMKilled, ContainerCannotRun and activeDeadlineSeconds.

To stay fast, most pods are created together at the start (``batch``) and run while the other
tests go on; cases observe the first restart (which has no back-off) with ``periodSeconds: 1,
failureThreshold: 1`` probes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from peapod.testing.cluster import PeapodCluster
from peapod.testing.registry import LoopbackRegistry

pytestmark = pytest.mark.skipif(
    subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0", reason="needs root"
)

NS = "lifecycle"
Obj = dict[str, Any]
IGNORE_TERM = 'trap "" TERM; while true; do sleep 1; done'
HONOR_TERM = 'trap "exit 0" TERM; while true; do sleep 1; done'
WWW = "mkdir -p /www && echo hello-www > /www/index.html && exec httpd -f -p 8080 -h /www"
# A sidecar's web server that exits (status 1) once /tmp/die exists.
SIDE = ("mkdir -p /www && echo hello-www > /www/index.html && httpd -p 8080 -h /www && "
        "while [ ! -e /tmp/die ]; do sleep 0.2; done; exit 1")


@pytest.fixture(scope="module")
def cluster(node_cluster: PeapodCluster) -> PeapodCluster:
    return node_cluster


@pytest.fixture(scope="module")
def image(registry: LoopbackRegistry) -> str:
    return registry.ref("busybox", "1")


# ---- helpers ---------------------------------------------------------------------------------------


def pod(name: str, containers: list[Obj], *, restart: str = "Always", grace: int = 2, **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
            "spec": {"restartPolicy": restart, "terminationGracePeriodSeconds": grace,
                     "containers": containers, **spec}}


def ctr(image: str, script: str, name: str = "c", **kw: Any) -> Obj:
    return {"name": name, "image": image, "command": ["sh", "-c", script], **kw}


def exec_probe(*argv: str, **kw: Any) -> Obj:
    return {"exec": {"command": list(argv)}, "periodSeconds": 1, "failureThreshold": 1, **kw}


def apply(cluster: PeapodCluster, tmp: Path, pods: list[Obj]) -> None:
    path = tmp / f"pods-{time.monotonic_ns()}.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": pods}))
    cluster.kubectl("apply", "-f", str(path), check=True)


def get(cluster: PeapodCluster, name: str) -> Obj:
    r = cluster.kubectl("get", "-n", NS, "pod", name, "-o", "json")
    return r.json() if r.returncode == 0 else {}


def cstatus(p: Obj, name: str = "c", key: str = "containerStatuses") -> Obj:
    return next((s for s in (p.get("status") or {}).get(key) or [] if s["name"] == name), {})


def conditions(p: Obj) -> dict[str, str]:
    return {c["type"]: c["status"] for c in (p.get("status") or {}).get("conditions") or []}


def phase(p: Obj) -> str:
    return (p.get("status") or {}).get("phase", "")


def wait_pod(cluster: PeapodCluster, name: str, cond: Callable[[Obj], bool], timeout: float = 45.0,
             what: str = "") -> Obj:
    deadline = time.monotonic() + timeout
    p: Obj = {}
    while time.monotonic() < deadline:
        p = get(cluster, name)
        if p and cond(p):
            return p
        time.sleep(0.3)
    desc = cluster.kubectl("describe", "-n", NS, "pod", name).stdout
    raise AssertionError(f"{name}: {what or 'condition'} not met; status:\n"
                         f"{json.dumps(p.get('status'), indent=1)}\n{desc}\n{cluster.log_tail(30)}")


def events(cluster: PeapodCluster, name: str) -> list[Obj]:
    r = cluster.kubectl("get", "-n", NS, "events", "--field-selector", f"involvedObject.name={name}", "-o", "json",
                        check=True)
    return r.json()["items"]


def wait_event(cluster: PeapodCluster, name: str, reason: str, contains: str = "", timeout: float = 20.0) -> Obj:
    deadline = time.monotonic() + timeout
    evs: list[Obj] = []
    while time.monotonic() < deadline:
        evs = events(cluster, name)
        for e in evs:
            if e.get("reason") == reason and contains in e.get("message", ""):
                return e
        time.sleep(0.3)
    raise AssertionError(f"no {reason} event with {contains!r} for {name}: "
                         f"{[(e.get('reason'), e.get('message')) for e in evs]}")


def logs(cluster: PeapodCluster, name: str, *args: str) -> str:
    return cluster.kubectl("logs", "-n", NS, name, *args, check=True).stdout


def kubectl_status(cluster: PeapodCluster, name: str) -> str:
    """The STATUS column of `kubectl get pod`."""
    out = cluster.kubectl("get", "-n", NS, "pod", name, "--no-headers", check=True).stdout.split()
    return out[2]


def running_ready(p: Obj) -> bool:
    return phase(p) == "Running" and conditions(p).get("Ready") == "True"


def timed_delete(cluster: PeapodCluster, name: str, *args: str) -> float:
    start = time.monotonic()
    cluster.kubectl("delete", "-n", NS, "pod", name, *args, check=True, timeout=120)
    return time.monotonic() - start


def processes_with(token: str) -> list[int]:
    """PIDs whose command line holds ``token`` (read-only /proc scan)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if token.encode() in Path(f"/proc/{d}/cmdline").read_bytes():
                    out.append(int(d))
            except OSError:
                pass
    return out


# ---- the batch: independent pods created together ------------------------------------------------


def batch_pods(image: str) -> list[Obj]:
    counter = "n=$(cat /d/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /d/n; echo run $n; "
    www_side = {"name": "side", "image": image, "restartPolicy": "Always", "command": ["sh", "-c", SIDE],
                "startupProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1,
                                 "failureThreshold": 30}}
    return [
        # restart policies, phases, exit codes
        pod("never-fail", [ctr(image, "exit 3")], restart="Never"),
        pod("onfailure-ok", [ctr(image, "exit 0")], restart="OnFailure"),
        pod("onfailure-crash", [ctr(image, "exit 2")], restart="OnFailure"),
        pod("always-crash", [ctr(image, "echo crashing; exit 1")]),
        # logs --previous: run 1 exits, run 2 stays
        pod("prev-logs", [ctr(image, counter + '[ "$n" -ge 2 ] && exec sleep 3600; exit 1',
                              volumeMounts=[{"name": "d", "mountPath": "/d"}])],
            volumes=[{"name": "d", "emptyDir": {}}]),
        # termination messages
        pod("term-msg", [ctr(image, "printf done-msg > /dev/termination-log; exit 0")], restart="Never"),
        pod("term-msg-path", [ctr(image, "printf custom-path > /tmp/my-msg; exit 1",
                                  terminationMessagePath="/tmp/my-msg")], restart="Never"),
        pod("fallback", [ctr(image, "echo line1; echo oops >&2; exit 2",
                             terminationMessagePolicy="FallbackToLogsOnError")], restart="Never"),
        pod("fallback-ok", [ctr(image, "echo fine; exit 0",
                                terminationMessagePolicy="FallbackToLogsOnError")], restart="Never"),
        # OOMKilled, ContainerCannotRun, activeDeadlineSeconds
        pod("oom", [{"name": "c", "image": image, "command": ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M",
                                                                "count=1"],
                     "resources": {"limits": {"memory": "16Mi"}}}], restart="Never"),
        pod("cannot-run", [{"name": "c", "image": image, "command": ["/no/such/binary"]}], restart="Never"),
        pod("deadline", [ctr(image, HONOR_TERM)], activeDeadlineSeconds=3),
        # probes
        pod("live-exec-fail", [ctr(image, "exec sleep 3600", livenessProbe=exec_probe("cat", "/tmp/healthy"))]),
        pod("live-exec-ok", [ctr(image, "exec sleep 3600", livenessProbe=exec_probe("true"))]),
        pod("live-http-fail", [ctr(image, WWW, livenessProbe={"httpGet": {"path": "/healthz", "port": 8080},
                                                              "periodSeconds": 1, "failureThreshold": 1,
                                                              "terminationGracePeriodSeconds": 1})]),
        pod("live-http-ok", [ctr(image, WWW, livenessProbe={"httpGet": {"path": "/", "port": 8080},
                                                            "periodSeconds": 1, "failureThreshold": 1})]),
        # init containers and sidecars
        pod("init-order", [ctr(image, "cat /w/log; exec sleep 3600", volumeMounts=[{"name": "w", "mountPath": "/w"}])],
            initContainers=[ctr(image, "echo 1 > /w/log", "i1", volumeMounts=[{"name": "w", "mountPath": "/w"}]),
                            ctr(image, "echo 2 >> /w/log", "i2", volumeMounts=[{"name": "w", "mountPath": "/w"}])],
            volumes=[{"name": "w", "emptyDir": {}}]),
        pod("init-fail-never", [ctr(image, "exec sleep 3600")], restart="Never",
            initContainers=[ctr(image, "exit 5", "i1")]),
        pod("init-fail-always", [ctr(image, "exec sleep 3600")], initContainers=[ctr(image, "exit 1", "i1")]),
        pod("sidecar", [ctr(image, "wget -qO- http://127.0.0.1:8080/ && exec sleep 3600")],
            initContainers=[www_side]),
        pod("sidecar-job", [ctr(image, "wget -qO- http://127.0.0.1:8080/")], restart="Never",
            initContainers=[www_side]),
        pod("poststart-fail", [ctr(image, "exec sleep 3600",
                                   lifecycle={"postStart": {"exec": {"command": ["sh", "-c", "exit 7"]}}})],
            restart="Never"),
        # preStop also runs when a liveness failure restarts the container
        pod("prestop-restart", [
            ctr(image, "exec sleep 3600", "app", livenessProbe=exec_probe("cat", "/tmp/healthy"),
                lifecycle={"preStop": {"exec": {"command": ["sh", "-c", "echo prestop-ran >> /shared/log"]}}},
                volumeMounts=[{"name": "shared", "mountPath": "/shared"}]),
            ctr(image, "exec sleep 3600", "reader", volumeMounts=[{"name": "shared", "mountPath": "/shared"}]),
        ], volumes=[{"name": "shared", "emptyDir": {}}]),
        pod("poststart-exec", [ctr(image, "exec sleep 3600", lifecycle={
            "postStart": {"exec": {"command": ["sh", "-c", "echo hooked > /tmp/poststart"]}}})]),
    ]


@pytest.fixture(scope="module")
def batch(cluster: PeapodCluster, image: str, tmp_path_factory: pytest.TempPathFactory) -> float:
    """Create the batch pods once; returns when they were created (time.monotonic())."""
    cluster.kubectl("create", "namespace", NS, check=True)
    apply(cluster, tmp_path_factory.mktemp("batch"), batch_pods(image))
    return time.monotonic()


@pytest.fixture(scope="module")
def handler(cluster: PeapodCluster, image: str, batch: float, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A pod logging every HTTP request it gets (busybox httpd -vv): hooks call it. Returns its IP."""
    apply(cluster, tmp_path_factory.mktemp("handler"),
          [pod("handler", [ctr(image, "mkdir -p /www && exec httpd -f -vv -p 8080 -h /www")])])
    p = wait_pod(cluster, "handler", running_ready, what="handler running")
    return p["status"]["podIP"]


def handler_saw(cluster: PeapodCluster, path: str, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f"url:{path}" in logs(cluster, "handler"):
            return True
        time.sleep(0.3)
    return False


# ---- restart policies and phases ------------------------------------------------------------------


def test_restart_policy_never_failed_with_exit_code(cluster: PeapodCluster, batch: float) -> None:
    p = wait_pod(cluster, "never-fail", lambda p: phase(p) == "Failed")
    t = cstatus(p)["state"]["terminated"]
    assert (t["exitCode"], t["reason"]) == (3, "Error")
    assert cstatus(p)["restartCount"] == 0 and cstatus(p)["ready"] is False
    assert conditions(p)["Ready"] == "False"
    assert kubectl_status(cluster, "never-fail") == "Error"


def test_restart_policy_onfailure_success_is_final(cluster: PeapodCluster, batch: float) -> None:
    p = wait_pod(cluster, "onfailure-ok", lambda p: phase(p) == "Succeeded")
    t = cstatus(p)["state"]["terminated"]
    assert (t["exitCode"], t["reason"]) == (0, "Completed")
    assert cstatus(p)["restartCount"] == 0
    ready = next(c for c in p["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready.get("reason") == "PodCompleted"
    assert kubectl_status(cluster, "onfailure-ok") == "Completed"


def test_restart_policy_onfailure_restarts_failures(cluster: PeapodCluster, batch: float) -> None:
    p = wait_pod(cluster, "onfailure-crash", lambda p: cstatus(p).get("restartCount", 0) >= 1)
    assert phase(p) == "Running"
    last = wait_pod(cluster, "onfailure-crash", lambda p: bool(cstatus(p)["lastState"].get("terminated")))
    assert cstatus(last)["lastState"]["terminated"]["exitCode"] == 2


def test_crashloop_backoff_reason_and_message(cluster: PeapodCluster, batch: float) -> None:
    p = wait_pod(cluster, "always-crash",
                 lambda p: (cstatus(p).get("state") or {}).get("waiting", {}).get("reason") == "CrashLoopBackOff",
                 what="CrashLoopBackOff")
    cs = cstatus(p)
    uid = p["metadata"]["uid"]
    assert cs["state"]["waiting"]["message"] == \
        f"back-off 10s restarting failed container=c pod=always-crash_{NS}({uid})"
    assert cs["restartCount"] == 1
    last = cs["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"]) == (1, "Error")
    assert last["startedAt"] and last["finishedAt"] and last["containerID"].endswith("-c-1")
    assert phase(p) == "Running" and conditions(p)["Ready"] == "False"
    assert kubectl_status(cluster, "always-crash") == "CrashLoopBackOff"
    wait_event(cluster, "always-crash", "BackOff", "Back-off restarting failed container c")


def test_logs_previous_shows_the_last_run(cluster: PeapodCluster, batch: float) -> None:
    wait_pod(cluster, "prev-logs", lambda p: cstatus(p).get("restartCount") == 1 and running_ready(p))
    assert logs(cluster, "prev-logs") == "run 2\n"
    assert logs(cluster, "prev-logs", "--previous") == "run 1\n"
    p = get(cluster, "prev-logs")
    assert cstatus(p)["lastState"]["terminated"]["exitCode"] == 1


# ---- termination messages and reasons ----------------------------------------------------------------


def test_termination_message_from_file(cluster: PeapodCluster, batch: float) -> None:
    p = wait_pod(cluster, "term-msg", lambda p: phase(p) == "Succeeded")
    assert cstatus(p)["state"]["terminated"]["message"] == "done-msg"
    p = wait_pod(cluster, "term-msg-path", lambda p: phase(p) == "Failed")
    t = cstatus(p)["state"]["terminated"]
    assert (t["message"], t["exitCode"]) == ("custom-path", 1)


def test_termination_message_fallback_to_logs_on_error(cluster: PeapodCluster, batch: float) -> None:
    p = wait_pod(cluster, "fallback", lambda p: phase(p) == "Failed")
    assert cstatus(p)["state"]["terminated"]["message"] == "line1\noops\n"
    p = wait_pod(cluster, "fallback-ok", lambda p: phase(p) == "Succeeded")
    assert "message" not in cstatus(p)["state"]["terminated"]  # only on error


def test_oom_killed_under_memory_limit(cluster: PeapodCluster, batch: float) -> None:
    p = wait_pod(cluster, "oom", lambda p: phase(p) == "Failed", what="OOM")
    t = cstatus(p)["state"]["terminated"]
    assert (t["reason"], t["exitCode"]) == ("OOMKilled", 137)
    assert kubectl_status(cluster, "oom") == "OOMKilled"


def test_missing_executable_cannot_run(cluster: PeapodCluster, batch: float) -> None:
    p = wait_pod(cluster, "cannot-run", lambda p: phase(p) == "Failed")
    t = cstatus(p)["state"]["terminated"]
    assert t["reason"] == "ContainerCannotRun" and t["exitCode"] == 128
    assert "/no/such/binary" in t["message"]
    assert kubectl_status(cluster, "cannot-run") == "ContainerCannotRun"


def test_active_deadline_fails_the_pod(cluster: PeapodCluster, batch: float) -> None:
    p = wait_pod(cluster, "deadline", lambda p: phase(p) == "Failed", what="DeadlineExceeded")
    assert p["status"]["reason"] == "DeadlineExceeded"
    assert p["status"]["message"] == "Pod was active on the node longer than the specified deadline"
    p = wait_pod(cluster, "deadline", lambda p: bool(cstatus(p)["state"].get("terminated")))
    assert cstatus(p)["state"]["terminated"]["exitCode"] == 0  # its SIGTERM trap ran
    wait_event(cluster, "deadline", "DeadlineExceeded", "longer than the specified deadline")


# ---- probes ------------------------------------------------------------------------------------------


def test_liveness_exec_failure_restarts(cluster: PeapodCluster, batch: float) -> None:
    p = wait_pod(cluster, "live-exec-fail", lambda p: cstatus(p).get("restartCount", 0) >= 1)
    assert cstatus(p)["lastState"]["terminated"]["exitCode"] in (137, 143)
    wait_event(cluster, "live-exec-fail", "Unhealthy", "Liveness probe failed:")
    e = wait_event(cluster, "live-exec-fail", "Killing", "Container c failed liveness probe, will be restarted")
    assert e["involvedObject"]["fieldPath"] == "spec.containers{c}"


def test_liveness_http_failure_restarts(cluster: PeapodCluster, batch: float) -> None:
    wait_pod(cluster, "live-http-fail", lambda p: cstatus(p).get("restartCount", 0) >= 1)
    wait_event(cluster, "live-http-fail", "Unhealthy", "Liveness probe failed: HTTP probe failed with statuscode: 404")


def test_passing_liveness_does_not_restart(cluster: PeapodCluster, batch: float) -> None:
    for name in ("live-exec-ok", "live-http-ok"):
        wait_pod(cluster, name, running_ready)
    time.sleep(max(0.0, batch + 12 - time.monotonic()))  # many probe periods
    for name in ("live-exec-ok", "live-http-ok"):
        p = get(cluster, name)
        assert cstatus(p)["restartCount"] == 0 and running_ready(p), name


def test_readiness_probe_gates_ready(cluster: PeapodCluster, image: str, batch: float, tmp_path: Path) -> None:
    apply(cluster, tmp_path, [pod("ready", [ctr(image, "exec sleep 3600",
                                                readinessProbe=exec_probe("cat", "/tmp/ready"))])])
    p = wait_pod(cluster, "ready", lambda p: phase(p) == "Running")
    time.sleep(3)
    p = get(cluster, "ready")
    assert conditions(p)["Ready"] == "False" and conditions(p)["ContainersReady"] == "False"
    assert cstatus(p, "c")["ready"] is False and cstatus(p)["started"] is True
    assert "0/1" in cluster.kubectl("get", "-n", NS, "pod", "ready", "--no-headers", check=True).stdout
    cluster.kubectl("exec", "-n", NS, "ready", "--", "touch", "/tmp/ready", check=True)
    p = wait_pod(cluster, "ready", lambda p: conditions(p).get("Ready") == "True", timeout=10)
    assert cstatus(p)["ready"] is True and cstatus(p)["restartCount"] == 0
    cluster.kubectl("exec", "-n", NS, "ready", "--", "rm", "/tmp/ready", check=True)
    p = wait_pod(cluster, "ready", lambda p: conditions(p).get("Ready") == "False", timeout=10)
    assert cstatus(p)["restartCount"] == 0  # readiness never restarts


def test_startup_probe_holds_liveness(cluster: PeapodCluster, image: str, batch: float, tmp_path: Path) -> None:
    apply(cluster, tmp_path, [pod("startup", [ctr(
        image, "exec sleep 3600",
        startupProbe=exec_probe("cat", "/tmp/started", failureThreshold=60),
        livenessProbe=exec_probe("false"))])])
    wait_pod(cluster, "startup", lambda p: phase(p) == "Running")
    time.sleep(4)
    p = get(cluster, "startup")
    cs = cstatus(p)
    assert cs["restartCount"] == 0, "liveness ran before the startup probe succeeded"
    assert cs["started"] is False and cs["ready"] is False
    cluster.kubectl("exec", "-n", NS, "startup", "--", "touch", "/tmp/started", check=True)
    p = wait_pod(cluster, "startup", lambda p: cstatus(p).get("restartCount", 0) >= 1, timeout=20)
    # the new instance has no /tmp/started: startup holds liveness again
    assert cstatus(p).get("started") is not True


# ---- hooks ------------------------------------------------------------------------------------------------


def test_post_start_exec_hook(cluster: PeapodCluster, batch: float) -> None:
    wait_pod(cluster, "poststart-exec", running_ready)
    r = cluster.kubectl("exec", "-n", NS, "poststart-exec", "--", "cat", "/tmp/poststart", check=True)
    assert r.stdout == "hooked\n"


def test_post_start_failure_kills_the_container(cluster: PeapodCluster, batch: float) -> None:
    wait_event(cluster, "poststart-fail", "FailedPostStartHook", "exited with 7")
    wait_event(cluster, "poststart-fail", "Killing", "FailedPostStartHook")
    p = wait_pod(cluster, "poststart-fail", lambda p: phase(p) == "Failed")
    assert cstatus(p)["state"]["terminated"]["exitCode"] in (137, 143)


def test_pre_stop_runs_on_a_liveness_restart(cluster: PeapodCluster, batch: float) -> None:
    wait_pod(cluster, "prestop-restart", lambda p: cstatus(p, "app").get("restartCount", 0) >= 1)
    r = cluster.kubectl("exec", "-n", NS, "prestop-restart", "-c", "reader", "--", "cat", "/shared/log", check=True)
    assert r.stdout.startswith("prestop-ran\n")


def test_post_start_http_and_pre_stop_hooks(cluster: PeapodCluster, image: str, handler: str,
                                            tmp_path: Path) -> None:
    hooks = pod("hooks", [
        ctr(image, HONOR_TERM, "exec-hooks", lifecycle={
            "preStop": {"exec": {"command": ["wget", "-qO-", f"http://{handler}:8080/prestop-exec"]}}}),
        ctr(image, HONOR_TERM, "http-hooks", lifecycle={
            "postStart": {"httpGet": {"host": handler, "port": 8080, "path": "/poststart-http"}},
            "preStop": {"httpGet": {"host": handler, "port": 8080, "path": "/prestop-http"}}}),
    ], grace=10)
    apply(cluster, tmp_path, [hooks])
    wait_pod(cluster, "hooks", running_ready)
    assert handler_saw(cluster, "/poststart-http")
    assert not handler_saw(cluster, "/prestop", timeout=0.1)
    took = timed_delete(cluster, "hooks")
    assert handler_saw(cluster, "/prestop-exec") and handler_saw(cluster, "/prestop-http")
    assert took < 8, f"containers that exit on SIGTERM stop quickly (took {took:.1f}s)"


# ---- grace periods -----------------------------------------------------------------------------------------


def test_sigterm_ignored_killed_when_grace_runs_out(cluster: PeapodCluster, image: str, batch: float,
                                                    tmp_path: Path) -> None:
    apply(cluster, tmp_path, [pod("stubborn", [ctr(image, IGNORE_TERM)], grace=4),
                              pod("polite", [ctr(image, HONOR_TERM)], grace=30),
                              pod("slow-prestop", [ctr(image, IGNORE_TERM, lifecycle={
                                  "preStop": {"exec": {"command": ["sleep", "2"]}}})], grace=5)])
    for name in ("stubborn", "polite", "slow-prestop"):
        wait_pod(cluster, name, running_ready)
    took = timed_delete(cluster, "stubborn")
    assert 3.5 <= took < 7.5, f"stubborn pod deleted in {took:.1f}s, grace 4"
    took = timed_delete(cluster, "polite")
    assert took < 4, f"a container exiting on SIGTERM took {took:.1f}s"
    # the grace counts from the start of preStop: 5 s in all, not 2 + 5
    took = timed_delete(cluster, "slow-prestop")
    assert 4.5 <= took < 6.8, f"preStop + SIGKILL took {took:.1f}s, grace 5"


def test_later_shorter_delete_shortens_a_termination(cluster: PeapodCluster, image: str, batch: float,
                                                     tmp_path: Path) -> None:
    token = f"token-{os.getpid()}-"
    apply(cluster, tmp_path, [pod(name, [ctr(image, f"{IGNORE_TERM}; echo {token}{name}")], grace=120)
                              for name in ("shortened", "forced")])
    for name in ("shortened", "forced"):
        wait_pod(cluster, name, running_ready)
        assert processes_with(token + name)
        cluster.kubectl("delete", "-n", NS, "pod", name, "--wait=false", check=True)
    time.sleep(1.5)
    assert processes_with(token + "shortened") and processes_with(token + "forced"), "the 120 s grace runs"
    start = time.monotonic()
    cluster.kubectl("delete", "-n", NS, "pod", "shortened", "--grace-period=3", "--wait=false", check=True)
    cluster.kubectl("delete", "-n", NS, "pod", "forced", "--grace-period=0", "--force", check=True)
    forced_at = shortened_at = None
    while (forced_at is None or shortened_at is None) and time.monotonic() - start < 15:
        if forced_at is None and not processes_with(token + "forced"):
            forced_at = time.monotonic() - start
        if shortened_at is None and not processes_with(token + "shortened"):
            shortened_at = time.monotonic() - start
        time.sleep(0.1)
    assert forced_at is not None and forced_at < 2.5, f"forced delete: killed after {forced_at}s"
    assert shortened_at is not None and 2.0 <= shortened_at < 6, f"grace shortened to 3: killed at {shortened_at}s"
    r = cluster.kubectl("wait", "-n", NS, "--for=delete", "pod/shortened", "--timeout=20s")
    assert r.returncode == 0, r.stderr


# ---- init containers and sidecars -----------------------------------------------------------------------


def test_init_containers_run_in_order_first(cluster: PeapodCluster, batch: float) -> None:
    p = wait_pod(cluster, "init-order", running_ready)
    assert logs(cluster, "init-order") == "1\n2\n"
    for s in p["status"]["initContainerStatuses"]:
        assert s["state"]["terminated"]["reason"] == "Completed" and s["ready"] is True
    assert conditions(p)["Initialized"] == "True"
    i1, i2 = (s["state"]["terminated"] for s in p["status"]["initContainerStatuses"])
    assert i1["finishedAt"] <= i2["startedAt"]


def test_init_progress_shown_as_init_n_of_m(cluster: PeapodCluster, image: str, batch: float,
                                            tmp_path: Path) -> None:
    apply(cluster, tmp_path, [pod("init-progress", [ctr(image, "exec sleep 3600")],
                                  initContainers=[ctr(image, "sleep 2", "i1"), ctr(image, "sleep 2", "i2")])])
    seen: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not seen or seen[-1] != "Running"):
        st = kubectl_status(cluster, "init-progress")
        if not seen or seen[-1] != st:
            seen.append(st)
        time.sleep(0.2)
    assert "Init:0/2" in seen and "Init:1/2" in seen and seen[-1] == "Running", seen
    assert seen.index("Init:0/2") < seen.index("Init:1/2")
    p = get(cluster, "init-progress")
    assert conditions(p)["Initialized"] == "True"


def test_init_failure_fails_a_never_pod(cluster: PeapodCluster, batch: float) -> None:
    p = wait_pod(cluster, "init-fail-never", lambda p: phase(p) == "Failed")
    t = cstatus(p, "i1", "initContainerStatuses")["state"]["terminated"]
    assert (t["exitCode"], t["reason"]) == (5, "Error")
    assert cstatus(p)["state"]["waiting"]["reason"] == "PodInitializing"
    assert conditions(p)["Initialized"] == "False"
    assert kubectl_status(cluster, "init-fail-never") == "Init:Error"


def test_init_failure_restarts_with_backoff(cluster: PeapodCluster, batch: float) -> None:
    p = wait_pod(cluster, "init-fail-always", lambda p: (cstatus(p, "i1", "initContainerStatuses").get("state") or {})
                 .get("waiting", {}).get("reason") == "CrashLoopBackOff")
    init = cstatus(p, "i1", "initContainerStatuses")
    assert init["restartCount"] >= 1 and init["lastState"]["terminated"]["exitCode"] == 1
    ref = re.escape(f"init-fail-always_{NS}({p['metadata']['uid']})")
    assert re.fullmatch(rf"back-off \d+s restarting failed container=i1 pod={ref}", init["state"]["waiting"]["message"])
    assert phase(p) == "Pending" and conditions(p)["Initialized"] == "False"
    assert "state" not in cstatus(p) or cstatus(p)["state"]["waiting"]["reason"] == "PodInitializing"
    assert kubectl_status(cluster, "init-fail-always") == "Init:CrashLoopBackOff"


def test_sidecar_serves_the_app(cluster: PeapodCluster, batch: float) -> None:
    p = wait_pod(cluster, "sidecar", running_ready)
    side = cstatus(p, "side", "initContainerStatuses")
    assert side["started"] is True and side["ready"] is True and "running" in side["state"]
    assert cstatus(p)["restartCount"] == 0, "the app started before its sidecar was up"
    assert logs(cluster, "sidecar") == "hello-www\n"
    assert "2/2" in cluster.kubectl("get", "-n", NS, "pod", "sidecar", "--no-headers", check=True).stdout


def test_sidecar_stopped_when_the_job_completes(cluster: PeapodCluster, batch: float) -> None:
    wait_pod(cluster, "sidecar-job", lambda p: phase(p) == "Succeeded")
    assert logs(cluster, "sidecar-job", "-c", "c") == "hello-www\n"
    wait_pod(cluster, "sidecar-job",
                 lambda p: bool(cstatus(p, "side", "initContainerStatuses")["state"].get("terminated")))


def test_sidecar_restarted_when_it_dies(cluster: PeapodCluster, batch: float) -> None:
    wait_pod(cluster, "sidecar", running_ready)
    cluster.kubectl("exec", "-n", NS, "sidecar", "-c", "side", "--", "touch", "/tmp/die", check=True)
    p = wait_pod(cluster, "sidecar", lambda p: cstatus(p, "side", "initContainerStatuses")["restartCount"] >= 1
                 and running_ready(p), timeout=20)
    assert cstatus(p)["restartCount"] == 0
