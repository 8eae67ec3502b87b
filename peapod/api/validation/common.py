"""Building blocks shared by the per-kind validators: field paths, error constructors that
errors.py lacks, Go-style value rendering, ObjectMeta and label-selector validation, semantic equality.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from peapod.api import errors as e
from peapod.api import names
from peapod.api.errors import FieldError
from peapod.api.quantity import canonical_quantity

NameFn = Callable[[str, bool], list[str]]

FIELD_IMMUTABLE = "field is immutable"
IS_NEGATIVE = "must be greater than or equal to 0"
FIELD_NOT_FOUND = "FieldValueNotFound"
MAX_SECRET_SIZE = 1024 * 1024
STANDARD_FINALIZERS = ("kubernetes", "orphan", "foregroundDeletion")


# -- paths ------------------------------------------------------------------------------------------


def child(path: str, *names_: str) -> str:
    for n in names_:
        path = f"{path}.{n}" if path else n
    return path


def index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def key(path: str, k: str) -> str:
    return f"{path}[{k}]"


# -- errors -----------------------------------------------------------------------------------------


@dataclass
class NotFoundError(FieldError):
    """field.NotFound: ``spec.containers[0].volumeMounts[0].name: Not found: "data"``."""

    def message(self) -> str:
        out = f"{self.field}: Not found: {_render(self.bad_value)}"
        return out + (f": {self.detail}" if self.detail else "")

    def cause(self) -> dict[str, Any]:
        msg = f"Not found: {_render(self.bad_value)}" + (f": {self.detail}" if self.detail else "")
        return {"reason": FIELD_NOT_FOUND, "message": msg, "field": self.field}


def _render(value: Any) -> str:
    return e._render(value)


def not_found(path: str, value: Any, detail: str = "") -> FieldError:
    return NotFoundError(FIELD_NOT_FOUND, path, detail, value, True)


def too_long_bytes(path: str, limit: int) -> FieldError:
    """field.TooLong with an omitted value: ``data: Too long: may not be more than 1048576 bytes``."""
    unit = "byte" if limit == 1 else "bytes"
    return FieldError(e.FIELD_TOO_LONG, path, f"may not be more than {limit} {unit}")


class GoValue:
    """A bad value that prints like Go's ``%#v`` (maps, structs) inside a field error."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"GoValue({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GoValue) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def go_quote(s: Any) -> str:
    return json.dumps(str(s), ensure_ascii=False)


def go_string_map(d: dict[str, Any] | None) -> GoValue:
    if d is None:
        return GoValue("map[string]string(nil)")
    return GoValue(
        "map[string]string{" + ", ".join(f"{go_quote(k)}:{go_quote(v)}" for k, v in sorted(d.items())) + "}"
    )


def go_string_slice(values: Iterable[Any] | None) -> GoValue:
    if values is None:
        return GoValue("[]string(nil)")
    return GoValue("[]string{" + ", ".join(go_quote(v) for v in values) + "}")


def go_label_selector(sel: dict[str, Any] | None) -> GoValue:
    if sel is None:
        return GoValue("(*v1.LabelSelector)(nil)")
    ml = sel.get("matchLabels")
    exprs = sel.get("matchExpressions")
    if exprs:
        parts = []
        for x in exprs:
            vals = x.get("values")
            parts.append(
                f"v1.LabelSelectorRequirement{{Key:{go_quote(x.get('key', ''))}, "
                f"Operator:{go_quote(x.get('operator', ''))}, Values:{go_string_slice(vals)}}}"
            )
        ex = "[]v1.LabelSelectorRequirement{" + ", ".join(parts) + "}"
    else:
        ex = "[]v1.LabelSelectorRequirement(nil)"
    return GoValue(f"v1.LabelSelector{{MatchLabels:{go_string_map(ml)}, MatchExpressions:{ex}}}")


def nonnegative(value: Any, path: str) -> list[FieldError]:
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        return [e.invalid(path, value, IS_NEGATIVE)]
    return []


def immutable(new: Any, old: Any, path: str) -> list[FieldError]:
    if not semantic_equal(new, old):
        return [e.invalid(path, new, FIELD_IMMUTABLE)]
    return []


def msgs_invalid(path: str, value: Any, msgs: list[str]) -> list[FieldError]:
    return [e.invalid(path, value, m) for m in msgs]


