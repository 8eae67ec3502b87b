"""Content negotiation: request bodies in (JSON, YAML, protobuf) and responses out (JSON, YAML).

Every decoding failure becomes a 4xx Status with a message like kube-apiserver's; nothing a client
sends can raise anything else.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web

from peapod.api import errors, jsoncodec
from peapod.apiserver.limits import MAX_BODY_BYTES, depth_exceeds

JSON = "application/json"
YAML = "application/yaml"
PROTOBUF = "application/vnd.kubernetes.protobuf"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)


@dataclass
class Decoded:
    value: Any
    duplicates: list[str]


def media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def media_ranges(accept: str | None) -> list[tuple[str, dict[str, str]]]:
    """Accept header as (type, params) pairs in preference order (q=0 dropped)."""
    out: list[tuple[str, dict[str, str], float]] = []
    for part in (accept or "").split(","):
        fields = [f.strip() for f in part.split(";")]
        if not fields[0]:
            continue
        params: dict[str, str] = {}
        for f in fields[1:]:
            k, _, v = f.partition("=")
            params[k.strip().lower()] = v.strip().strip('"')
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 1.0
        if q > 0:
            out.append((fields[0].lower(), params, q))
    out.sort(key=lambda r: -r[2])
    return [(t, p) for t, p, _ in out]


async def read_body(request: web.Request) -> bytes:
    """The request body, refusing more than MAX_BODY_BYTES with 413."""
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise errors.too_large()
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.content.iter_chunked(65536):
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            raise errors.too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # as Go's decoder: "1e400" does not fit a float64
        raise ValueError(f"cannot unmarshal number {text} into a 64-bit float: value out of range")
    return value


def parse_json(raw: bytes, what: str = "couldn't get version/kind; json parse error") -> Decoded:
    dups: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out:
                dups.append(k)
            out[k] = v
        return out

    try:
        text = raw.decode("utf-8")
        value = json.loads(text, object_pairs_hook=pairs, parse_constant=_reject_constant,
                           parse_float=_finite_float)
    except RecursionError:
        raise errors.bad_request(f"{what}: exceeded max depth") from None
    except UnicodeDecodeError:
        raise errors.bad_request(f"{what}: invalid UTF-8 in request body") from None
    except (ValueError, TypeError) as e:
        raise errors.bad_request(f"{what}: {e}") from None
    if depth_exceeds(value):
        raise errors.bad_request(f"{what}: exceeded max depth")
    return Decoded(value, dups)


class _NoAliasLoader(yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader):  # type: ignore[misc]
    """Safe YAML without anchors/aliases (no billion-laughs expansion)."""


def parse_yaml(raw: bytes, what: str = "error converting YAML to JSON") -> Decoded:
    try:
        text = raw.decode("utf-8")
        if "*" in text or "&" in text:
            # Compose first to refuse aliases before any expansion can happen.
            for event in yaml.parse(text, Loader=yaml.SafeLoader):
                if isinstance(event, yaml.AliasEvent):
                    raise yaml.YAMLError("yaml: aliases are not supported")
        docs = list(yaml.load_all(text, Loader=_NoAliasLoader))
    except RecursionError:
        raise errors.bad_request(f"{what}: exceeded max depth") from None
    except UnicodeDecodeError:
        raise errors.bad_request(f"{what}: invalid UTF-8 in request body") from None
    except (yaml.YAMLError, ValueError, TypeError) as e:
        raise errors.bad_request(
            f"{what}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None
    docs = [d for d in docs if d is not None]
    if len(docs) > 1:
        raise errors.bad_request(f"{what}: multiple YAML documents in one request are not supported")
    value = docs[0] if docs else None
    if depth_exceeds(value):
        raise errors.bad_request(f"{what}: exceeded max depth")
    try:
        # Round-trip through JSON: YAML timestamps, sets and binary become JSON-compatible or fail.
        value = json.loads(json.dumps(value, default=_yaml_scalar))
    except (ValueError, TypeError, RecursionError) as e:
        raise errors.bad_request(f"{what}: {e}") from None
    return Decoded(value, [])


def _yaml_scalar(v: Any) -> Any:
    import datetime as dt

    if isinstance(v, dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=dt.UTC)
        return v.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, bytes):
        import base64

        return base64.b64encode(v).decode()
    raise TypeError(f"unsupported YAML value of type {type(v).__name__}")


def decode_object(raw: bytes, content_type: str | None) -> Decoded:
    """A create/update body as a JSON value (JSON, YAML or protobuf)."""
    mtype = media_type(content_type) or JSON
    if mtype in (JSON, "*/*"):
        return parse_json(raw)
    if mtype in (YAML, "application/x-yaml", "text/yaml"):
        return parse_yaml(raw)
    if mtype == PROTOBUF:
        return Decoded(_decode_protobuf(raw), [])
    raise errors.unsupported_media_type(mtype)


def _decode_protobuf(raw: bytes) -> Any:
    try:
        from peapod.apiserver.protobuf import decode_protobuf
    except ImportError:  # pragma: no cover - module written by another part of the project
        raise errors.unsupported_media_type(PROTOBUF) from None
    try:
        value = decode_protobuf(raw)
    except errors.ApiError:
        raise
    except Exception as e:  # malformed protobuf of any kind is the client's fault
        raise errors.bad_request(f"failed to decode protobuf body: {e}") from None
    if depth_exceeds(value):
        raise errors.bad_request("failed to decode protobuf body: exceeded max depth")
    return value


# -- responses ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Output:
    """What the client asked to get back."""

    yaml: bool = False
    as_kind: str = ""  # "", "Table", "PartialObjectMetadata", "PartialObjectMetadataList"
    as_version: str = "v1"


def negotiate_output(accept: str | None) -> Output:
    for mtype, params in media_ranges(accept) or [(JSON, {})]:
        as_kind = params.get("as", "")
        if as_kind:
            if params.get("g", "") != "meta.k8s.io" or mtype != JSON:
                continue
            if as_kind not in ("Table", "PartialObjectMetadata", "PartialObjectMetadataList"):
                continue
            version = params.get("v", "v1")
            if version not in ("v1", "v1beta1"):
                continue
            return Output(False, as_kind, version)
        if mtype in (JSON, "application/*", "*/*", PROTOBUF, "application/json-seq"):
            return Output()
        if mtype in (YAML, "application/x-yaml", "text/yaml"):
            return Output(yaml=True)
    return Output()


def dumps(obj: Any) -> bytes:
    return jsoncodec.dumps(obj)


def encode(obj: Any, out: Output) -> tuple[bytes, str]:
    if out.yaml:
        return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True).encode(), YAML
    if out.as_kind:
        return dumps(obj), f"{JSON};as={out.as_kind};v={out.as_version};g=meta.k8s.io"
    return dumps(obj), JSON


def respond(obj: Any, out: Output, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    body, ctype = encode(obj, out)
    resp = web.Response(body=body, status=status, headers=headers)
    resp.headers["Content-Type"] = ctype
    return resp


def status_response(err: errors.ApiError) -> web.Response:
    resp = web.Response(body=dumps(err.status()), status=err.code, headers=err.headers or None)
    resp.headers["Content-Type"] = JSON
    return resp
