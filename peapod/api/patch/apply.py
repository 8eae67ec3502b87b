"""Server-side apply (``application/apply-patch+yaml``).

structured-merge-diff's ``Updater.Apply`` under kube-apiserver's field manager: the applied
configuration is merged into the live object, the applier then owns exactly the fields it
applied, fields it applied last time and no longer does are removed unless someone else owns
them, and changing a field another manager owns is a 409 conflict unless ``force``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from peapod.api.errors import ApiError
from peapod.api.patch import fieldpath as fp
from peapod.api.patch import typed, typeinfo
from peapod.api.patch.errors import bad_request, unknown
from peapod.api.patch.fieldpath import FieldSet
from peapod.api.patch.managedfields import (
    APPLY,
    BEFORE_FIRST_APPLY,
    STRIPPED,
    UPDATE,
    Entry,
    Managed,
    api_version_of,
    comparable,
    decode_or_empty,
    identity,
    ignored_paths,
    update_sets,
    with_managed_fields,
    without_managed_fields,
)
from peapod.api.patch.typeinfo import Type

CONFLICT_CAUSE = "FieldManagerConflict"


def conflict_error(conflicts: dict[tuple[str, str, str, str], FieldSet], managed: Managed) -> ApiError:
    """409 Conflict exactly as kube-apiserver words it (``internal.NewConflictError``)."""
    pairs = []
    for key in sorted(conflicts):
        who = managed[key].describe()
        for path in sorted(conflicts[key], key=fp.path_order):
            pairs.append((who, fp.path_string(path)))
    causes = [
        {"reason": CONFLICT_CAUSE, "message": f"conflict with {who}", "field": path} for who, path in pairs
    ]
    if len(pairs) == 1:
        message = f"Apply failed with 1 conflict: conflict with {pairs[0][0]}: {pairs[0][1]}"
    else:
        lines: list[str] = []
        for who in sorted({w for w, _ in pairs}):
            lines.append(f"conflicts with {who}:")
            lines.extend(f"- {p}" for w, p in pairs if w == who)
        message = f"Apply failed with {len(pairs)} conflicts: " + "\n".join(lines)
    return ApiError(409, "Conflict", message, {"causes": causes})


def _gvk_string(group: str, version: str, kind: str) -> str:
    return f"{group}/{version}, Kind={kind}"


def _prune(merged: Any, managed: Managed, last: FieldSet, t: Type) -> Any:
    """Remove what the applier owned last time unless some manager (it included) owns it now."""
    owned: set[fp.Path] = set()
    for entry in managed.values():
        owned |= entry.fields
    last_named = fp.ensure_named_fields_are_members(last, t)
    owned_named = fp.ensure_named_fields_are_members(frozenset(owned), t)
    return typed.remove_items(merged, last_named - owned_named, t)


def _before_first_apply(
    live: dict[str, Any], t: Type, api_version: str, now: str, subresource: str, ignored: list[fp.Path]
) -> Entry | None:
    """An object nobody manages yet: its existing fields go to the "before-first-apply" updater."""
    comp = typed.compare(comparable({}, t), comparable(live, t), t).exclude(ignored)
    fields = fp.recursive_difference(frozenset(comp.added | comp.modified), ignored) - STRIPPED
    if not fields:
        return None
    return Entry(BEFORE_FIRST_APPLY, UPDATE, api_version, now, subresource, fields)


def server_side_apply(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    *,
    manager: str,
    force: bool,
    group: str,
    version: str,
    kind: str,
    now: str,
    subresource: str = "",
    reset_fields: Collection[str] | None = None,
) -> dict[str, Any]:
    """The object after ``manager`` applies ``applied`` to ``live`` (None: it does not exist yet).

    Returns the new object with ``metadata.managedFields`` updated. Raises ApiError: 400 when the
    configuration carries managedFields, 500 when it does not fit the schema (as kube-apiserver),
    409 on conflicts without ``force``.
    """
    if not isinstance(applied, dict):
        raise bad_request("error decoding YAML: the applied configuration must be an object")
    if (applied.get("metadata") or {}).get("managedFields"):
        raise bad_request("metadata.managedFields must be nil")
    t = typeinfo.root(group, version, kind)
    try:
        new_set = typed.field_set(applied, t, strict=True)
    except typed.TypedError as e:
        raise unknown(
            f"failed to create typed patch object ({_gvk_string(group, version, kind)}): {e}"
        ) from None
    api_version = api_version_of(group, version)
    live_v = without_managed_fields(live)
    managed = decode_or_empty(((live or {}).get("metadata") or {}).get("managedFields"))
    ignored = ignored_paths(reset_fields, subresource, live_v, applied)
    if live is not None and not managed:
        first = _before_first_apply(live_v, t, api_version, now, subresource, ignored)
        if first is not None:
            managed[first.identity] = first

    merged = typed.merge(live_v, without_managed_fields(applied), t)
    key = identity(manager, APPLY, api_version, subresource)
    previous = managed.get(key)
    managed[key] = Entry(
        manager,
        APPLY,
        api_version,
        previous.time if previous else None,
        subresource,
        fp.recursive_difference(new_set, ignored),
    )
    if previous is not None and previous.fields:
        merged = _prune(merged, managed, previous.fields, t)

    result, _, conflicts = update_sets(
        managed, comparable(live_v, t), comparable(merged, t), t, ignored, key, force
    )
    if conflicts and not force:
        raise conflict_error(conflicts, managed)
    mine = result[key].fields - STRIPPED if key in result else frozenset()
    changed = live is None or not typed.same(live_v, merged)
    if mine:
        time = now if changed or previous is None or not previous.time else previous.time
        result[key] = Entry(manager, APPLY, api_version, time, subresource, mine)
    else:
        result.pop(key, None)
    return with_managed_fields(merged, result)
