"""PodSecurity admission over the real in-process API server: enforce, warn, defaults, namespaces."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ServerThread
from tests.integration.helpers import CT_MERGE, CT_STRATEGIC, call, deployment, pod

ENFORCE = "pod-security.kubernetes.io/enforce"
WARN = "pod-security.kubernetes.io/warn"

RESTRICTED_MESSAGE = (
    'pods "p" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false '
    '(container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities '
    '(container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true '
    '(pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile '
    '(pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")'
)


def warning_value(text: str) -> str:
    return '299 - "' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def make_ns(http: Any, name: str, **labels: str) -> None:
    r = await call(http, "POST", "/api/v1/namespaces", {"metadata": {"name": name, "labels": labels}})
    assert r.status == 201, r


def privileged_pod(name: str = "p") -> dict[str, Any]:
    p = pod(name)
    p["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    return p


def restricted_pod(name: str = "p") -> dict[str, Any]:
    p = pod(name)
    p["spec"]["securityContext"] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    p["spec"]["containers"][0]["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
    }
    p["spec"]["volumes"] = [{"name": "v", "emptyDir": {}}]
    return p


async def test_enforce_restricted_rejects_with_kube_message(http: Any, server: ServerThread) -> None:
    await make_ns(http, "locked", **{ENFORCE: "restricted"})
    before = await server.dump()
    r = await call(http, "POST", "/api/v1/namespaces/locked/pods", pod("p"))
    assert r.status == 403, r
    body = r.json
    assert body["kind"] == "Status" and body["reason"] == "Forbidden" and body["code"] == 403
    assert body["message"] == RESTRICTED_MESSAGE
    assert body["details"] == {"name": "p", "kind": "pods"}
    assert "Warning" not in r.headers  # kube adds no warnings to a request it rejects
    assert await server.dump() == before

    r = await call(http, "POST", "/api/v1/namespaces/locked/pods", privileged_pod("q"))
    assert r.status == 403
    assert r.json["message"].startswith(
        'pods "q" is forbidden: violates PodSecurity "restricted:latest": privileged '
        '(container "c" must not set securityContext.privileged=true), allowPrivilegeEscalation != false'
    )


async def test_restricted_compliant_pod_is_admitted(http: Any) -> None:
    await make_ns(http, "locked", **{ENFORCE: "restricted", WARN: "restricted"})
    r = await call(http, "POST", "/api/v1/namespaces/locked/pods", restricted_pod())
    assert r.status == 201, r
    assert "Warning" not in r.headers


async def test_privileged_namespace_allows_privileged_pod(http: Any) -> None:
    await make_ns(http, "open", **{ENFORCE: "privileged"})
    p = privileged_pod()
    p["spec"]["hostNetwork"] = True
    r = await call(http, "POST", "/api/v1/namespaces/open/pods", p)
    assert r.status == 201, r
    assert "Warning" not in r.headers


async def test_default_baseline_rejects_host_network_and_privileged(http: Any) -> None:
    p = pod("hn")
    p["spec"]["hostNetwork"] = True
    p["spec"]["containers"][0]["ports"] = [{"containerPort": 8080}]
    r = await call(http, "POST", "/api/v1/namespaces/default/pods", p)
    assert r.status == 403, r
    # hostNetwork defaults hostPort to the container port, as kube does before admission.
    assert r.json["message"] == (
        'pods "hn" is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true), '
        'hostPort (container "c" uses hostPort 8080)'
    )
    r = await call(http, "POST", "/api/v1/namespaces/default/pods", privileged_pod())
    assert r.status == 403
    assert r.json["message"] == (
        'pods "p" is forbidden: violates PodSecurity "baseline:latest": '
        'privileged (container "c" must not set securityContext.privileged=true)'
    )
    # A plain pod passes baseline (and gets no warning: warn defaults to privileged).
    r = await call(http, "POST", "/api/v1/namespaces/default/pods", pod("plain"))
    assert r.status == 201 and "Warning" not in r.headers


async def test_generated_name_is_in_the_message(http: Any) -> None:
    p = privileged_pod()
    del p["metadata"]["name"]
    p["metadata"]["generateName"] = "gen-"
    r = await call(http, "POST", "/api/v1/namespaces/default/pods", p)
    assert r.status == 403
    name = r.json["details"]["name"]
    assert name.startswith("gen-") and r.json["message"].startswith(f'pods "{name}" is forbidden: ')


async def test_kube_system_is_exempt(http: Any) -> None:
    r = await call(http, "POST", "/api/v1/namespaces/kube-system/pods", privileged_pod())
    assert r.status == 201, r


async def test_warn_label_sends_warning_header(http: Any) -> None:
    await make_ns(http, "warned", **{WARN: "restricted"})
    r = await call(http, "POST", "/api/v1/namespaces/warned/pods", pod("p"))
    assert r.status == 201, r
    text = RESTRICTED_MESSAGE.replace('pods "p" is forbidden: violates', "would violate")
    assert r.headers.getall("Warning") == [warning_value(text)]


async def test_versioned_labels_show_in_messages(http: Any) -> None:
    await make_ns(
        http, "v", **{ENFORCE: "baseline", "pod-security.kubernetes.io/enforce-version": "v1.30", WARN: "restricted",
                      "pod-security.kubernetes.io/warn-version": "v1.31"},
    )
    r = await call(http, "POST", "/api/v1/namespaces/v/pods", privileged_pod())
    assert r.status == 403 and 'violates PodSecurity "baseline:v1.30": privileged' in r.json["message"]
    r = await call(http, "POST", "/api/v1/namespaces/v/pods", pod("ok"))
    assert r.status == 201
    assert r.headers.getall("Warning")[0].startswith('299 - "would violate PodSecurity \\"restricted:v1.31\\": ')


async def test_workloads_get_warnings_not_rejections(http: Any) -> None:
    await make_ns(http, "apps", **{ENFORCE: "restricted", WARN: "restricted"})
    d = deployment("web")
    d["spec"]["template"]["spec"]["hostNetwork"] = True
    r = await call(http, "POST", "/apis/apps/v1/namespaces/apps/deployments", d)
    assert r.status == 201, r
    (warning,) = r.headers.getall("Warning")
    assert warning.startswith(
        '299 - "would violate PodSecurity \\"restricted:latest\\": host namespaces (hostNetwork=true), '
        "allowPrivilegeEscalation != false"
    )
    # Unlabelled namespace: warn is privileged by default, so the template is not reported.
    r = await call(http, "POST", "/apis/apps/v1/namespaces/default/deployments", d)
    assert r.status == 201 and "Warning" not in r.headers


async def test_labelling_namespace_warns_about_existing_pods(http: Any) -> None:
    await make_ns(http, "team")
    for name in ("b", "a"):
        assert (await call(http, "POST", "/api/v1/namespaces/team/pods", pod(name))).status == 201
    assert (await call(http, "POST", "/api/v1/namespaces/team/pods", restricted_pod("good"))).status == 201
    patch = {"metadata": {"labels": {ENFORCE: "restricted"}}}
    r = await call(http, "PATCH", "/api/v1/namespaces/team?dryRun=All", patch, ctype=CT_MERGE)
    assert r.status == 200, r
    expected = [
        warning_value(
            'existing pods in namespace "team" violate the new PodSecurity enforce level "restricted:latest"'
        ),
        warning_value(
            "a (and 1 other pod): allowPrivilegeEscalation != false, unrestricted capabilities, "
            "runAsNonRoot != true, seccompProfile"
        ),
    ]
    assert r.headers.getall("Warning") == expected
    r = await call(http, "PATCH", "/api/v1/namespaces/team", patch, ctype=CT_STRATEGIC)
    assert r.status == 200 and r.headers.getall("Warning") == expected
    assert r.json["metadata"]["labels"][ENFORCE] == "restricted"
    # Unchanged enforce level or a relaxed one: no pods are checked.
    r = await call(http, "PATCH", "/api/v1/namespaces/team", {"metadata": {"labels": {"x": "y"}}}, ctype=CT_MERGE)
    assert r.status == 200 and "Warning" not in r.headers
    r = await call(
        http, "PATCH", "/api/v1/namespaces/team", {"metadata": {"labels": {ENFORCE: "baseline"}}}, ctype=CT_MERGE
    )
    assert r.status == 200 and "Warning" not in r.headers


async def test_invalid_labels_are_rejected(http: Any) -> None:
    r = await call(http, "POST", "/api/v1/namespaces", {"metadata": {"name": "typo", "labels": {ENFORCE: "strict"}}})
    assert r.status == 422, r
    assert r.json["message"] == (
        'Namespace "typo" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: '
        'Invalid value: "strict": must be one of privileged, baseline, restricted'
    )
    await make_ns(http, "later")
    r = await call(
        http, "PATCH", "/api/v1/namespaces/later",
        {"metadata": {"labels": {"pod-security.kubernetes.io/warn-version": "1.30"}}}, ctype=CT_MERGE,
    )
    assert r.status == 422
    assert r.json["message"].endswith('Invalid value: "1.30": must be "latest" or "v1.x"')


async def test_ephemeral_containers_are_checked(http: Any) -> None:
    assert (await call(http, "POST", "/api/v1/namespaces/default/pods", pod("dbg"))).status == 201
    eph = {"spec": {"ephemeralContainers": [{
        "name": "debugger", "image": "busybox", "securityContext": {"privileged": True},
    }]}}
    r = await call(http, "PATCH", "/api/v1/namespaces/default/pods/dbg/ephemeralcontainers", eph, ctype=CT_STRATEGIC)
    assert r.status == 403, r
    assert r.json["message"] == (
        'pods "dbg" is forbidden: violates PodSecurity "baseline:latest": '
        'privileged (container "debugger" must not set securityContext.privileged=true)'
    )
    eph["spec"]["ephemeralContainers"][0].pop("securityContext")
    r = await call(http, "PATCH", "/api/v1/namespaces/default/pods/dbg/ephemeralcontainers", eph, ctype=CT_STRATEGIC)
    assert r.status == 200, r


async def test_pod_label_updates_are_not_rechecked(http: Any) -> None:
    await make_ns(http, "later")
    assert (await call(http, "POST", "/api/v1/namespaces/later/pods", pod("p"))).status == 201
    r = await call(http, "PATCH", "/api/v1/namespaces/later", {"metadata": {"labels": {ENFORCE: "restricted"}}},
                   ctype=CT_MERGE)
    assert r.status == 200
    r = await call(http, "PATCH", "/api/v1/namespaces/later/pods/p", {"metadata": {"labels": {"a": "b"}}},
                   ctype=CT_MERGE)
    assert r.status == 200, r  # existing pods keep running; metadata changes are not significant
    r = await call(http, "PATCH", "/api/v1/namespaces/later/pods/p",
                   {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}, ctype=CT_STRATEGIC)
    assert r.status == 403 and 'violates PodSecurity "restricted:latest"' in r.json["message"]


def test_official_client_sees_forbidden(kube: Any) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(kube)
    body = privileged_pod("k")
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_pod("default", body)
    assert exc.value.status == 403
    assert "violates PodSecurity" in exc.value.body


@pytest.fixture
def privileged_server(tmp_path: Path) -> Any:
    srv = ServerThread(tmp_path, pod_security_default="privileged")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


async def test_cluster_default_privileged(privileged_server: ServerThread) -> None:
    import aiohttp

    async with aiohttp.ClientSession(base_url=privileged_server.url) as session:
        p = privileged_pod()
        p["spec"]["hostNetwork"] = True
        r = await call(session, "POST", "/api/v1/namespaces/default/pods", p)
        assert r.status == 201, r
        await make_ns(session, "strict", **{ENFORCE: "baseline"})
        r = await call(session, "POST", "/api/v1/namespaces/strict/pods", privileged_pod("q"))
        assert r.status == 403


KUBECTL = shutil.which("kubectl")


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
async def test_kubectl_prints_warnings_and_forbidden(http: Any, server: ServerThread, tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: t\n"
        f"clusters: [{{name: t, cluster: {{server: '{server.url}'}}}}]\n"
        "users: [{name: t, user: {}}]\ncontexts: [{name: t, context: {cluster: t, user: t}}]\n"
    )
    env = {**os.environ, "HOME": str(tmp_path), "KUBECONFIG": str(config)}

    def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None
        return subprocess.run([KUBECTL, "--cache-dir", str(tmp_path / "cache"), *args], env=env,
                              capture_output=True, text=True, timeout=60)

    await make_ns(http, "team")
    assert (await call(http, "POST", "/api/v1/namespaces/team/pods", pod("web"))).status == 201
    out = kubectl("label", "ns", "team", "pod-security.kubernetes.io/enforce=restricted")
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == [
        'Warning: existing pods in namespace "team" violate the new PodSecurity enforce level "restricted:latest"',
        "Warning: web: allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, "
        "seccompProfile",
    ]
    out = kubectl("run", "p", "-n", "team", "--image=busybox", "--restart=Never")
    assert out.returncode == 1
    assert out.stderr.strip() == "Error from server (Forbidden): " + RESTRICTED_MESSAGE.replace('"c"', '"p"')
