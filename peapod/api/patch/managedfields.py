"""``metadata.managedFields``: who owns which field, updated on every write.

Follows k8s.io/apiserver's field manager stack (FieldManager, managedFieldsUpdater,
stripMetaManager) over structured-merge-diff's ``Updater.update``: a write owned by manager M
("Update" operation) makes M own every field it added or changed, takes those fields away from
other managers, and drops removed fields from everyone. Server-side apply lives in
:mod:`peapod.api.patch.apply` and shares the pieces here.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from peapod.api import jsoncodec
from peapod.api.patch import fieldpath as fp
from peapod.api.patch import typed, typeinfo
from peapod.api.patch.fieldpath import FieldSet, Path
from peapod.api.patch.typeinfo import Type

APPLY = "Apply"
UPDATE = "Update"
FIELDS_V1 = "FieldsV1"
BEFORE_FIRST_APPLY = "before-first-apply"

# Never owned by anyone (stripMetaManager): removed from a manager's set, not recursively.
STRIPPED: FieldSet = frozenset(
    [
        fp.make_path("apiVersion"),
        fp.make_path("kind"),
        fp.make_path("metadata"),
        *(
            fp.make_path("metadata", f)
            for f in (
                "name",
                "namespace",
                "creationTimestamp",
                "selfLink",
                "uid",
                "clusterName",
                "generation",
                "managedFields",
                "resourceVersion",
            )
        ),
    ]
)

# Struct fields that Go holds by value, so an "empty" object of the kind already has them; used
# so that ownership of e.g. spec.template is not recorded as a new node (no "." in fieldsV1).
_BY_VALUE = ("metadata", "spec", "status", "template", "strategy", "updateStrategy", "jobTemplate")


@dataclass
class Entry:
    manager: str
    operation: str
    api_version: str
    time: str | None
    subresource: str
    fields: FieldSet

    @property
    def identity(self) -> tuple[str, str, str, str]:
        return identity(self.manager, self.operation, self.api_version, self.subresource)

    def describe(self) -> str:
        """The manager as kube-apiserver names it in conflicts (``printManager``)."""
        out = f'"{self.manager}"'
        if self.subresource:
            out += f' with subresource "{self.subresource}"'
        if self.operation == UPDATE:
            out += f" using {self.api_version}"
        return out

    def encode(self) -> dict[str, Any]:
        out: dict[str, Any] = {"manager": self.manager, "operation": self.operation}
        if self.api_version:
            out["apiVersion"] = self.api_version
        if self.time:
            out["time"] = self.time
        out["fieldsType"] = FIELDS_V1
        out["fieldsV1"] = fp.to_fields_v1(self.fields)
        if self.subresource:
            out["subresource"] = self.subresource
        return out


Managed = dict[tuple[str, str, str, str], Entry]


def identity(manager: str, operation: str, api_version: str, subresource: str) -> tuple[str, str, str, str]:
    """Appliers are one manager whatever apiVersion they used; updaters are one per apiVersion."""
    return (manager, operation, "" if operation == APPLY else api_version, subresource)


def decode(entries: Any) -> Managed:
    """Parse ``metadata.managedFields``; raises ValueError when it is malformed."""
    if entries is None:
        return {}
    if not isinstance(entries, list):
        raise ValueError("managedFields must be a list")
    out: Managed = {}
    for e in entries:
        if not isinstance(e, dict):
            raise ValueError("managedFields entries must be objects")
        if e.get("fieldsType") != FIELDS_V1:
            raise ValueError(f"invalid fieldsType {e.get('fieldsType')!r}")
        entry = Entry(
            manager=str(e.get("manager") or ""),
            operation=str(e.get("operation") or ""),
            api_version=str(e.get("apiVersion") or ""),
            time=e.get("time"),
            subresource=str(e.get("subresource") or ""),
            fields=fp.from_fields_v1(e.get("fieldsV1") or {}),
        )
        out[entry.identity] = entry
    return out


def decode_or_empty(entries: Any) -> Managed:
    try:
        return decode(entries)
    except ValueError:
        return {}


def encode(managed: Managed) -> list[dict[str, Any]]:
    """Entries in kube-apiserver's order: operation, time, manager, apiVersion, subresource."""
    entries = [e for e in managed.values() if e.fields]
    entries.sort(key=lambda e: (e.operation, e.time or "", e.manager, e.api_version, e.subresource))
    return [e.encode() for e in entries]


def is_reset(entries: Any) -> bool:
    """``managedFields: [{}]`` in a request clears all ownership."""
    return isinstance(entries, list) and len(entries) == 1 and entries[0] == {}


