"""Payloads (path -> FileProjection) of configMap, secret, downwardAPI and projected volumes, as kubelet
builds them (pkg/volume/{configmap,secret,downwardapi,projected})."""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from typing import Any

from .downward import field_value, resource_field_value
from .types import DownwardValues, FileProjection, VolumeSources

DEFAULT_MODE = 0o644
DEFAULT_TOKEN_EXPIRATION = 3600


def _items_payload(kind: str, data: Mapping[str, bytes], items: list[Mapping[str, Any]] | None,
                   default_mode: int, optional: bool) -> dict[str, FileProjection]:
    if not items:
        return {k: FileProjection(v, default_mode) for k, v in data.items()}
    out: dict[str, FileProjection] = {}
    for ktp in items:
        key = ktp.get("key", "")
        if key not in data:
            if optional:
                continue
            raise ValueError(f"{kind} references non-existent {kind} key: {key}" if kind == "secret"
                             else f"configmap references non-existent config key: {key}")
        mode = ktp.get("mode")
        out[ktp.get("path", key)] = FileProjection(data[key], default_mode if mode is None else int(mode))
    return out


def configmap_data(cm: Mapping[str, Any]) -> dict[str, bytes]:
    data = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
    return data


def secret_data(secret: Mapping[str, Any]) -> dict[str, bytes]:
    data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    data.update({k: v.encode() for k, v in (secret.get("stringData") or {}).items()})
    return data


async def configmap_payload(src: Mapping[str, Any], namespace: str, sources: VolumeSources,
                            default_mode: int) -> dict[str, FileProjection]:
    name = src.get("name", "")
    optional = bool(src.get("optional"))
    cm = await sources.get_configmap(namespace, name)
    if cm is None:
        if not optional:
            raise ValueError(f'configmap "{name}" not found')
        cm = {}
    return _items_payload("configmap", configmap_data(cm), src.get("items"), default_mode, optional)


async def secret_payload(src: Mapping[str, Any], namespace: str, sources: VolumeSources,
                         default_mode: int, *, name_key: str = "secretName") -> dict[str, FileProjection]:
    name = src.get(name_key, "")
    optional = bool(src.get("optional"))
    secret = await sources.get_secret(namespace, name)
    if secret is None:
        if not optional:
            raise ValueError(f'secret "{name}" not found')
        secret = {}
    return _items_payload("secret", secret_data(secret), src.get("items"), default_mode, optional)


def downward_payload(items: list[Mapping[str, Any]], pod: Mapping[str, Any], values: DownwardValues,
                     default_mode: int) -> dict[str, FileProjection]:
    """kubelet's downwardapi.CollectData; every failing item is reported."""
    out: dict[str, FileProjection] = {}
    errors: list[str] = []
    for item in items:
        path = os.path.normpath(item.get("path", ""))
        mode = item.get("mode")
        data = b""
        try:
            if item.get("fieldRef"):
                data = field_value(pod, item["fieldRef"].get("fieldPath", ""), values).encode()
            elif item.get("resourceFieldRef"):
                data = resource_field_value(pod, item["resourceFieldRef"], values).encode()
        except ValueError as e:
            errors.append(str(e))
        out[path] = FileProjection(data, default_mode if mode is None else int(mode))
    if errors:
        raise ValueError(_aggregate(errors))
    return out


def _aggregate(errors: list[str]) -> str:
    """apimachinery's utilerrors.NewAggregate text."""
    if len(errors) == 1:
        return errors[0]
    return "[" + ", ".join(errors) + "]"


async def projected_payload(src: Mapping[str, Any], pod: Mapping[str, Any], sources: VolumeSources,
                            *, fs_group: int | None) -> dict[str, FileProjection]:
    default_mode = src.get("defaultMode")
    default_mode = DEFAULT_MODE if default_mode is None else int(default_mode)
    namespace = (pod.get("metadata") or {}).get("namespace", "default")
    out: dict[str, FileProjection] = {}
    errors: list[str] = []
    for source in src.get("sources") or []:
        try:
            if source.get("secret") is not None:
                out.update(await secret_payload(source["secret"], namespace, sources, default_mode,
                                                name_key="name"))
            elif source.get("configMap") is not None:
                out.update(await configmap_payload(source["configMap"], namespace, sources, default_mode))
            elif source.get("downwardAPI") is not None:
                out.update(downward_payload(source["downwardAPI"].get("items") or [], pod, sources.downward,
                                            default_mode))
            elif source.get("serviceAccountToken") is not None:
                tp = source["serviceAccountToken"]
                # With fsGroup the ownership pass widens 0600 to 0640, like kubelet.
                mode = 0o600 if fs_group is not None else default_mode
                token = await _token(sources, tp.get("audience") or None,
                                     int(tp.get("expirationSeconds") or DEFAULT_TOKEN_EXPIRATION))
                out[tp.get("path", "token")] = FileProjection(token.encode(), mode)
            elif source.get("clusterTrustBundle") is not None:
                errors.append("clusterTrustBundle projections are not supported")
        except ValueError as e:
            errors.append(str(e))
    if errors:
        raise ValueError(_aggregate(errors))
    return out


async def _token(sources: VolumeSources, audience: str | None, expiration: int) -> str:
    request = getattr(sources, "request_token", None)
    if request is None:
        raise ValueError("failed to fetch token: service account tokens are not available on this node")
    try:
        token = await request(audience, expiration)
    except Exception as e:  # the agent's TokenRequest failed: report it, keep the pod pending
        raise ValueError(f"failed to fetch token: {e}") from e
    if not token:
        raise ValueError("failed to fetch token: empty token")
    return token
