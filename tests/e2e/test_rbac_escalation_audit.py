"""RBAC escalation prevention with kubectl as a limited user, and the audit log of `peapod server`."""

from __future__ import annotations

import json
import os
import ssl
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from peapod.testing.cluster import PeapodCluster


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PeapodCluster]:
    """`peapod server` with an audit log rotated at 16 KB, two backups kept."""
    data = tmp_path_factory.mktemp("peapod")
    c = PeapodCluster(data, command="server", extra_args=[
        "--audit-log", str(data / "audit" / "audit.log"), "--audit-log-maxsize", "0.016",
        "--audit-log-maxbackup", "2",
    ])
    yield from running_cluster(c)


def running_cluster(c: PeapodCluster) -> Iterator[PeapodCluster]:
    c.start()
    try:
        yield c
    finally:
        code = c.stop()
        if code not in (0, None):
            print(c.log_tail())


def _eventually(run: Any, timeout: float = 10.0) -> Any:
    """Bindings reach the authorizer through a watch: retry briefly until the command succeeds."""
    deadline = time.monotonic() + timeout
    while True:
        res = run()
        if res.returncode == 0 or time.monotonic() > deadline:
            return res
        time.sleep(0.1)


def test_edit_user_cannot_grant_cluster_admin_but_can_bind_view(audited: PeapodCluster) -> None:
    k = audited.kubectl
    ns = f"esc-{os.getpid() % 10000}"
    k("create", "namespace", ns, check=True)
    k("-n", ns, "create", "serviceaccount", "dev", check=True)
    k("-n", ns, "create", "rolebinding", "dev-edit", "--clusterrole=edit", f"--serviceaccount={ns}:dev", check=True)
    # It may create bindings anywhere: what it may bind is the question.
    k("create", "clusterrole", f"binder-{ns}", "--verb=create,get",
      "--resource=clusterrolebindings.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io", check=True)
    k("create", "clusterrolebinding", f"binder-{ns}", f"--clusterrole=binder-{ns}", f"--serviceaccount={ns}:dev",
      check=True)
    token = k("-n", ns, "create", "token", "dev", check=True).stdout.strip()
    as_dev = ("--token", token)
    user = f"system:serviceaccount:{ns}:dev"

    res = _eventually(lambda: k(*as_dev, "-n", ns, "auth", "can-i", "create", "rolebindings"))
    assert res.stdout.strip() == "yes"
    res = k(*as_dev, "create", "clusterrolebinding", f"pwn-{ns}", "--clusterrole=cluster-admin",
            f"--serviceaccount={ns}:dev")
    assert res.returncode != 0
    assert res.stderr.startswith(
        f'error: failed to create clusterrolebinding: clusterrolebindings.rbac.authorization.k8s.io "pwn-{ns}" '
        f'is forbidden: user "{user}" (groups=["system:serviceaccounts" "system:serviceaccounts:{ns}" '
        '"system:authenticated"]) is attempting to grant RBAC permissions not currently held:\n'
    ), res.stderr
    assert '{APIGroups:["*"], Resources:["*"], Verbs:["*"]}' in res.stderr
    assert k("get", "clusterrolebinding", f"pwn-{ns}").returncode != 0
    # view is within edit in its namespace: binding it there works, cluster-wide it does not.
    k(*as_dev, "-n", ns, "create", "rolebinding", "viewers", "--clusterrole=view", "--user=intern", check=True)
    res = k(*as_dev, "create", "clusterrolebinding", f"view-all-{ns}", "--clusterrole=view", "--user=intern")
    assert res.returncode != 0 and "attempting to grant RBAC permissions not currently held" in res.stderr
    # A Role naming more than edit holds is refused too (here: a Role it may not even create).
    res = k(*as_dev, "-n", ns, "create", "role", "nodes", "--verb=get", "--resource=nodes")
    assert res.returncode != 0 and "Forbidden" in res.stderr
    # The admin (system:masters) may grant anything.
    k("-n", ns, "create", "rolebinding", "root", "--clusterrole=cluster-admin", "--user=intern", check=True)


