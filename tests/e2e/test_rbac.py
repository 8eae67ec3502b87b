"""RBAC and service account tokens with the real kubectl against `peapod server`."""

from __future__ import annotations

import json
import os
import time

import pytest

from peapod.testing.cluster import PeapodCluster


def _eventually_ok(run, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    """Bindings reach the authorizer through a watch: retry a command briefly until it succeeds."""
    deadline = time.monotonic() + timeout
    while True:
        res = run()
        if res.returncode == 0 or time.monotonic() > deadline:
            return res
        time.sleep(0.1)


def _ns(cluster: PeapodCluster, name: str) -> str:
    name = f"{name}-{os.getpid() % 10000}"
    cluster.kubectl("create", "namespace", name, check=True)
    return name


def test_api_resources_lists_rbac(cluster: PeapodCluster) -> None:
    out = cluster.kubectl("api-resources", "--api-group=rbac.authorization.k8s.io", "-o", "name", check=True).stdout
    assert set(out.split()) == {
        "clusterrolebindings.rbac.authorization.k8s.io",
        "clusterroles.rbac.authorization.k8s.io",
        "rolebindings.rbac.authorization.k8s.io",
        "roles.rbac.authorization.k8s.io",
    }
    out = cluster.kubectl("get", "clusterroles", "-o", "name", check=True).stdout.split()
    assert {"clusterrole.rbac.authorization.k8s.io/cluster-admin", "clusterrole.rbac.authorization.k8s.io/view"} <= set(
        out
    )


@pytest.mark.parametrize("version", [None, "1.27"])
def test_service_account_with_role(cluster: PeapodCluster, version: str | None) -> None:
    def k(*args: str, check: bool = False):  # type: ignore[no-untyped-def]
        return cluster.kubectl(*args, version=version, check=check)

    tag = (version or "x").replace(".", "")
    ns, other = _ns(cluster, f"rbac{tag}"), _ns(cluster, f"other{tag}")
    k("-n", ns, "create", "serviceaccount", "sa", check=True)
    k("-n", ns, "create", "role", "pod-reader", "--verb=get", "--verb=list", "--resource=pods", check=True)
    k("-n", ns, "create", "rolebinding", "sa-reads", "--role=pod-reader", f"--serviceaccount={ns}:sa", check=True)
    rb = k("-n", ns, "get", "rolebinding", "sa-reads", "-o", "json", check=True).json()
    assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"}
    assert rb["subjects"] == [{"kind": "ServiceAccount", "name": "sa", "namespace": ns}]
    k("create", "clusterrole", f"ns-reader-{tag}", "--verb=get,list", "--resource=namespaces", check=True)
    k("create", "clusterrolebinding", f"ns-reader-{tag}", f"--clusterrole=ns-reader-{tag}", "--user=nobody", check=True)

    token = k("-n", ns, "create", "token", "sa", check=True).stdout.strip()
    assert token.count(".") == 2
    as_sa = ("--token", token)

    res = _eventually_ok(lambda: k(*as_sa, "-n", ns, "get", "pods"))
    assert res.returncode == 0, res.stderr
    assert "No resources found" in res.stderr
    res = k(*as_sa, "-n", other, "get", "pods")
    assert res.returncode != 0
    assert res.stderr.strip() == (
        f'Error from server (Forbidden): pods is forbidden: User "system:serviceaccount:{ns}:sa" cannot list '
        f'resource "pods" in API group "" in the namespace "{other}"'
    )
    res = k(*as_sa, "-n", ns, "delete", "pod", "x")
    assert "Forbidden" in res.stderr and 'cannot delete resource "pods"' in res.stderr

    # kubectl auth can-i, for the service account and for the admin.
    assert k(*as_sa, "-n", ns, "auth", "can-i", "list", "pods").stdout.strip() == "yes"
    res = k(*as_sa, "-n", other, "auth", "can-i", "list", "pods")
    assert res.stdout.strip() == "no" and res.returncode == 1
    assert k(*as_sa, "-n", ns, "auth", "can-i", "create", "pods").stdout.strip() == "no"
    assert k("-n", other, "auth", "can-i", "create", "pods").stdout.strip() == "yes"
    assert k("auth", "can-i", "*", "*").stdout.strip() == "yes"
    listed = k(*as_sa, "-n", ns, "auth", "can-i", "--list")
    assert listed.returncode == 0, listed.stderr
    assert any(line.split()[:1] == ["pods"] and "[get list]" in line for line in listed.stdout.splitlines()), (
        listed.stdout
    )


def test_token_of_deleted_service_account_is_refused(cluster: PeapodCluster) -> None:
    ns = _ns(cluster, "gone")
    cluster.kubectl("-n", ns, "create", "serviceaccount", "tmp", check=True)
    token = cluster.kubectl("-n", ns, "create", "token", "tmp", "--duration=20m", check=True).stdout.strip()
    assert cluster.kubectl("--token", token, "auth", "can-i", "create", "selfsubjectaccessreviews").returncode == 0
    cluster.kubectl("-n", ns, "delete", "serviceaccount", "tmp", check=True)
    res = cluster.kubectl("--token", token, "-n", ns, "get", "pods")
    assert "error: You must be logged in to the server (Unauthorized)" in res.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="runs pods: needs root")
def test_projected_service_account_token_in_a_pod(node_cluster: PeapodCluster) -> None:
    """The agent's TokenRequest (bound to the pod) passes the node rules; the token works until the pod goes."""
    import asyncio

    from peapod.testing.images import busybox_image, push_image
    from peapod.testing.registry import LoopbackRegistry

    c = node_cluster
    reg = LoopbackRegistry().start()
    try:
        asyncio.run(push_image(reg.ref("busybox", "1"), busybox_image()))
        ns = _ns(c, "proj")
        c.kubectl("-n", ns, "create", "serviceaccount", "runner", check=True)
        c.kubectl("-n", ns, "create", "rolebinding", "runner-view", "--clusterrole=view",
                  f"--serviceaccount={ns}:runner", check=True)
        pod = {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {
                "serviceAccountName": "runner",
                "terminationGracePeriodSeconds": 1,
                "containers": [{
                    "name": "c", "image": reg.ref("busybox", "1"), "command": ["sleep", "3600"],
                    "volumeMounts": [{"name": "sa", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                                      "readOnly": True}],
                }],
                "volumes": [{"name": "sa", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}]}}],
            },
        }
        c.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(pod), check=True)
        c.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/p", "--timeout=90s", check=True)
        token = c.kubectl("-n", ns, "exec", "p", "--", "cat",
                          "/var/run/secrets/kubernetes.io/serviceaccount/token", check=True).stdout.strip()
        res = _eventually_ok(lambda: c.kubectl("--token", token, "-n", ns, "get", "pods", "-o", "name"))
        assert res.stdout.strip() == "pod/p", res.stderr
        assert c.kubectl("--token", token, "-n", ns, "auth", "can-i", "delete", "pods").stdout.strip() == "no"
        c.kubectl("-n", ns, "delete", "pod", "p", "--wait=true", "--timeout=60s", check=True)
        res = c.kubectl("--token", token, "-n", ns, "get", "pods")
        assert "Unauthorized" in res.stderr
    finally:
        reg.stop()