# -- small typed getters (bodies passed the decoder, but stay defensive) -----------------------------


def as_dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def as_str(v: Any) -> str:
    return v if isinstance(v, str) else ""


def as_int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


# -- semantic equality ------------------------------------------------------------------------------

_QUANTITY_PARENTS = ("limits", "requests", "capacity", "allocatable", "overhead")


def normalize(value: Any, parent: str = "") -> Any:
    """Canonical form for comparisons: nulls and empty lists dropped, quantities canonical.

    apimachinery's Semantic.DeepEqual treats nil and empty slices alike and compares quantities by
    value; this is its JSON-level equivalent.
    """
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            nv = normalize(v, k)
            if nv is None or nv == []:
                continue
            out[k] = nv
        return out
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def _normalize_quantities(value: Any, parent: str = "") -> Any:
    if isinstance(value, dict):
        if parent in _QUANTITY_PARENTS:
            out = {}
            for k, v in value.items():
                try:
                    out[k] = canonical_quantity(v)
                except ValueError:
                    out[k] = v
            return out
        return {k: _normalize_quantities(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalize_quantities(v) for v in value]
    return value


def semantic_equal(a: Any, b: Any) -> bool:
    return _normalize_quantities(normalize(a)) == _normalize_quantities(normalize(b))


# -- labels, annotations, selectors -----------------------------------------------------------------


def validate_labels(labels: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for k, v in sorted(as_dict(labels).items()):
        errs += msgs_invalid(path, k, names.is_qualified_name(k))
        errs += msgs_invalid(path, v, names.is_valid_label_value(as_str(v)))
    return errs


def validate_annotations(annotations: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    ann = as_dict(annotations)
    for k in sorted(ann):
        errs += msgs_invalid(path, k, names.is_qualified_name(k.lower()))
    if names.annotations_too_large(ann):
        errs.append(too_long_bytes(path, names.TOTAL_ANNOTATION_SIZE_LIMIT))
    return errs


def validate_label_selector(sel: Any, path: str) -> list[FieldError]:
    """metav1 validation.ValidateLabelSelector."""
    if sel is None:
        return []
    sel = as_dict(sel)
    errs = validate_labels(sel.get("matchLabels"), child(path, "matchLabels"))
    for i, req in enumerate(as_list(sel.get("matchExpressions"))):
        p = index(child(path, "matchExpressions"), i)
        req = as_dict(req)
        op = req.get("operator")
        values = as_list(req.get("values"))
        if op in ("In", "NotIn"):
            if not values:
                errs.append(
                    e.required(child(p, "values"), "must be specified when `operator` is 'In' or 'NotIn'")
                )
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.append(
                    e.forbidden(
                        child(p, "values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    )
                )
        else:
            errs.append(e.invalid(child(p, "operator"), op, "not a valid selector operator"))
        k = as_str(req.get("key"))
        errs += msgs_invalid(child(p, "key"), k, names.is_qualified_name(k))
        for j, v in enumerate(values):
            errs += msgs_invalid(index(child(p, "values"), j), v, names.is_valid_label_value(as_str(v)))
    return errs


# -- ObjectMeta -------------------------------------------------------------------------------------


def _validate_owner_references(refs: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    controller = ""
    for ref in as_list(refs):
        ref = as_dict(ref)
        api_version = as_str(ref.get("apiVersion"))
        version = api_version.split("/")[-1] if api_version else ""
        if not version:
            errs.append(e.invalid(child(path, "apiVersion"), api_version, "version must not be empty"))
        if not ref.get("kind"):
            errs.append(e.invalid(child(path, "kind"), as_str(ref.get("kind")), "must not be empty"))
        if not ref.get("name"):
            errs.append(e.invalid(child(path, "name"), as_str(ref.get("name")), "must not be empty"))
        if not ref.get("uid"):
            errs.append(e.invalid(child(path, "uid"), as_str(ref.get("uid")), "must not be empty"))
        if api_version == "v1" and ref.get("kind") == "Event":
            errs.append(
                e.invalid(
                    path,
                    GoValue("v1.OwnerReference{...}"),
                    "/v1, Kind=Event is disallowed from being an owner",
                )
            )
        if ref.get("controller") is True:
            current = f"{ref.get('kind', '')}/{ref.get('name', '')}"
            if controller:
                errs.append(
                    e.invalid(
                        path,
                        GoValue("[]v1.OwnerReference{...}"),
                        'Only one reference can have Controller set to true. Found "true" in '
                        f"references for {controller} and {current}",
                    )
                )
            else:
                controller = current
    return errs


def _validate_finalizers(finalizers: Any, path: str, kube: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    fins = [as_str(f) for f in as_list(finalizers)]
    for f in fins:
        errs += msgs_invalid(path, f, names.is_qualified_name(f))
    if "orphan" in fins and "foregroundDeletion" in fins:
        errs.append(
            e.invalid(
                path, go_string_slice(fins), "finalizer orphan and foregroundDeletion cannot be both set"
            )
        )
    if kube:
        for i, f in enumerate(fins):
            if "/" not in f and f not in STANDARD_FINALIZERS:
                errs.append(
                    e.invalid(
                        index(path, i),
                        f,
                        "name is neither a standard finalizer name nor is it fully qualified",
                    )
                )
    return errs


def validate_object_meta(
    meta: Any,
    namespaced: bool,
    name_fn: NameFn = names.name_is_dns_subdomain,
    path: str = "metadata",
    kube_finalizers: bool = True,
) -> list[FieldError]:
    """ValidateObjectMeta on create. A generateName without a generated name yet is accepted."""
    meta = as_dict(meta)
    errs: list[FieldError] = []
    gen = as_str(meta.get("generateName"))
    name = as_str(meta.get("name"))
    if gen:
        errs += msgs_invalid(child(path, "generateName"), gen, name_fn(gen, True))
    if not name:
        if not gen:
            errs.append(e.required(child(path, "name"), "name or generateName is required"))
    else:
        errs += msgs_invalid(child(path, "name"), name, name_fn(name, False))
    ns = as_str(meta.get("namespace"))
    if namespaced:
        if not ns:
            errs.append(e.required(child(path, "namespace")))
        else:
            errs += msgs_invalid(child(path, "namespace"), ns, names.name_is_dns_label(ns, False))
    elif ns:
        errs.append(e.forbidden(child(path, "namespace"), "not allowed on this type"))
    errs += nonnegative(meta.get("generation"), child(path, "generation"))
    errs += validate_labels(meta.get("labels"), child(path, "labels"))
    errs += validate_annotations(meta.get("annotations"), child(path, "annotations"))
    errs += _validate_owner_references(meta.get("ownerReferences"), child(path, "ownerReferences"))
    errs += _validate_finalizers(meta.get("finalizers"), child(path, "finalizers"), kube_finalizers)
    return errs


def validate_object_meta_update(
    new: Any, old: Any, path: str = "metadata", kube_finalizers: bool = True
) -> list[FieldError]:
    """ValidateObjectMetaUpdate. The caller fills resourceVersion for unconditional updates first."""
    new, old = as_dict(new), as_dict(old)
    errs: list[FieldError] = []
    if old.get("deletionTimestamp"):
        extra = sorted(set(as_list(new.get("finalizers"))) - set(as_list(old.get("finalizers"))))
        if extra:
            errs.append(
                e.forbidden(
                    child(path, "finalizers"),
                    "no new finalizers can be added if the object is being deleted, "
                    f"found new finalizers {go_string_slice(extra)}",
                )
            )
    if not new.get("resourceVersion"):
        errs.append(
            e.invalid(
                child(path, "resourceVersion"),
                as_str(new.get("resourceVersion")),
                "must be specified for an update",
            )
        )
    new_gen, old_gen = as_int(new.get("generation")) or 0, as_int(old.get("generation")) or 0
    if new_gen < old_gen:
        errs.append(e.invalid(child(path, "generation"), new_gen, "must not be decremented"))
    for f in (
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ):
        errs += immutable(new.get(f) or None, old.get(f) or None, child(path, f))
    errs += validate_labels(new.get("labels"), child(path, "labels"))
    errs += validate_annotations(new.get("annotations"), child(path, "annotations"))
    errs += _validate_owner_references(new.get("ownerReferences"), child(path, "ownerReferences"))
    errs += _validate_finalizers(new.get("finalizers"), child(path, "finalizers"), kube_finalizers)
    return errs
