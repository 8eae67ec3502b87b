"""Label and field selectors, parsed and matched as apimachinery does.

Label selectors: ``parse_label_selector("app=web,tier in (a,b),!canary")`` and
``label_selector_from_api(spec.selector)``. Field selectors: ``parse_field_selector`` plus the
per-resource selectable fields (``field_set``) and the field-label check the API server runs on list
and watch (``check_field_selector``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peapod.api import names
from peapod.api.errors import ApiError, bad_request

# Label selector operators (selection.Operator values).
OP_IN = "in"
OP_NOT_IN = "notin"
OP_EQUALS = "="
OP_DOUBLE_EQUALS = "=="
OP_NOT_EQUALS = "!="
OP_EXISTS = "exists"
OP_DOES_NOT_EXIST = "!"
OP_GT = "gt"
OP_LT = "lt"


def _quote(value: Any) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _go_string_slice(values: list[str]) -> str:
    return "[]string{" + ", ".join(_quote(v) for v in values) + "}"


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        op = self.operator
        if op in (OP_IN, OP_EQUALS, OP_DOUBLE_EQUALS):
            return present and value in self.values
        if op in (OP_NOT_IN, OP_NOT_EQUALS):
            return not present or value not in self.values
        if op == OP_EXISTS:
            return present
        if op == OP_DOES_NOT_EXIST:
            return not present
        if op in (OP_GT, OP_LT):
            if not present or len(self.values) != 1:
                return False
            try:
                have, want = int(value or ""), int(self.values[0])
            except ValueError:
                return False
            return have > want if op == OP_GT else have < want
        return False

    def __str__(self) -> str:
        op = self.operator
        if op == OP_EXISTS:
            return self.key
        if op == OP_DOES_NOT_EXIST:
            return "!" + self.key
        if op in (OP_IN, OP_NOT_IN):
            return f"{self.key} {op} ({','.join(self.values)})"
        symbol = {OP_GT: ">", OP_LT: "<"}.get(op, op)
        return f"{self.key}{symbol}{self.values[0] if self.values else ''}"


@dataclass(frozen=True)
class LabelSelector:
    """A conjunction of requirements; ``nothing`` selects no object at all (a nil API selector)."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    def matches(self, labels: dict[str, str] | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def empty(self) -> bool:
        """True for the selector that matches everything."""
        return not self.nothing and not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


EVERYTHING = LabelSelector()
NOTHING = LabelSelector(nothing=True)


def _field_invalid(path: str, value: Any, detail: str) -> str:
    rendered = _quote(value) if isinstance(value, str) else str(value)
    return f"{path}: Invalid value: {rendered}: {detail}"


def new_requirement(key: str, operator: str, values: list[str] | tuple[str, ...]) -> Requirement:
    """Build a requirement, checking it like labels.NewRequirement; ValueError with its message."""
    errs: list[str] = []
    key_errs = names.is_qualified_name(key)
    if key_errs:
        errs.append(_field_invalid("key", key, "; ".join(key_errs)))
    vals = list(values)
    if operator in (OP_IN, OP_NOT_IN):
        if not vals:
            errs.append(
                f"values: Invalid value: {_go_string_slice(vals)}: "
                "for 'in', 'notin' operators, values set can't be empty"
            )
    elif operator in (OP_EQUALS, OP_DOUBLE_EQUALS, OP_NOT_EQUALS):
        if len(vals) != 1:
            errs.append(
                f"values: Invalid value: {_go_string_slice(vals)}: "
                "exact-match compatibility requires one single value"
            )
    elif operator in (OP_EXISTS, OP_DOES_NOT_EXIST):
        if vals:
            errs.append(
                f"values: Invalid value: {_go_string_slice(vals)}: "
                "values set must be empty for exists and does not exist"
            )
    elif operator in (OP_GT, OP_LT):
        if len(vals) != 1:
            errs.append(
                f"values: Invalid value: {_go_string_slice(vals)}: "
                "for 'Gt', 'Lt' operators, exactly one value is required"
            )
        for i, v in enumerate(vals):
            try:
                int(v)
            except ValueError:
                errs.append(
                    _field_invalid(
                        f"values[{i}]", v, "for 'Gt', 'Lt' operators, the value must be an integer"
                    )
                )
    else:
        valid = ", ".join(_quote(o) for o in ("!", "=", "==", "in", "!=", "notin", "exists", "gt", "lt"))
        errs.append(f"operator: Unsupported value: {_quote(operator)}: supported values: {valid}")
    for i, v in enumerate(vals):
        v_errs = names.is_valid_label_value(v)
        if v_errs:
            errs.append(_field_invalid(f"values[{i}][{key}]", v, "; ".join(v_errs)))
    if errs:
        raise ValueError(errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]")
    if operator in (OP_IN, OP_NOT_IN):
        vals = sorted(set(vals))
    return Requirement(key, operator, tuple(vals))


