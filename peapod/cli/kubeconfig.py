"""Kubeconfig files for the admin user (and later, nodes)."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import yaml


def make_kubeconfig(
    server: str, ca_pem: bytes, *, user: str = "admin", token: str | None = None,
    client_cert: bytes | None = None, client_key: bytes | None = None, name: str = "peapod",
) -> dict[str, Any]:
    creds: dict[str, Any] = {}
    if token:
        creds["token"] = token
    if client_cert and client_key:
        creds["client-certificate-data"] = base64.b64encode(client_cert).decode()
        creds["client-key-data"] = base64.b64encode(client_key).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": f"{name}-{user}", "user": creds}],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": f"{name}-{user}", "namespace": "default"}}
        ],
        "current-context": name,
        "preferences": {},
    }


def write_kubeconfig(path: Path, config: dict[str, Any]) -> None:
    """Write atomically with mode 0600 (it holds a credential)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    os.replace(tmp, path)
