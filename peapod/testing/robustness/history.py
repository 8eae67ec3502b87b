"""The client-side history of a robustness run: every request, every watch event, the final state.

Times are ``time.monotonic()`` seconds. ``outcome`` of a request is ``ok`` (2xx), ``fail`` (an answer
that proves nothing was written: 4xx, or the connection could not be made) or ``ambiguous`` (the
connection broke mid-request, it timed out, or a 5xx: the write may or may not have happened).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "scale", "rollout"})
Outcome = Literal["ok", "fail", "ambiguous"]


def digest(value: Any) -> str:
    """A short stable digest of a JSON value (request bodies, the content a client owns)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


# Labels and annotations the traffic sets on pods carry this prefix; only they count as pod content.
OWNED_PREFIX = "robustness.peapod.io/"


TEMPLATE_ANNOTATION = OWNED_PREFIX + "template"


def content_of(resource: str, obj: dict[str, Any] | None) -> dict[str, str]:
    """The fields of ``obj`` that only the traffic writes (so others' writes, defaulting and status do not
    change them): a ConfigMap's data, a Deployment's replicas and pod template name, a Pod's
    robustness labels and annotations."""
    if not obj:
        return {}
    md = obj.get("metadata") or {}
    if resource == "configmaps":
        return {"data": digest(obj.get("data") or {})}
    if resource == "deployments":
        spec = obj.get("spec") or {}
        tmpl = ((spec.get("template") or {}).get("metadata") or {}).get("annotations") or {}
        return {"replicas": str(spec.get("replicas", 1)), "template": str(tmpl.get(TEMPLATE_ANNOTATION))}
    if resource == "pods":
        owned = {k: v for part in ("labels", "annotations") for k, v in (md.get(part) or {}).items()
                 if k.startswith(OWNED_PREFIX)}
        return {"owned": digest(owned)}
    return {"object": digest(obj)}


@dataclass
class Op:
    """One request of one client and what came back."""

    client: int
    verb: str  # create | update | patch | delete | scale | rollout | get
    resource: str  # pods | configmaps | deployments
    namespace: str
    name: str
    body_digest: str
    start: float
    end: float = 0.0
    outcome: Outcome = "fail"
    code: int | None = None
    rv: int | None = None  # resourceVersion of the returned object
    uid: str | None = None
    sets: dict[str, str] | None = None  # the content fields a write sets (a create: all of them)
    seen: dict[str, str] | None = None  # content_of(the answer) when it carried the object
    error: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.resource, self.namespace, self.name)

    @property
    def is_write(self) -> bool:
        return self.verb in WRITE_VERBS


@dataclass
class WatchEvent:
    """One event a watcher received (``type`` ADDED/MODIFIED/DELETED) or a marker of its own:
    ``RELIST`` (a fresh list at ``rv``; ``items`` maps name -> rv), ``RECONNECT`` (a new watch from
    ``rv``), ``EXPIRED`` (410: history from ``rv`` is gone; a RELIST follows)."""

    type: str
    name: str
    rv: int
    time: float
    uid: str | None = None
    items: dict[str, int] | None = None


@dataclass
class WatchLog:
    watcher: int
    resource: str
    namespace: str
    events: list[WatchEvent] = field(default_factory=list)


@dataclass
class FinalObject:
    name: str
    rv: int
    uid: str
    fields: dict[str, str]


@dataclass
class FinalState:
    """What the API holds once faults have stopped and the cluster settled, per resource of the namespace."""

    revision: int  # the newest list resourceVersion the snapshot was read at
    objects: dict[str, dict[str, FinalObject]] = field(default_factory=dict)  # resource -> name -> object
    revisions: dict[str, int] = field(default_factory=dict)  # resource -> its list's resourceVersion


@dataclass
class FaultRecord:
    kind: str
    start: float
    end: float
    detail: str = ""


@dataclass
class History:
    seed: int
    namespace: str
    ops: list[Op] = field(default_factory=list)
    watches: list[WatchLog] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)
    final: FinalState | None = None

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=None))
