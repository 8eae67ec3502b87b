"""Kubeconfig files for the admin user, and ``peapod kubeconfig [--merge]``."""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import os
import sys
from collections.abc import Mapping
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


def default_merge_target(env: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    """Where kubectl reads its config: ``$KUBECONFIG``'s first file, else ``~/.kube/config``."""
    env = os.environ if env is None else env
    for part in env.get("KUBECONFIG", "").split(os.pathsep):
        if part.strip():
            return Path(part.strip()).expanduser()
    return (home or Path.home()) / ".kube" / "config"


def renamed(config: dict[str, Any], name: str) -> dict[str, Any]:
    """``config``'s current context alone, with its cluster, user and context named after ``name``
    (cluster ``name``, user ``name-admin``, context ``name``)."""
    ctx_name = config.get("current-context")
    contexts = config.get("contexts") or []
    ctx = next((c for c in contexts if c.get("name") == ctx_name), contexts[0] if contexts else None)
    if ctx is None:
        raise ValueError("the kubeconfig has no context")
    inner = dict(ctx.get("context") or {})
    cluster = next((c for c in config.get("clusters") or [] if c.get("name") == inner.get("cluster")), None)
    user = next((u for u in config.get("users") or [] if u.get("name") == inner.get("user")), None)
    if cluster is None or user is None:
        raise ValueError(f"context {ctx.get('name')!r} names a cluster or user the kubeconfig lacks")
    user_name = f"{name}-admin"
    inner.update(cluster=name, user=user_name)
    return {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": name, "cluster": copy.deepcopy(cluster["cluster"])}],
        "users": [{"name": user_name, "user": copy.deepcopy(user.get("user") or {})}],
        "contexts": [{"name": name, "context": inner}],
        "current-context": name,
        "preferences": {},
    }


def merge_kubeconfig(target: dict[str, Any] | None, source: dict[str, Any], *, name: str = "peapod",
                     set_current: bool = False) -> dict[str, Any]:
    """``target`` with ``source``'s context added under ``name``: entries of the same names are
    replaced, everything else is kept. The current context changes with ``set_current``, or when
    ``target`` had none."""
    entry = renamed(source, name)
    out = copy.deepcopy(target) if target else {}
    out.setdefault("apiVersion", "v1")
    out.setdefault("kind", "Config")
    for key in ("clusters", "users", "contexts"):
        new = entry[key][0]
        items = [i for i in out.get(key) or [] if i.get("name") != new["name"]]
        out[key] = [*items, new]
    if set_current or not out.get("current-context"):
        out["current-context"] = name
    out.setdefault("preferences", {})
    return out


def merge_into_file(path: Path, source: dict[str, Any], *, name: str = "peapod", set_current: bool = False) -> str:
    """Merge into the kubeconfig file at ``path`` (created if missing), mode 0600, atomically,
    keeping the owner of an existing file. Returns the current context afterwards."""
    path = path.resolve()  # a symlinked config is updated where it lives
    target: dict[str, Any] | None = None
    st = None
    if path.exists():
        st = path.stat()
        try:
            target = yaml.safe_load(path.read_text()) or None
        except yaml.YAMLError as e:
            raise ValueError(f"{path} is not valid YAML ({e.__class__.__name__}); fix or move it first") from None
        if target is not None and not isinstance(target, dict):
            raise ValueError(f"{path} is not a kubeconfig (not a mapping)")
    merged = merge_kubeconfig(target, source, name=name, set_current=set_current)
    write_kubeconfig(path, merged)
    if st is not None and (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
        with contextlib.suppress(OSError):
            os.chown(path, st.st_uid, st.st_gid)
    return str(merged["current-context"])


def run_kubeconfig(args: argparse.Namespace) -> int:
    """``peapod kubeconfig``: print the admin kubeconfig, or ``--merge`` it into kubectl's config."""
    from peapod.cli.main import CliError

    path = args.data_dir / "kubeconfig"
    if not path.exists():
        raise CliError(f"no kubeconfig in {args.data_dir}: start `peapod up --data-dir {args.data_dir}` first")
    name = args.context_name or "peapod"
    if not args.merge:
        if args.context_name or args.set_current:
            sys.stdout.write(yaml.safe_dump(renamed(yaml.safe_load(path.read_text()), name), sort_keys=False))
        else:
            sys.stdout.write(path.read_text())
        return 0
    target = Path(args.kubeconfig).expanduser() if args.kubeconfig else default_merge_target()
    try:
        current = merge_into_file(target, yaml.safe_load(path.read_text()), name=name, set_current=args.set_current)
    except (ValueError, OSError) as e:
        raise CliError(f"cannot merge into {target}: {e}") from None
    print(f"merged context {name!r} into {target} (current context: {current}); "
          f"try `kubectl --context {name} get nodes`")
    return 0