def _events(audit_dir: Path) -> list[dict[str, Any]]:
    files = sorted(audit_dir.iterdir(), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


def _wait_events(audit_dir: Path, pred: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        got = [e for e in _events(audit_dir) if pred(e)]
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_audit_log_records_writes_and_rotates(audited: PeapodCluster) -> None:
    audit_dir = audited.data_dir / "audit"
    ns = f"aud-{os.getpid() % 10000}"
    audited.kubectl("create", "namespace", ns, check=True)
    audited.kubectl("-n", ns, "create", "configmap", "audited", "--from-literal=a=b", check=True)
    audited.kubectl("-n", ns, "get", "configmap", "audited", check=True)  # a read: not recorded
    audited.kubectl("-n", ns, "delete", "configmap", "audited", check=True)

    def about(e: dict[str, Any]) -> bool:
        ref = e.get("objectRef") or {}
        return ref.get("namespace") == ns and ref.get("resource") == "configmaps" and ref.get("name") == "audited"

    events = _wait_events(audit_dir, lambda e: about(e) and e["verb"] == "delete")
    events = [e for e in _events(audit_dir) if about(e)]
    assert [(e["verb"], e["responseStatus"]["code"]) for e in events] == [("create", 201), ("delete", 200)]
    create = events[0]
    assert create["apiVersion"] == "audit.k8s.io/v1" and create["kind"] == "Event" and create["level"] == "Metadata"
    assert create["user"]["username"] == "admin" and "system:masters" in create["user"]["groups"]
    assert create["userAgent"].startswith("kubectl")
    assert create["sourceIPs"] == ["127.0.0.1"]
    assert create["requestURI"].startswith(f"/api/v1/namespaces/{ns}/configmaps")
    assert create["annotations"]["authorization.k8s.io/decision"] == "allow"
    assert create["requestReceivedTimestamp"] <= create["stageTimestamp"]

    # A refused write is recorded with its 403.
    sa_token = audited.kubectl("-n", ns, "create", "token", "default", check=True).stdout.strip()
    res = audited.kubectl("--token", sa_token, "-n", ns, "create", "configmap", "nope")
    assert res.returncode != 0
    refused = _wait_events(audit_dir, lambda e: (e.get("objectRef") or {}).get("namespace") == ns
                           and e["responseStatus"]["code"] == 403)
    assert refused and refused[0]["user"]["username"] == f"system:serviceaccount:{ns}:default"
    assert refused[0]["annotations"]["authorization.k8s.io/decision"] == "forbid"

    # Rotation: ~40 more writes pass 16 KB; at most two old files are kept.
    ctx = ssl.create_default_context(cafile=str(audited.data_dir / "tls" / "ca.crt"))
    for i in range(40):
        body = json.dumps({"metadata": {"name": f"bulk-{i}"}, "data": {"k": "v"}}).encode()
        req = urllib.request.Request(
            f"{audited.url}/api/v1/namespaces/{ns}/configmaps", data=body, method="POST",
            headers={"Authorization": f"Bearer {audited.admin_token()}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            assert r.status == 201
    _wait_events(audit_dir, lambda e: (e.get("objectRef") or {}).get("name") == "bulk-39")
    names = sorted(p.name for p in audit_dir.iterdir())
    assert names == ["audit.log", "audit.log.1", "audit.log.2"], names
    assert all((audit_dir / n).stat().st_size <= 16 * 1024 + 4096 for n in names)
    assert all((audit_dir / n).stat().st_mode & 0o777 == 0o600 for n in names)
    bulk = [e["objectRef"]["name"] for e in _events(audit_dir) if e["objectRef"].get("name", "").startswith("bulk-")]
    assert bulk == sorted(bulk, key=lambda n: int(n.split("-")[1])) and bulk[-1] == "bulk-39"
