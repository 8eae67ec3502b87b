"""Upstream Kubernetes object schemas (from the ``kubernetes-validate`` package).

They carry the field types, descriptions and the patch metadata (``x-kubernetes-patch-merge-key``,
``x-kubernetes-patch-strategy``, ``x-kubernetes-list-type``) that OpenAPI, ``kubectl explain``,
strategic merge patch, server-side apply and unknown-field detection all need.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

SCHEMA_VERSION = "v1.33.0-local"
REF_PREFIX = "#/$defs/"


@functools.cache
def definitions() -> dict[str, dict[str, Any]]:
    """All definitions by name (``io.k8s.api.core.v1.Pod``); refs are ``#/$defs/<name>``."""
    root = resources.files("kubernetes_validate") / "kubernetes-json-schema" / SCHEMA_VERSION
    with (root / "_definitions.json").open("rb") as f:
        return json.load(f)["$defs"]


@functools.cache
def _gvk_index() -> dict[tuple[str, str, str], str]:
    out: dict[tuple[str, str, str], str] = {}
    for name, d in definitions().items():
        for gvk in d.get("x-kubernetes-group-version-kind", ()):
            out.setdefault((gvk["group"], gvk["version"], gvk["kind"]), name)
    return out


def definition_name(group: str, version: str, kind: str) -> str | None:
    """Definition name for a kind, e.g. ("apps","v1","Deployment") -> io.k8s.api.apps.v1.Deployment."""
    return _gvk_index().get((group, version, kind))


def resolve(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """Follow ``$ref`` (and a single-element ``allOf``) to the referenced definition."""
    seen = 0
    while schema is not None and seen < 16:
        seen += 1
        if "$ref" in schema:
            ref = schema["$ref"]
            if not ref.startswith(REF_PREFIX):
                return schema
            schema = definitions().get(ref[len(REF_PREFIX):])
        elif "allOf" in schema and len(schema["allOf"]) == 1:
            schema = schema["allOf"][0]
        else:
            return schema
    return schema


def kind_schema(group: str, version: str, kind: str) -> dict[str, Any] | None:
    name = definition_name(group, version, kind)
    return definitions().get(name) if name else None


def types_of(schema: dict[str, Any]) -> set[str]:
    """JSON types a schema allows, without "null" (the converter marks most fields nullable)."""
    t = schema.get("type")
    if t is None:
        return set()
    if isinstance(t, str):
        return {t} - {"null"}
    return set(t) - {"null"}


def child(schema: dict[str, Any] | None, field: str) -> dict[str, Any] | None:
    """Schema of ``field`` inside an object schema (properties, then additionalProperties)."""
    schema = resolve(schema)
    if schema is None:
        return None
    props = schema.get("properties")
    if props and field in props:
        return props[field]
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        return extra
    return None


def items(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """Schema of the elements of an array schema."""
    schema = resolve(schema)
    if schema is None:
        return None
    it = schema.get("items")
    return it if isinstance(it, dict) else None