def api_version_of(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


# -- shared pieces ------------------------------------------------------------------------------


def without_managed_fields(obj: dict[str, Any] | None) -> dict[str, Any]:
    if obj is None:
        return {}
    out = dict(obj)
    meta = out.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        out["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return out


def with_managed_fields(obj: dict[str, Any], managed: Managed) -> dict[str, Any]:
    out = jsoncodec.clone(obj)
    meta = out.setdefault("metadata", {})
    encoded = encode(managed)
    if encoded:
        meta["managedFields"] = encoded
    else:
        meta.pop("managedFields", None)
    return out


def _zero(t: Type, depth: int = 0) -> dict[str, Any]:
    """The JSON of Go's zero value of a struct: by-value structs empty, required fields null."""
    r = typeinfo.schema.resolve(t) if t is not None else None
    props = (r or {}).get("properties") or {}
    out: dict[str, Any] = {}
    if depth > 4:
        return out
    for name in (r or {}).get("required") or ():
        if name in props:
            out[name] = typed.NULL
    for name in _BY_VALUE:
        if name in props:
            child = typeinfo.schema.resolve(props[name])
            if child and child.get("properties") and not typeinfo.map_is_atomic(props[name]):
                out[name] = _zero(props[name], depth + 1)
    return out


def _fill(obj: Any, zero: dict[str, Any]) -> Any:
    if not isinstance(obj, dict) or not zero:
        return obj
    out = dict(obj)
    for k, z in zero.items():
        if k not in out or out[k] is None:
            out[k] = _fill({}, z) if isinstance(z, dict) else z
        elif isinstance(out[k], dict) and isinstance(z, dict):
            out[k] = _fill(out[k], z)
    return out


def comparable(obj: dict[str, Any], t: Type) -> dict[str, Any]:
    """The object as Go sees it for comparisons: by-value structs are present even if empty."""
    return _fill(obj, _zero(t)) if t is not None else obj


def ignored_paths(
    reset_fields: Collection[str] | None, subresource: str, *objs: dict[str, Any]
) -> list[Path]:
    """Top-level fields whose ownership is not tracked (the strategy resets them)."""
    if reset_fields is not None:
        names = set(reset_fields)
    elif subresource == "status":
        names = {k for o in objs for k in o} - {"status"}
    else:
        names = {"status"}
    return [fp.make_path(n) for n in sorted(names)]


def update_sets(
    managed: Managed,
    old: Any,
    new: Any,
    t: Type,
    ignored: Iterable[Path],
    workflow: tuple[str, str, str, str],
    force: bool,
) -> tuple[Managed, typed.Comparison, dict[tuple[str, str, str, str], FieldSet]]:
    """structured-merge-diff ``Updater.update``: returns the new sets, the comparison, conflicts.

    With ``force`` the conflicting fields are taken from their owners; without it the caller
    raises on a non-empty conflict map (and the returned sets are unchanged).
    """
    comp = typed.compare(old, new, t).exclude(ignored)
    changed = frozenset(comp.modified | comp.added)
    removed = frozenset(comp.removed)
    conflicts: dict[tuple[str, str, str, str], FieldSet] = {}
    for key, entry in managed.items():
        if key == workflow:
            continue
        c = entry.fields & changed
        if c:
            conflicts[key] = c
    if conflicts and not force:
        return managed, comp, conflicts
    out: Managed = {}
    for key, entry in managed.items():
        fields = entry.fields
        if key != workflow:
            fields = fields - conflicts.get(key, frozenset()) - removed
        if fields:
            out[key] = Entry(
                entry.manager, entry.operation, entry.api_version, entry.time, entry.subresource, fields
            )
    return out, comp, conflicts


def _managers_for_update(old: dict[str, Any] | None, new: dict[str, Any], subresource: str) -> Managed:
    """decodeLiveOrNew: a request may set managedFields itself (``[{}]`` resets them)."""
    requested = (new.get("metadata") or {}).get("managedFields")
    live = ((old or {}).get("metadata") or {}).get("managedFields")
    if not subresource:
        if is_reset(requested):
            return {}
        try:
            managed = decode(requested)
        except ValueError:
            managed = {}
        if managed:
            return managed
    return decode_or_empty(live)


def update_managed_fields(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    *,
    manager: str,
    operation: str = UPDATE,
    api_version: str,
    now: str,
    group: str,
    version: str,
    kind: str,
    subresource: str = "",
    reset_fields: Collection[str] | None = None,
) -> dict[str, Any]:
    """``new`` with managedFields updated for a create (``old`` None), update or patch by ``manager``.

    ``api_version`` is recorded in the entry (e.g. "apps/v1"); ``group/version/kind`` pick the
    schema. ``reset_fields`` are top-level fields not tracked (default: status, or everything but
    status for the status subresource).
    """
    t = typeinfo.root(group, version, kind)
    managed = _managers_for_update(old, new, subresource)
    old_v = without_managed_fields(old)
    new_v = without_managed_fields(new)
    ignored = ignored_paths(reset_fields, subresource, old_v, new_v)
    workflow = ("current-operation", UPDATE, "", "")
    managed, comp, _ = update_sets(
        managed, comparable(old_v, t), comparable(new_v, t), t, ignored, workflow, force=True
    )
    taken = fp.recursive_difference(frozenset(comp.modified | comp.added), ignored) - STRIPPED
    if taken:
        key = identity(manager, operation, api_version, subresource)
        previous = managed.get(key)
        fields = taken | previous.fields if previous else taken
        managed[key] = Entry(manager, operation, api_version, now, subresource, fields)
    return with_managed_fields(new_v, managed)
