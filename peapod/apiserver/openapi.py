"""OpenAPI v2 and v3 documents for the served resources, built from the upstream schemas.

kubectl reads them for ``explain``, for client-side apply's strategic merge patch metadata and to
decide whether the server validates fields itself (it looks for a ``fieldValidation`` query
parameter on the kind's ``patch`` operation, matched by ``x-kubernetes-group-version-kind``).

The schemas in :mod:`peapod.api.schema` went through a JSON-schema converter; :func:`to_openapi`
undoes that (nullable type lists, ``$defs`` refs, the apiVersion/kind enums, ``oneOf`` for
IntOrString/Quantity) so the result reads like kube-apiserver's own documents.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from peapod.api import schema
from peapod.api.resources import REGISTRY, Registry, ResourceInfo, Subresource

KUBE_VERSION = "v1.33.0"
META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_V2_REF = "#/definitions/"
_V3_REF = "#/components/schemas/"
_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_COMMON_DEFS = tuple(
    META + n
    for n in ("Status", "DeleteOptions", "WatchEvent", "Patch", "APIResourceList", "APIGroup", "APIGroupList")
)
_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)
_PRODUCES = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")
_CONNECT = ("exec", "attach", "portforward")


# -- schemas ------------------------------------------------------------------------------------


def to_openapi(node: Any, ref_prefix: str, *, v3: bool) -> Any:
    """Convert one JSON-schema node from :func:`schema.definitions` to an OpenAPI schema."""
    if isinstance(node, list):
        return [to_openapi(x, ref_prefix, v3=v3) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str) and value.startswith(schema.REF_PREFIX):
            out[key] = ref_prefix + value[len(schema.REF_PREFIX) :]
        elif key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            if types:
                out[key] = types[0]
        elif key == "properties":
            props = {}
            for name, sub in value.items():
                sub = to_openapi(sub, ref_prefix, v3=v3)
                if name in ("apiVersion", "kind") and isinstance(sub, dict):
                    sub.pop("enum", None)  # added by the converter, not in kube's documents
                props[name] = sub
            out[key] = props
        elif key.startswith("x-kubernetes-"):
            out[key] = value
        else:
            out[key] = to_openapi(value, ref_prefix, v3=v3)
    if "$ref" in out and len(out) > 1 and v3:
        # OpenAPI 3.0 ignores siblings of $ref; kube wraps the ref in allOf to keep the description.
        ref = out.pop("$ref")
        out = {"allOf": [{"$ref": ref}], **out}
        if "x-kubernetes-list-type" not in out and "x-kubernetes-map-type" not in out:
            out.setdefault("default", {})
    return out


def _definition(name: str, ref_prefix: str, *, v3: bool) -> dict[str, Any]:
    raw = schema.definitions()[name]
    # kube-openapi writes these two as a plain string in v2 and as oneOf in v3 (OpenAPIV3OneOfTypes);
    # kubectl explain then prints <IntOrString>/<Quantity> because the v3 schema has no single type.
    if name == _INT_OR_STRING:
        doc = raw.get("description", "IntOrString is a type that can hold an int32 or a string.")
        if v3:
            return {
                "description": doc,
                "format": "int-or-string",
                "oneOf": [{"type": "integer"}, {"type": "string"}],
            }
        return {"description": doc, "format": "int-or-string", "type": "string"}
    if name == _QUANTITY:
        doc = raw.get("description", "Quantity is a fixed-point representation of a number.")
        if v3:
            return {"description": doc, "oneOf": [{"type": "string"}, {"type": "number"}]}
        return {"description": doc, "type": "string"}
    return to_openapi(raw, ref_prefix, v3=v3)


def _refs(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(schema.REF_PREFIX):
            out.add(ref[len(schema.REF_PREFIX) :])
        for v in node.values():
            _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)


def reachable(roots: list[str]) -> list[str]:
    """Definition names reachable from ``roots`` through ``$ref``, sorted."""
    defs = schema.definitions()
    seen: set[str] = set()
    todo = [r for r in roots if r in defs]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        found: set[str] = set()
        _refs(defs[name], found)
        todo.extend(n for n in found if n in defs and n not in seen)
    return sorted(seen)


def _sub_gvk(r: ResourceInfo, s: Subresource) -> tuple[str, str, str]:
    if s.group or s.version:
        return s.group, s.version, s.kind
    return r.group, r.version, s.kind


def _roots(resources: list[ResourceInfo]) -> list[str]:
    roots = list(_COMMON_DEFS)
    for r in resources:
        for kind in (r.kind, r.list_kind):
            name = schema.definition_name(r.group, r.version, kind)
            if name:
                roots.append(name)
        for s in r.subresources:
            name = schema.definition_name(*_sub_gvk(r, s))
            if name:
                roots.append(name)
    return roots


# -- paths --------------------------------------------------------------------------------------

_QUERY_DOCS: dict[str, tuple[str, str]] = {
    "pretty": (
        "string",
        "If 'true', then the output is pretty printed. Defaults to 'false' unless the "
        "user-agent indicates a browser or command-line HTTP tool (curl and wget).",
    ),
    "dryRun": (
        "string",
        "When present, indicates that modifications should not be persisted. An invalid or "
        "unrecognized dryRun directive will result in an error response and no further processing "
        "of the request. Valid values are: - All: all dry run stages will be processed",
    ),
    "fieldManager": (
        "string",
        "fieldManager is a name associated with the actor or entity that is making "
        "these changes. The value must be less than or 128 characters long, and only contain "
        "printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.",
    ),
    "fieldValidation": (
        "string",
        "fieldValidation instructs the server on how to handle objects in the "
        "request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: "
        "- Ignore: This will ignore any unknown fields that are silently dropped from the "
        "object, and will ignore all but the last duplicate field that the decoder "
        "encounters. - Warn: This will send a warning via the standard warning response "
        "header for each unknown field that is dropped from the object, and for each "
        "duplicate field that is encountered. - Strict: This will fail the request with a "
        "BadRequest error if any unknown fields would be dropped from the object, or if "
        "any duplicate fields are present. The error returned from the server will contain "
        "all unknown and duplicate fields encountered.",
    ),
    "force": (
        "boolean",
        'Force is going to "force" Apply requests. It means user will re-acquire '
        "conflicting fields owned by other people. Force flag must be unset for non-apply patch "
        "requests.",
    ),
    "gracePeriodSeconds": (
        "integer",
        "The duration in seconds before the object should be deleted. Value "
        "must be non-negative integer. The value zero indicates delete immediately.",
    ),
    "propagationPolicy": (
        "string",
        "Whether and how garbage collection will be performed. Acceptable "
        "values are: 'Orphan', 'Background', 'Foreground'.",
    ),
    "labelSelector": (
        "string",
        "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
    ),
    "fieldSelector": (
        "string",
        "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
    ),
    "limit": ("integer", "limit is a maximum number of responses to return for a list call."),
    "continue": ("string", "The continue option should be set when retrieving more results from the server."),
    "resourceVersion": (
        "string",
        "resourceVersion sets a constraint on what resource versions a request may be served from.",
    ),
    "resourceVersionMatch": (
        "string",
        "resourceVersionMatch determines how resourceVersion is applied to list calls.",
    ),
    "sendInitialEvents": ("boolean", "`sendInitialEvents=true` may be set together with `watch=true`."),
    "timeoutSeconds": ("integer", "Timeout for the list/watch call."),
    "watch": (
        "boolean",
        "Watch for changes to the described resources and return them as a stream of add, "
        "update, and remove notifications.",
    ),
    "allowWatchBookmarks": ("boolean", 'allowWatchBookmarks requests watch events with type "BOOKMARK".'),
    "container": ("string", "The container for which to stream logs."),
    "follow": ("boolean", "Follow the log stream of the pod."),
    "previous": ("boolean", "Return previous terminated container logs."),
    "sinceSeconds": (
        "integer",
        "A relative time in seconds before the current time from which to show logs.",
    ),
    "tailLines": ("integer", "The number of lines from the end of the logs to show."),
    "timestamps": ("boolean", "If true, add an RFC3339 timestamp at the beginning of every line."),
    "limitBytes": (
        "integer",
        "The number of bytes to read from the server before terminating the log output.",
    ),
    "command": ("string", "Command is the remote command to execute. argv array."),
    "stdin": ("boolean", "Redirect the standard input stream of the pod for this call."),
    "stdout": ("boolean", "Redirect the standard output stream of the pod for this call."),
    "stderr": ("boolean", "Redirect the standard error stream of the pod for this call."),
    "tty": ("boolean", "TTY if true indicates that a tty will be allocated for the exec call."),
    "ports": ("integer", "List of ports to forward."),
}
_LIST_PARAMS = (
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
)
_WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation")
_DELETE_PARAMS = ("dryRun", "gracePeriodSeconds", "propagationPolicy")
_LOG_PARAMS = ("container", "follow", "limitBytes", "previous", "sinceSeconds", "tailLines", "timestamps")
_EXEC_PARAMS = ("command", "container", "stderr", "stdin", "stdout", "tty")


def _param(
    name: str, where: str, *, v3: bool, required: bool = False, description: str = ""
) -> dict[str, Any]:
    typ, doc = _QUERY_DOCS.get(name, ("string", description))
    p: dict[str, Any] = {"name": name, "in": where, "description": description or doc}
    if required:
        p["required"] = True
    shape: dict[str, Any] = {"type": typ}
    if typ == "string" and name not in ("name", "namespace"):
        shape["uniqueItems"] = True
    if v3:
        p["schema"] = shape
    else:
        p.update(shape)
    return p


def _path_params(named: bool, namespaced: bool, kind: str, *, v3: bool) -> list[dict[str, Any]]:
    out = []
    if named:
        out.append(_param("name", "path", v3=v3, required=True, description=f"name of the {kind}"))
    if namespaced:
        out.append(
            _param(
                "namespace",
                "path",
                v3=v3,
                required=True,
                description="object name and auth scope, such as for teams and projects",
            )
        )
    out.append(_param("pretty", "query", v3=v3))
    return out


class _Ops:
    """Builds operations in the v2 or v3 flavour."""

    def __init__(self, v3: bool) -> None:
        self.v3 = v3
        self.ref = _V3_REF if v3 else _V2_REF

    def schema_ref(self, name: str | None) -> dict[str, Any]:
        if name is None:
            return {"type": "string"}
        return {"$ref": self.ref + name}

    def op(
        self,
        *,
        action: str,
        op_id: str,
        description: str,
        tag: str,
        gvk: tuple[str, str, str] | None,
        params: tuple[str, ...] = (),
        body: str | None = None,
        body_types: tuple[str, ...] = ("*/*",),
        responses: dict[str, str | None],
        produces: tuple[str, ...] = _PRODUCES,
    ) -> dict[str, Any]:
        o: dict[str, Any] = {"description": description, "operationId": op_id, "tags": [tag]}
        plist = [_param(p, "query", v3=self.v3) for p in params]
        resp: dict[str, Any] = {}
        for code, def_name in responses.items():
            r: dict[str, Any] = {"description": _CODE_TEXT.get(code, "OK")}
            if self.v3:
                r["content"] = {m: {"schema": self.schema_ref(def_name)} for m in produces}
            else:
                r["schema"] = self.schema_ref(def_name)
            resp[code] = r
        resp["401"] = {"description": "Unauthorized"}
        if self.v3:
            if body is not None:
                o["requestBody"] = {
                    "content": {m: {"schema": self.schema_ref(body)} for m in body_types},
                    "required": True,
                }
        else:
            o["consumes"] = list(body_types)
            o["produces"] = list(produces)
            o["schemes"] = ["https"]
            if body is not None:
                plist.insert(
                    0, {"in": "body", "name": "body", "required": True, "schema": self.schema_ref(body)}
                )
        if plist:
            o["parameters"] = plist
        o["responses"] = resp
        o["x-kubernetes-action"] = action
        if gvk is not None:
            o["x-kubernetes-group-version-kind"] = {"group": gvk[0], "kind": gvk[2], "version": gvk[1]}
        return o


_CODE_TEXT = {"200": "OK", "201": "Created", "202": "Accepted"}


def _camel(s: str) -> str:
    return s[:1].upper() + s[1:]


def _group_ident(group: str) -> str:
    """``coordination.k8s.io`` -> ``Coordination``, core -> ``Core`` (operationIds and tags)."""
    if not group:
        return "Core"
    first = group.split(".")[0]
    return "".join(_camel(p) for p in first.split("-"))


def _tag(group: str, version: str) -> str:
    return f"{group.split('.')[0] if group else 'core'}_{version}"


def _root(group: str, version: str) -> str:
    return f"/apis/{group}/{version}" if group else f"/api/{version}"


def _resource_paths(r: ResourceInfo, ops: _Ops) -> dict[str, dict[str, Any]]:
    v3 = ops.v3
    kind_def = schema.definition_name(r.group, r.version, r.kind)
    list_def = schema.definition_name(r.group, r.version, r.list_kind)
    gvk = (r.group, r.version, r.kind)
    gid = _group_ident(r.group) + _camel(r.version)
    ns = "Namespaced" if r.namespaced else ""
    tag = _tag(r.group, r.version)
    base = _root(r.group, r.version) + ("/namespaces/{namespace}" if r.namespaced else "") + "/" + r.resource
    verbs = set(r.verbs)
    status = META + "Status"
    paths: dict[str, dict[str, Any]] = {}

    coll: dict[str, Any] = {}
    if "list" in verbs:
        coll["get"] = ops.op(
            action="list",
            op_id=f"list{gid}{ns}{r.kind}",
            tag=tag,
            gvk=gvk,
            description=f"list or watch objects of kind {r.kind}",
            params=_LIST_PARAMS,
            responses={"200": list_def},
        )
    if "create" in verbs:
        coll["post"] = ops.op(
            action="post",
            op_id=f"create{gid}{ns}{r.kind}",
            tag=tag,
            gvk=gvk,
            description=f"create a {r.kind}",
            params=_WRITE_PARAMS,
            body=kind_def,
            responses={"200": kind_def, "201": kind_def, "202": kind_def},
        )
    if "deletecollection" in verbs:
        coll["delete"] = ops.op(
            action="deletecollection",
            op_id=f"deletecollection{gid}{ns}{r.kind}",
            tag=tag,
            gvk=gvk,
            description=f"delete collection of {r.kind}",
            params=_DELETE_PARAMS + _LIST_PARAMS,
            body=META + "DeleteOptions",
            responses={"200": status},
        )
    if coll:
        coll["parameters"] = _path_params(False, r.namespaced, r.kind, v3=v3)
        paths[base] = coll

    item: dict[str, Any] = {}
    if "get" in verbs:
        item["get"] = ops.op(
            action="get",
            op_id=f"read{gid}{ns}{r.kind}",
            tag=tag,
            gvk=gvk,
            description=f"read the specified {r.kind}",
            responses={"200": kind_def},
        )
    if "update" in verbs:
        item["put"] = ops.op(
            action="put",
            op_id=f"replace{gid}{ns}{r.kind}",
            tag=tag,
            gvk=gvk,
            description=f"replace the specified {r.kind}",
            params=_WRITE_PARAMS,
            body=kind_def,
            responses={"200": kind_def, "201": kind_def},
        )
    if "delete" in verbs:
        item["delete"] = ops.op(
            action="delete",
            op_id=f"delete{gid}{ns}{r.kind}",
            tag=tag,
            gvk=gvk,
            description=f"delete a {r.kind}",
            params=_DELETE_PARAMS,
            body=META + "DeleteOptions",
            responses={"200": kind_def, "202": kind_def},
        )
    if "patch" in verbs:
        item["patch"] = _patch_op(
            ops, f"patch{gid}{ns}{r.kind}", f"partially update the specified {r.kind}", tag, gvk, kind_def
        )
    if item:
        item["parameters"] = _path_params(True, r.namespaced, r.kind, v3=v3)
        paths[base + "/{name}"] = item

    if r.namespaced and "list" in verbs:
        paths[_root(r.group, r.version) + "/" + r.resource] = {
            "get": ops.op(
                action="list",
                op_id=f"list{gid}{r.kind}ForAllNamespaces",
                tag=tag,
                gvk=gvk,
                description=f"list or watch objects of kind {r.kind}",
                params=_LIST_PARAMS,
                responses={"200": list_def},
            ),
            "parameters": [_param("pretty", "query", v3=v3)],
        }

    for s in r.subresources:
        sub = _subresource_path(r, s, ops, gid + ns, tag)
        if sub:
            sub["parameters"] = _path_params(True, r.namespaced, r.kind, v3=v3)
            paths[f"{base}/{{name}}/{s.name}"] = sub
    return paths


def _patch_op(
    ops: _Ops, op_id: str, description: str, tag: str, gvk: tuple[str, str, str], kind_def: str | None
) -> dict[str, Any]:
    return ops.op(
        action="patch",
        op_id=op_id,
        tag=tag,
        gvk=gvk,
        description=description,
        params=(*_WRITE_PARAMS, "force"),
        body=META + "Patch",
        body_types=_PATCH_TYPES,
        responses={"200": kind_def, "201": kind_def},
    )


def _subresource_path(r: ResourceInfo, s: Subresource, ops: _Ops, prefix: str, tag: str) -> dict[str, Any]:
    gvk = _sub_gvk(r, s)
    sub_def = schema.definition_name(*gvk)
    what = f"{r.kind}{_camel(s.name)}"
    verbs = set(s.verbs)
    out: dict[str, Any] = {}
    if s.name in _CONNECT:
        for method in ("get", "post"):
            out[method] = ops.op(
                action="connect",
                op_id=f"connect{_camel(method)}{prefix}{what}",
                tag=tag,
                gvk=gvk,
                description=f"connect {method.upper()} requests to {s.name} of {r.kind}",
                params=_EXEC_PARAMS if s.name != "portforward" else ("ports",),
                responses={"200": None},
                produces=("*/*",),
            )
        return out
    if s.name == "log":
        out["get"] = ops.op(
            action="get",
            op_id=f"read{prefix}{what}",
            tag=tag,
            gvk=gvk,
            description=f"read log of the specified {r.kind}",
            params=_LOG_PARAMS,
            responses={"200": None},
            produces=("text/plain", "application/json"),
        )
        return out
    if "get" in verbs:
        out["get"] = ops.op(
            action="get",
            op_id=f"read{prefix}{what}",
            tag=tag,
            gvk=gvk,
            description=f"read {s.name} of the specified {r.kind}",
            responses={"200": sub_def},
        )
    if "update" in verbs:
        out["put"] = ops.op(
            action="put",
            op_id=f"replace{prefix}{what}",
            tag=tag,
            gvk=gvk,
            description=f"replace {s.name} of the specified {r.kind}",
            params=_WRITE_PARAMS,
            body=sub_def,
            responses={"200": sub_def, "201": sub_def},
        )
    if "create" in verbs:
        out["post"] = ops.op(
            action="post",
            op_id=f"create{prefix}{what}",
            tag=tag,
            gvk=gvk,
            description=f"create {s.name} of a {r.kind}",
            params=_WRITE_PARAMS,
            body=sub_def,
            responses={"200": sub_def, "201": sub_def, "202": sub_def},
        )
    if "patch" in verbs:
        out["patch"] = _patch_op(
            ops,
            f"patch{prefix}{what}",
            f"partially update {s.name} of the specified {r.kind}",
            tag,
            gvk,
            sub_def,
        )
    return out


def _paths(resources: list[ResourceInfo], ops: _Ops) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for r in resources:
        paths.update(_resource_paths(r, ops))
    for gv in sorted({(r.group, r.version) for r in resources}):
        paths[_root(*gv) + "/"] = {
            "get": ops.op(
                action="",
                op_id=f"get{_group_ident(gv[0])}{_camel(gv[1])}APIResources",
                tag=_tag(*gv),
                gvk=None,
                description="get available resources",
                responses={"200": META + "APIResourceList"},
                produces=_PRODUCES[:2],
            ),
        }
        del paths[_root(*gv) + "/"]["get"]["x-kubernetes-action"]
    return dict(sorted(paths.items()))


# -- documents ----------------------------------------------------------------------------------

_SECURITY = {
    "BearerToken": {
        "description": "Bearer Token authentication",
        "in": "header",
        "name": "authorization",
        "type": "apiKey",
    }
}


def _dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=False).encode()


def _per_registry(fn):  # type: ignore[no-untyped-def]
    """Cache by registry identity (Registry is an unhashable dataclass)."""
    cache: dict[int, tuple[Registry, Any]] = {}

    @functools.wraps(fn)
    def wrapper(registry: Registry = REGISTRY):  # type: ignore[no-untyped-def]
        hit = cache.get(id(registry))
        if hit is None or hit[0] is not registry:
            hit = cache[id(registry)] = (registry, fn(registry))
        return hit[1]

    return wrapper


@_per_registry
def openapi_v2(registry: Registry = REGISTRY) -> bytes:
    """``GET /openapi/v2`` as JSON (swagger 2.0), built once."""
    resources = list(registry.resources)
    doc = {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": KUBE_VERSION},
        "paths": _paths(resources, _Ops(v3=False)),
        "definitions": {n: _definition(n, _V2_REF, v3=False) for n in reachable(_roots(resources))},
        "securityDefinitions": _SECURITY,
        "security": [{"BearerToken": []}],
    }
    return _dumps(doc)


def _v3_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


@_per_registry
def _v3_documents(registry: Registry = REGISTRY) -> dict[str, tuple[bytes, str]]:
    docs: dict[str, tuple[bytes, str]] = {}
    for group, version in registry.group_versions():
        resources = registry.in_group_version(group, version)
        doc = {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": KUBE_VERSION},
            "paths": _paths(resources, _Ops(v3=True)),
            "components": {
                "schemas": {n: _definition(n, _V3_REF, v3=True) for n in reachable(_roots(resources))},
                "securitySchemes": _SECURITY,
            },
            "security": [{"BearerToken": []}],
        }
        body = _dumps(doc)
        docs[_v3_path(group, version)] = (body, hashlib.sha512(body).hexdigest().upper()[:128])
    return docs


def openapi_v3_index(registry: Registry = REGISTRY) -> dict[str, Any]:
    """``GET /openapi/v3``: one entry per group/version, URL carrying the document's content hash."""
    return {
        "paths": {
            path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
            for path, (_, digest) in _v3_documents(registry).items()
        }
    }


