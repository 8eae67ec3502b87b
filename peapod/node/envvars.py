"""A container's environment, by kubelet's rules (makeEnvironmentVariables), as a pure function.

Order of evaluation: ``envFrom`` sources in order (a later key overrides an earlier one), then
``env`` in order. Only ``env[].value`` is expanded: ``$(VAR)`` refers to variables defined before it
(from envFrom or earlier env entries), ``$$`` escapes ``$``, and an unknown ``$(VAR)`` stays as is.
The ConfigMaps and Secrets a container refers to are fetched by the caller first
(:func:`referenced_objects`), so this module does no I/O.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from peapod.node.volumes.downward import field_value, find_container, resource_value
from peapod.node.volumes.subpath import expand
from peapod.node.volumes.types import DownwardValues

Obj = Mapping[str, Any]


class EnvError(Exception):
    """The environment cannot be built; kubelet reports CreateContainerConfigError with this text."""

    reason = "CreateContainerConfigError"


@dataclass(frozen=True)
class EnvSources:
    """What the environment may draw on: API objects by name (None = does not exist)."""

    configmaps: Mapping[str, Obj | None] = field(default_factory=dict)
    secrets: Mapping[str, Obj | None] = field(default_factory=dict)
    downward: DownwardValues = field(default_factory=DownwardValues)
    service_env: Mapping[str, str] = field(default_factory=dict)


def referenced_objects(container: Obj) -> tuple[set[str], set[str]]:
    """(ConfigMap names, Secret names) that ``container``'s env and envFrom refer to."""
    cms: set[str] = set()
    secrets: set[str] = set()
    for src in container.get("envFrom") or []:
        if src.get("configMapRef"):
            cms.add(src["configMapRef"].get("name", ""))
        if src.get("secretRef"):
            secrets.add(src["secretRef"].get("name", ""))
    for e in container.get("env") or []:
        vf = e.get("valueFrom") or {}
        if vf.get("configMapKeyRef"):
            cms.add(vf["configMapKeyRef"].get("name", ""))
        if vf.get("secretKeyRef"):
            secrets.add(vf["secretKeyRef"].get("name", ""))
    return cms, secrets


def _configmap_data(cm: Obj) -> dict[str, str]:
    out = dict(cm.get("data") or {})
    for k, v in (cm.get("binaryData") or {}).items():
        out.setdefault(k, base64.b64decode(v).decode(errors="replace"))
    return out


def _secret_data(secret: Obj) -> dict[str, str]:
    out = {k: base64.b64decode(v).decode(errors="replace") for k, v in (secret.get("data") or {}).items()}
    out.update(secret.get("stringData") or {})
    return out


def _valid_name(name: str) -> bool:
    # Kubernetes 1.30+ (RelaxedEnvironmentVariableValidation): printable ASCII without '='
    return bool(name) and "=" not in name and all(32 <= ord(c) <= 126 for c in name)


def expand_with(env: Mapping[str, str], *more: Mapping[str, str]) -> Callable[[str], str]:
    """kubelet's expansion.MappingFuncFor: the first map holding the name wins; unknown -> ``$(NAME)``."""
    maps = (env, *more)

    def lookup(name: str) -> str:
        for m in maps:
            if name in m:
                return m[name]
        return f"$({name})"

    return lookup


def build_env(pod: Obj, container: Obj, sources: EnvSources) -> list[tuple[str, str]]:
    """The container's variables in definition order (image env is merged in by containerconfig)."""
    namespace = (pod.get("metadata") or {}).get("namespace", "default")
    env: dict[str, str] = {}
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix") or ""
        if src.get("configMapRef"):
            ref = src["configMapRef"]
            name = ref.get("name", "")
            cm = sources.configmaps.get(name)
            if cm is None:
                if ref.get("optional"):
                    continue
                raise EnvError(f'configmap "{name}" not found')
            data = _configmap_data(cm)
        elif src.get("secretRef"):
            ref = src["secretRef"]
            name = ref.get("name", "")
            secret = sources.secrets.get(name)
            if secret is None:
                if ref.get("optional"):
                    continue
                raise EnvError(f'secret "{name}" not found')
            data = _secret_data(secret)
        else:
            continue
        for k, v in data.items():
            key = prefix + k
            if _valid_name(key):  # kubelet skips invalid keys (and records an event)
                env[key] = v
    for e in container.get("env") or []:
        name = e.get("name", "")
        if "valueFrom" not in e or e.get("valueFrom") is None:
            env[name] = expand(e.get("value") or "", expand_with(env, sources.service_env))
            continue
        vf = e["valueFrom"]
        if vf.get("fieldRef"):
            try:
                env[name] = field_value(pod, vf["fieldRef"].get("fieldPath", ""), sources.downward)
            except ValueError as err:
                raise EnvError(str(err)) from None
        elif vf.get("resourceFieldRef"):
            sel = vf["resourceFieldRef"]
            target = container
            if sel.get("containerName") and sel["containerName"] != container.get("name"):
                try:
                    target = find_container(pod, sel["containerName"])
                except ValueError as err:
                    raise EnvError(str(err)) from None
            try:
                env[name] = resource_value(sel, target, sources.downward.node_allocatable)
            except ValueError as err:
                raise EnvError(str(err)) from None
        elif vf.get("configMapKeyRef"):
            ref = vf["configMapKeyRef"]
            cm_name, key = ref.get("name", ""), ref.get("key", "")
            cm = sources.configmaps.get(cm_name)
            if cm is None:
                if ref.get("optional"):
                    continue
                raise EnvError(f'configmap "{cm_name}" not found')
            data = _configmap_data(cm)
            if key not in data:
                if ref.get("optional"):
                    continue
                raise EnvError(f"couldn't find key {key} in ConfigMap {namespace}/{cm_name}")
            env[name] = data[key]
        elif vf.get("secretKeyRef"):
            ref = vf["secretKeyRef"]
            s_name, key = ref.get("name", ""), ref.get("key", "")
            secret = sources.secrets.get(s_name)
            if secret is None:
                if ref.get("optional"):
                    continue
                raise EnvError(f'secret "{s_name}" not found')
            data = _secret_data(secret)
            if key not in data:
                if ref.get("optional"):
                    continue
                raise EnvError(f"couldn't find key {key} in Secret {namespace}/{s_name}")
            env[name] = data[key]
    for k, v in sources.service_env.items():  # service links never override defined variables
        env.setdefault(k, v)
    return list(env.items())


def merge_image_env(image_env: list[str] | tuple[str, ...], env: list[tuple[str, str]]) -> list[str]:
    """Image ``Env`` first, then the container's variables; a container variable replaces the
    image's one of the same name in place (containerd's WithEnv)."""
    order: dict[str, str] = {}
    for item in image_env:
        k, _, v = item.partition("=")
        order[k] = v
    for k, v in env:
        order[k] = v
    return [f"{k}={v}" for k, v in order.items()]
