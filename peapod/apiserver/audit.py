"""Audit log: every mutating request (who, what, when, result) as an ``audit.k8s.io/v1`` Event.

One JSON object per line, at kube's ``Metadata`` level (no request or response bodies), written to
``--audit-log PATH`` and rotated by size (``--audit-log-maxsize`` MB, ``--audit-log-maxbackup``
files kept as PATH.1 ... PATH.N). Like kube-apiserver's ``--audit-log-path`` with a policy of
``level: Metadata`` for the verbs create, update, patch, delete and deletecollection::

    {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": "...",
     "stage": "ResponseComplete", "requestURI": "/api/v1/namespaces/default/configmaps?...",
     "verb": "create", "user": {"username": "admin", "groups": ["system:masters"]},
     "sourceIPs": ["127.0.0.1"], "userAgent": "kubectl/v1.33.0 ...",
     "objectRef": {"resource": "configmaps", "namespace": "default", "name": "x", "apiVersion": "v1"},
     "responseStatus": {"metadata": {}, "code": 201},
     "requestReceivedTimestamp": "...", "stageTimestamp": "...",
     "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "..."}}

The middleware only formats the line and puts it on a queue; a logging ``QueueListener`` thread
does the file writes and rotations, so a slow disk never stalls the event loop. Requests refused by
authentication (401) or authorization (403) are recorded too (the middleware runs outermost).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import queue
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from peapod.apiserver.authz import DECISION, verb_for
from peapod.apiserver.requestinfo import parse_resource_path
from peapod.clock import Clock, rfc3339_micro

MUTATING = frozenset({"create", "update", "patch", "delete", "deletecollection"})
MAX_BODY_TO_PARSE = 1 << 20

Obj = dict[str, Any]


class _PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Rotating file handler whose files are created 0600 (the log names users and objects)."""

    def _open(self) -> Any:
        return open(
            self.baseFilename, self.mode, encoding=self.encoding, errors=self.errors,
            opener=lambda p, flags: os.open(p, flags, 0o600),
        )


class AuditLog:
    """A size-rotated file of audit events written by a background thread."""

    def __init__(self, path: Path, *, max_size_mb: float = 100.0, max_backups: int = 10) -> None:
        if max_size_mb < 0 or max_backups < 0:
            raise ValueError("audit log size and backup count must not be negative")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handler = _PrivateRotatingFileHandler(
            self.path, maxBytes=int(max_size_mb * 1024 * 1024), backupCount=max_backups, encoding="utf-8"
        )
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._listener = logging.handlers.QueueListener(self._queue, self._handler)
        self._running = False

    def start(self) -> None:
        self._listener.start()
        self._running = True

    def stop(self) -> None:
        """Write what is queued, then close the file."""
        if self._running:
            self._running = False
            self._listener.stop()
        self._handler.close()

    def record(self, event: Obj) -> None:
        """Queue one event (never blocks)."""
        line = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        self._queue.put_nowait(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))


def _name_from_body(resp: web.StreamResponse) -> str:
    """metadata.name of a JSON response (the object a POST created)."""
    body = getattr(resp, "body", None)
    if not isinstance(body, bytes | bytearray) or len(body) > MAX_BODY_TO_PARSE:
        return ""
    if not (resp.content_type or "").endswith("json"):
        return ""
    try:
        obj = json.loads(body)
    except ValueError:
        return ""
    name = (obj.get("metadata") or {}).get("name") if isinstance(obj, dict) else None
    return name if isinstance(name, str) else ""


def _status_from_body(resp: web.StreamResponse) -> Obj:
    """The bounded fields of a metav1.Status answer (kube's Metadata level keeps these)."""
    out: Obj = {"metadata": {}, "code": resp.status}
    body = getattr(resp, "body", None)
    if resp.status < 300 or not isinstance(body, bytes | bytearray) or len(body) > MAX_BODY_TO_PARSE:
        return out
    try:
        obj = json.loads(body)
    except ValueError:
        return out
    if isinstance(obj, dict) and obj.get("kind") == "Status":
        for k in ("status", "message", "reason", "details"):
            if obj.get(k):
                out[k] = obj[k]
    return out


def audit_event(request: web.Request, resp: web.StreamResponse | None, code: int, *, audit_id: str,
                received: str, completed: str) -> Obj | None:
    """The Event for one finished request, or None when it is not a mutating resource request."""
    info = parse_resource_path(request.path)
    if info is None:
        return None
    watch = info.watch_path or request.query.get("watch", "").lower() in ("1", "true")
    verb = verb_for(request.method, has_name=info.name is not None, watch=watch)
    if verb not in MUTATING:
        return None
    ref: Obj = {"resource": info.resource}
    if info.namespace:
        ref["namespace"] = info.namespace
    name = info.name or (_name_from_body(resp) if resp is not None and code < 300 else "")
    if name:
        ref["name"] = name
    if info.group:
        ref["apiGroup"] = info.group
    ref["apiVersion"] = info.version
    if info.subresource:
        ref["subresource"] = info.subresource
    user = request.get("user")
    event: Obj = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": audit_id,
        "stage": "ResponseComplete",
        "requestURI": request.raw_path,
        "verb": verb,
        "user": {k: user[k] for k in ("username", "uid", "groups", "extra") if user.get(k)} if user else {},
        "sourceIPs": [request.remote] if request.remote else [],
        "userAgent": request.headers.get("User-Agent", ""),
        "objectRef": ref,
        "responseStatus": _status_from_body(resp) if resp is not None else {"metadata": {}, "code": code},
        "requestReceivedTimestamp": received,
        "stageTimestamp": completed,
    }
    decision = request.get(DECISION)
    if decision is not None:
        event["annotations"] = {"authorization.k8s.io/decision": "allow" if decision.allowed else "forbid",
                                "authorization.k8s.io/reason": decision.reason}
    return event


def audit_middleware(audit: AuditLog, clock: Clock) -> Callable[[web.Request, Any], Awaitable[web.StreamResponse]]:
    """Record mutating requests; place it before authentication so refusals are recorded too."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        received = rfc3339_micro(clock.now())
        audit_id = request.headers.get("Audit-ID") or str(uuid.uuid4())
        resp: web.StreamResponse | None = None
        code = 500
        try:
            resp = await handler(request)
            code = resp.status
            if not resp.prepared:
                resp.headers["Audit-Id"] = audit_id
            return resp
        except web.HTTPException as e:
            code = e.status
            raise
        finally:
            event = audit_event(request, resp, code, audit_id=audit_id, received=received,
                                completed=rfc3339_micro(clock.now()))
            if event is not None:
                audit.record(event)

    return middleware