def openapi_v3_document(path: str, registry: Registry = REGISTRY) -> bytes | None:
    """``GET /openapi/v3/<path>`` (``api/v1``, ``apis/apps/v1``), None when not served."""
    entry = _v3_documents(registry).get(path.strip("/"))
    return entry[0] if entry else None


def openapi_v3_hash(path: str, registry: Registry = REGISTRY) -> str | None:
    """Content hash of one v3 document (for ETag and immutable caching when ``?hash=`` matches)."""
    entry = _v3_documents(registry).get(path.strip("/"))
    return entry[1] if entry else None


# -- /openapi/v2 as protobuf --------------------------------------------------------------------

V2_PROTOBUF_ACCEPT = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
# What kube-apiserver answers with: Go's mime parser rejects the "@" form in a response.
V2_PROTOBUF_CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def wants_v2_protobuf(accept: str | None) -> bool:
    """client-go's ``OpenAPISchema()`` asks only for protobuf and cannot parse a JSON answer."""
    a = (accept or "").lower()
    return "com.github.proto-openapi.spec.v2" in a and "application/json" not in a


def openapi_v2_protobuf() -> bytes:
    """A gnostic ``openapi_v2.Document`` holding only ``swagger: "2.0"`` (field 1).

    kubectl 1.27/1.28 fetch ``/openapi/v2`` as protobuf before every ``create``/``apply``/``explain``
    and abort on a JSON body or a 404. They take field validation, ``explain`` and patch metadata from
    OpenAPI v3 (and built-in types' patch metadata from their compiled-in scheme), so an empty
    document is enough; clients that really want the v2 content get it as JSON from
    :func:`openapi_v2`.
    """
    value = b"2.0"
    return bytes([0x0A, len(value)]) + value
