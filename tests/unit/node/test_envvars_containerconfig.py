"""Container environment ($(VAR), downward API, configMap/secret refs, envFrom) and ContainerConfig rules."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from peapod.node.containerconfig import (
    ConfigError,
    ContainerInputs,
    build_container_config,
    cgroup_resources,
    command_line,
    oom_score_adj,
    resolve_user,
)
from peapod.node.envvars import EnvError, EnvSources, build_env, merge_image_env, referenced_objects
from peapod.node.images.model import ImageConfig
from peapod.node.volumes.types import DownwardValues

POD = {
    "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "labels": {"app": "x"}},
    "spec": {"nodeName": "n1", "serviceAccountName": "sa"},
    "status": {},
}
CM = {"data": {"A": "1", "B": "two", "bad=key": "x"}}
SECRET = {"data": {"PASS": base64.b64encode(b"s3cret").decode()}}
SOURCES = EnvSources(
    configmaps={"cm": CM, "missing": None},
    secrets={"sec": SECRET},
    downward=DownwardValues(
        node_name="n1",
        host_ip="192.0.2.1",
        pod_ip="10.77.0.9",
        node_allocatable={"cpu": "4", "memory": "8Gi"},
    ),
)


def env_of(container: dict[str, Any], sources: EnvSources = SOURCES) -> dict[str, str]:
    return dict(build_env(POD, {"name": "c", **container}, sources))


@pytest.mark.parametrize(
    ("env", "want"),
    [
        ([{"name": "A", "value": "x"}, {"name": "B", "value": "$(A)-y"}], {"A": "x", "B": "x-y"}),
        (
            [{"name": "B", "value": "$(A)"}, {"name": "A", "value": "x"}],
            {"A": "x", "B": "$(A)"},
        ),  # only earlier
        ([{"name": "A", "value": "$$(A) $(NOPE) $"}], {"A": "$(A) $(NOPE) $"}),
        ([{"name": "E", "value": ""}], {"E": ""}),
    ],
)
def test_expansion(env: list[dict[str, Any]], want: dict[str, str]) -> None:
    assert env_of({"env": env}) == want


def test_downward_and_refs() -> None:
    got = env_of(
        {
            "resources": {"limits": {"memory": "64Mi"}},
            "env": [
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {
                    "name": "MEM",
                    "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
                },
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                {"name": "CMV", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "B"}}},
                {"name": "SEC", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "PASS"}}},
                {
                    "name": "OPT",
                    "valueFrom": {"configMapKeyRef": {"name": "missing", "key": "x", "optional": True}},
                },
                {"name": "USE", "value": "$(POD)@$(IP)"},
            ],
        }
    )
    assert got == {
        "POD": "web",
        "NS": "ns",
        "IP": "10.77.0.9",
        "NODE": "n1",
        "APP": "x",
        "MEM": "64",
        "CPU": "4",
        "CMV": "two",
        "SEC": "s3cret",
        "USE": "web@10.77.0.9",
    }


def test_env_from() -> None:
    got = env_of(
        {
            "envFrom": [{"configMapRef": {"name": "cm"}}, {"secretRef": {"name": "sec"}, "prefix": "S_"}],
            "env": [{"name": "A", "value": "over-$(B)"}],
        }
    )
    assert got == {"A": "over-two", "B": "two", "S_PASS": "s3cret"}  # the invalid key is skipped


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "missing", "key": "a"}}}]},
            'configmap "missing" not found',
        ),
        (
            {"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "zz"}}}]},
            "couldn't find key zz in ConfigMap ns/cm",
        ),
        (
            {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "a"}}}]},
            'secret "nope" not found',
        ),
        ({"envFrom": [{"secretRef": {"name": "nope"}}]}, 'secret "nope" not found'),
        (
            {"env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}]},
            "unsupported fieldPath",
        ),
    ],
)
def test_env_errors(env: dict[str, Any], message: str) -> None:
    with pytest.raises(EnvError, match=message):
        env_of(env, EnvSources(configmaps={"cm": CM, "missing": None}, secrets={"nope": None}))


def test_referenced_objects() -> None:
    c = {
        "envFrom": [{"configMapRef": {"name": "a"}}, {"secretRef": {"name": "b"}}],
        "env": [
            {"name": "x", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
            {"name": "y", "valueFrom": {"secretKeyRef": {"name": "d", "key": "k"}}},
        ],
    }
    assert referenced_objects(c) == ({"a", "c"}, {"b", "d"})


def test_merge_image_env() -> None:
    assert merge_image_env(("PATH=/bin", "A=img"), [("A", "pod"), ("B", "b")]) == [
        "PATH=/bin",
        "A=pod",
        "B=b",
    ]


IMG = ImageConfig(entrypoint=("/entry",), cmd=("default", "args"))


@pytest.mark.parametrize(
    ("container", "image", "want"),
    [
        ({}, IMG, ["/entry", "default", "args"]),
        ({"command": ["/bin/sh"]}, IMG, ["/bin/sh"]),  # command drops image Cmd too
        ({"args": ["x"]}, IMG, ["/entry", "x"]),
        ({"command": ["echo"], "args": ["$(A)", "$(NOPE)", "$$(A)"]}, IMG, ["echo", "1", "$(NOPE)", "$(A)"]),
        ({}, ImageConfig(cmd=("sh",)), ["sh"]),
    ],
)
def test_command_line(container: dict[str, Any], image: ImageConfig, want: list[str]) -> None:
    assert command_line(container, image, {"A": "1"}) == want


def test_no_command() -> None:
    with pytest.raises(ConfigError, match="no command specified"):
        command_line({}, ImageConfig(), {})


PASSWD = "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\napp:x:1000:1001::/home/app:/bin/sh\n"
GROUP = "root:x:0:\nnogroup:x:65534:\napp:x:1001:\nextra:x:2000:app\n"


@pytest.mark.parametrize(
    ("pod_sc", "c_sc", "image_user", "want"),
    [
        ({}, {}, "", (0, 0, [])),
        ({}, {}, "1000", (1000, 1001, [2000])),
        ({}, {}, "app", (1000, 1001, [2000])),
        ({}, {}, "nobody:app", (65534, 1001, [])),
        ({}, {}, "5000:5000", (5000, 5000, [])),
        ({"runAsUser": 1000}, {}, "nobody", (1000, 1001, [2000])),
        ({"runAsUser": 1000}, {"runAsUser": 7, "runAsGroup": 8}, "", (7, 8, [])),
        ({"supplementalGroups": [3, 4], "fsGroup": 9}, {}, "", (0, 0, [3, 4, 9])),
    ],
)
def test_resolve_user(pod_sc: dict[str, Any], c_sc: dict[str, Any], image_user: str, want: Any) -> None:
    p = {"metadata": {"name": "p"}, "spec": {"securityContext": pod_sc}}
    assert resolve_user(p, {"name": "c", "securityContext": c_sc}, image_user, PASSWD, GROUP) == want


@pytest.mark.parametrize(
    ("c_sc", "image_user", "message"),
    [
        ({"runAsNonRoot": True}, "", "image will run as root"),
        ({"runAsNonRoot": True}, "app", "non-numeric user"),
        ({}, "ghost", "unable to find user ghost"),
    ],
)
def test_resolve_user_errors(c_sc: dict[str, Any], image_user: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_user(
            {"metadata": {"name": "p"}, "spec": {}},
            {"name": "c", "securityContext": c_sc},
            image_user,
            PASSWD,
            GROUP,
        )


def test_resources_and_oom() -> None:
    r = cgroup_resources(
        {"resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}}}
    )
    assert (r.cpu_shares, r.cpu_quota, r.cpu_period, r.memory_limit) == (256, 50000, 100000, 64 * 1024 * 1024)
    assert cgroup_resources({}).cpu_shares == 2
    assert cgroup_resources({}).cpu_quota is None
    guaranteed = {
        "spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}
    }
    assert oom_score_adj(guaranteed, guaranteed["spec"]["containers"][0], 8 << 30) == -997
    best = {"spec": {"containers": [{"name": "c"}]}}
    assert oom_score_adj(best, {"name": "c"}, 8 << 30) == 1000
    burst_c = {"name": "c", "resources": {"requests": {"memory": "2Gi"}}}
    assert oom_score_adj({"spec": {"containers": [burst_c]}}, burst_c, 8 << 30) == 750


def test_build_container_config() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
        "spec": {
            "securityContext": {"sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]}
        },
    }
    c = {
        "name": "c",
        "image": "x",
        "workingDir": "/work",
        "tty": True,
        "stdin": True,
        "securityContext": {
            "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
        },
    }
    cfg = build_container_config(
        ContainerInputs(
            pod=pod,
            container=c,
            image=ImageConfig(cmd=("sh",), env=("PATH=/usr/bin", "X=img"), user="app"),
            rootfs="/r",
            env=[("X", "pod")],
            passwd=PASSWD,
            group=GROUP,
        )
    )
    assert list(cfg.args) == ["sh"]
    assert list(cfg.env) == ["PATH=/usr/bin", "X=pod"]
    assert (cfg.uid, cfg.gid, cfg.cwd) == (1000, 1001, "/work")
    assert cfg.cap_add == ["NET_ADMIN"] and cfg.cap_drop == ["ALL"]
    assert cfg.no_new_privileges and cfg.readonly_rootfs and cfg.terminal and cfg.stdin
    assert cfg.sysctls == {"net.ipv4.ip_unprivileged_port_start": "0"}
    assert cfg.seccomp == "RuntimeDefault"
    priv = build_container_config(
        ContainerInputs(
            pod=pod,
            container={"name": "c", "securityContext": {"privileged": True}},
            image=ImageConfig(cmd=("sh",)),
            rootfs="/r",
        )
    )
    assert priv.privileged and priv.seccomp is None