# -- label selector text parser (labels.Parse) -----------------------------------------------------

(
    _T_ERROR,
    _T_END,
    _T_CLOSE,
    _T_COMMA,
    _T_NOT,
    _T_DEQ,
    _T_EQ,
    _T_GT,
    _T_ID,
    _T_IN,
    _T_LT,
    _T_NEQ,
    _T_NOTIN,
    _T_OPEN,
) = range(14)
_SPECIAL = "=!(),><"
_STRING_TOKENS = {
    ")": _T_CLOSE,
    ",": _T_COMMA,
    "!": _T_NOT,
    "==": _T_DEQ,
    "=": _T_EQ,
    ">": _T_GT,
    "in": _T_IN,
    "<": _T_LT,
    "!=": _T_NEQ,
    "notin": _T_NOTIN,
    "(": _T_OPEN,
}


def _lex(text: str) -> list[tuple[int, str]]:
    items: list[tuple[int, str]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in " \t\r\n":
            i += 1
        if i >= n:
            items.append((_T_END, ""))
            return items
        ch = text[i]
        if ch in _SPECIAL:
            j = i
            while j < n and text[j] in _SPECIAL:
                j += 1
                if text[i:j] not in _STRING_TOKENS:
                    j -= 1
                    break
            lit = text[i:j] if j > i else ch
            if lit in _STRING_TOKENS:
                items.append((_STRING_TOKENS[lit], lit))
            else:
                items.append((_T_ERROR, f"error expected: keyword found '{lit}'"))
            i = i + len(lit)
            continue
        j = i
        while j < n and text[j] not in _SPECIAL and text[j] not in " \t\r\n":
            j += 1
        lit = text[i:j]
        items.append((_STRING_TOKENS.get(lit, _T_ID), lit))
        i = j


class _Parser:
    def __init__(self, text: str) -> None:
        self.items = _lex(text)
        self.pos = 0

    def lookahead(self, values: bool) -> tuple[int, str]:
        tok, lit = self.items[self.pos]
        if values and tok in (_T_IN, _T_NOTIN):
            tok = _T_ID
        return tok, lit

    def consume(self, values: bool) -> tuple[int, str]:
        tok, lit = self.lookahead(values)
        self.pos += 1
        return tok, lit

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self.lookahead(True)
            if tok in (_T_ID, _T_NOT):
                try:
                    reqs.append(self.requirement())
                except ValueError as e:
                    raise ValueError(f"unable to parse requirement: {e}") from None
                t, lit2 = self.consume(True)
                if t == _T_END:
                    return reqs
                if t == _T_COMMA:
                    t2, l2 = self.lookahead(True)
                    if t2 not in (_T_ID, _T_NOT):
                        raise ValueError(f"found '{l2}', expected: identifier after ','")
                else:
                    raise ValueError(f"found '{lit2}', expected: ',' or 'end of string'")
            elif tok == _T_END:
                return reqs
            else:
                raise ValueError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def requirement(self) -> Requirement:
        key, op = self.key_and_inferred_operator()
        if op in (OP_EXISTS, OP_DOES_NOT_EXIST):
            return new_requirement(key, op, [])
        op = self.operator()
        if op in (OP_IN, OP_NOT_IN):
            values = self.values()
        else:
            values = self.exact_value()
        return new_requirement(key, op, sorted(values))

    def key_and_inferred_operator(self) -> tuple[str, str]:
        op = ""
        tok, lit = self.consume(True)
        if tok == _T_NOT:
            op = OP_DOES_NOT_EXIST
            tok, lit = self.consume(True)
        if tok != _T_ID:
            raise ValueError(f"found '{lit}', expected: identifier")
        key_errs = names.is_qualified_name(lit)
        if key_errs:
            raise ValueError(_field_invalid("", lit, "; ".join(key_errs)))
        t, _ = self.lookahead(True)
        if t in (_T_END, _T_COMMA) and op != OP_DOES_NOT_EXIST:
            op = OP_EXISTS
        return lit, op

    def operator(self) -> str:
        tok, lit = self.consume(False)
        ops = {
            _T_IN: OP_IN,
            _T_EQ: OP_EQUALS,
            _T_DEQ: OP_DOUBLE_EQUALS,
            _T_GT: OP_GT,
            _T_LT: OP_LT,
            _T_NOTIN: OP_NOT_IN,
            _T_NEQ: OP_NOT_EQUALS,
        }
        if tok not in ops:
            raise ValueError(f"found '{lit}', expected: '=', '!=', '==', 'in', notin'")
        return ops[tok]

    def values(self) -> set[str]:
        tok, lit = self.consume(True)
        if tok != _T_OPEN:
            raise ValueError(f"found '{lit}' expected: '('")
        tok, lit = self.lookahead(True)
        if tok in (_T_ID, _T_COMMA):
            out = self.identifiers()
            if self.consume(True)[0] != _T_CLOSE:
                raise ValueError(f"found '{lit}', expected: ')'")
            return out
        if tok == _T_CLOSE:
            self.consume(True)
            return {""}
        raise ValueError(f"found '{lit}', expected: ',', ')' or identifier")

    def identifiers(self) -> set[str]:
        out: set[str] = set()
        while True:
            tok, lit = self.consume(True)
            if tok == _T_ID:
                out.add(lit)
                t2, l2 = self.lookahead(True)
                if t2 == _T_COMMA:
                    continue
                if t2 == _T_CLOSE:
                    return out
                raise ValueError(f"found '{l2}', expected: ',' or ')'")
            if tok == _T_COMMA:
                if not out:
                    out.add("")
                t2, _ = self.lookahead(True)
                if t2 == _T_CLOSE:
                    out.add("")
                    return out
                if t2 == _T_COMMA:
                    self.consume(True)
                    out.add("")
                continue
            raise ValueError(f"found '{lit}', expected: ',', or identifier")

    def exact_value(self) -> set[str]:
        tok, _ = self.lookahead(True)
        if tok in (_T_END, _T_COMMA):
            return {""}
        tok, lit = self.consume(True)
        if tok == _T_ID:
            return {lit}
        raise ValueError(f"found '{lit}', expected: identifier")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse ``?labelSelector=``; raises ApiError 400 BadRequest with apimachinery's parse message."""
    try:
        return parse_label_selector_or_raise(text)
    except ValueError as e:
        raise bad_request(str(e)) from None


def parse_label_selector_or_raise(text: str | None) -> LabelSelector:
    """Like :func:`parse_label_selector` but raises ValueError (for non-HTTP callers)."""
    reqs = _Parser(text or "").parse()
    reqs.sort(key=lambda r: r.key)
    return LabelSelector(tuple(reqs))


def label_selector_from_api(sel: dict[str, Any] | None) -> LabelSelector:
    """metav1.LabelSelectorAsSelector: None -> Nothing, {} -> Everything.

    Raises ValueError for an invalid selector (bad key/value/operator).
    """
    if sel is None:
        return NOTHING
    match_labels = sel.get("matchLabels") or {}
    exprs = sel.get("matchExpressions") or []
    if not match_labels and not exprs:
        return EVERYTHING
    reqs: list[Requirement] = []
    for k, v in match_labels.items():
        reqs.append(new_requirement(k, OP_EQUALS, [v]))
    op_map = {"In": OP_IN, "NotIn": OP_NOT_IN, "Exists": OP_EXISTS, "DoesNotExist": OP_DOES_NOT_EXIST}
    for expr in exprs:
        operator = expr.get("operator", "")
        if operator not in op_map:
            raise ValueError(f'"{operator}" is not a valid label selector operator')
        reqs.append(new_requirement(expr.get("key", ""), op_map[operator], list(expr.get("values") or [])))
    reqs.sort(key=lambda r: r.key)
    return LabelSelector(tuple(reqs))


def selector_matches(sel: dict[str, Any] | None, labels: dict[str, str] | None) -> bool:
    """Does an API LabelSelector select these labels? Invalid selectors select nothing."""
    try:
        return label_selector_from_api(sel).matches(labels)
    except ValueError:
        return False


# -- field selectors (fields.ParseSelector) --------------------------------------------------------


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    operator: str  # "=" or "!="
    value: str


def escape_field_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _unescape_field_value(value: str) -> str:
    if not any(c in value for c in "\\,="):
        return value
    out: list[str] = []
    escaped = False
    for ch in value:
        if escaped:
            if ch not in "\\,=":
                raise ValueError(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            escaped = False
            continue
        if ch == "\\":
            escaped = True
        elif ch in ",=":
            raise ValueError(f"invalid field selector: unescaped character in value: {ord(ch)}")
        else:
            out.append(ch)
    if escaped:
        raise ValueError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(text: str) -> list[str]:
    if not text:
        return []
    terms: list[str] = []
    start = 0
    escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    for i in range(len(term)):
        rest = term[i:]
        for op in ("!=", "==", "="):
            if rest.startswith(op):
                return term[:i], op, term[i + len(op) :]
    return None


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = field(default_factory=tuple)

    def matches(self, fields: dict[str, str]) -> bool:
        for r in self.requirements:
            have = fields.get(r.field, "")
            if (have == r.value) != (r.operator == "="):
                return False
        return True

    def empty(self) -> bool:
        return not self.requirements

    def value_for(self, name: str) -> str | None:
        """The value an ``=`` requirement demands for ``name`` (e.g. metadata.name), if any."""
        for r in self.requirements:
            if r.field == name and r.operator == "=":
                return r.value
        return None

    def __str__(self) -> str:
        return ",".join(f"{r.field}{r.operator}{escape_field_value(r.value)}" for r in self.requirements)


def parse_field_selector_or_raise(text: str | None) -> FieldSelector:
    text = text or ""
    reqs: list[FieldRequirement] = []
    for part in sorted(_split_terms(text)):
        if part == "":
            continue
        split = _split_term(part)
        if split is None:
            raise ValueError(f"invalid selector: '{text}'; can't understand '{part}'")
        lhs, op, rhs = split
        value = _unescape_field_value(rhs)
        reqs.append(FieldRequirement(lhs, "!=" if op == "!=" else "=", value))
    return FieldSelector(tuple(reqs))


def parse_field_selector(text: str | None) -> FieldSelector:
    """Parse ``?fieldSelector=``; raises ApiError 400 BadRequest with apimachinery's message."""
    try:
        return parse_field_selector_or_raise(text)
    except ValueError as e:
        raise bad_request(str(e)) from None


# Selectable fields per (group, resource); values are the names the stored object is matched by.
_META_NAMESPACED = ("metadata.name", "metadata.namespace")
_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)
# Field label conversions: label -> internal name, for kinds with a registered conversion func.
_CONVERSIONS: dict[tuple[str, str], dict[str, str]] = {
    ("", "pods"): {
        **{
            f: f
            for f in (
                *_META_NAMESPACED,
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.podIPs",
                "status.nominatedNodeName",
            )
        },
        "spec.host": "spec.nodeName",
    },
    ("", "events"): {f: f for f in (*_META_NAMESPACED, *_EVENT_FIELDS)},
    ("events.k8s.io", "events"): {
        "metadata.name": "metadata.name",
        "metadata.namespace": "metadata.namespace",
        "reason": "reason",
        "regarding.kind": "involvedObject.kind",
        "regarding.namespace": "involvedObject.namespace",
        "regarding.name": "involvedObject.name",
        "regarding.uid": "involvedObject.uid",
        "regarding.apiVersion": "involvedObject.apiVersion",
        "regarding.resourceVersion": "involvedObject.resourceVersion",
        "regarding.fieldPath": "involvedObject.fieldPath",
        "reportingController": "reportingComponent",
        "type": "type",
    },
    ("", "secrets"): {f: f for f in (*_META_NAMESPACED, "type")},
    ("", "nodes"): {f: f for f in ("metadata.name", "spec.unschedulable")},
    ("", "namespaces"): {
        "metadata.name": "metadata.name",
        "name": "metadata.name",
        "status.phase": "status.phase",
    },
    ("apps", "replicasets"): {f: f for f in (*_META_NAMESPACED, "status.replicas")},
}


def _s(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def field_set(group: str, resource: str, obj: dict[str, Any]) -> dict[str, str]:
    """The fields a field selector can match on for this object (ToSelectableFields)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    out = {"metadata.name": _s(meta.get("name"))}
    if meta.get("namespace") is not None or resource not in ("nodes", "namespaces"):
        out["metadata.namespace"] = _s(meta.get("namespace"))
    if group == "" and resource == "pods":
        pod_ips = status.get("podIPs") or []
        out.update(
            {
                "spec.nodeName": _s(spec.get("nodeName")),
                "spec.restartPolicy": _s(spec.get("restartPolicy")),
                "spec.schedulerName": _s(spec.get("schedulerName")),
                "spec.serviceAccountName": _s(spec.get("serviceAccountName")),
                "spec.hostNetwork": _s(bool(spec.get("hostNetwork"))),
                "status.phase": _s(status.get("phase")),
                "status.podIP": _s(pod_ips[0].get("ip")) if pod_ips else _s(status.get("podIP")),
                "status.nominatedNodeName": _s(status.get("nominatedNodeName")),
            }
        )
    elif resource == "events" and group in ("", "events.k8s.io"):
        if group == "":
            ref = obj.get("involvedObject") or {}
            reporting = obj.get("reportingComponent")
            source = (obj.get("source") or {}).get("component") or reporting
        else:
            ref = obj.get("regarding") or {}
            reporting = obj.get("reportingController")
            source = (obj.get("deprecatedSource") or {}).get("component") or reporting
        for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath"):
            out[f"involvedObject.{f}"] = _s(ref.get(f))
        out.update(
            {
                "reason": _s(obj.get("reason")),
                "reportingComponent": _s(reporting),
                "source": _s(source),
                "type": _s(obj.get("type")),
            }
        )
    elif group == "" and resource == "secrets":
        out["type"] = _s(obj.get("type"))
    elif group == "" and resource == "nodes":
        out["spec.unschedulable"] = _s(bool(spec.get("unschedulable")))
    elif group == "" and resource == "namespaces":
        out["status.phase"] = _s(status.get("phase"))
    elif group == "apps" and resource == "replicasets":
        out["status.replicas"] = _s(status.get("replicas") or 0)
    return out


def check_field_selector(group: str, resource: str, sel: FieldSelector) -> FieldSelector:
    """Convert field labels the way the API server does; unsupported ones -> ApiError 400.

    Returns the selector with labels mapped to the names :func:`field_set` uses (events.k8s.io's
    ``regarding.name`` becomes ``involvedObject.name``, a pod's ``spec.host`` becomes ``spec.nodeName``).
    """
    conv = _CONVERSIONS.get((group, resource))
    out: list[FieldRequirement] = []
    for r in sel.requirements:
        if conv is None:
            if r.field not in _META_NAMESPACED:
                raise _bad_field(
                    f'"{r.field}" is not a known field selector: only "metadata.name", "metadata.namespace"'
                )
            out.append(r)
        elif r.field in conv:
            out.append(FieldRequirement(conv[r.field], r.operator, r.value))
        else:
            raise _bad_field(f"field label not supported: {r.field}")
    return FieldSelector(tuple(out))


def _bad_field(message: str) -> ApiError:
    return bad_request(message)
