"""Compiled label and node selectors for the scheduler's hot paths.

A selector is compiled once per pod into a :class:`LabelMatcher` (a tuple of requirements), so
matching is a few dict look-ups. ``index_keys`` names the label pairs a matching object must carry,
which the snapshot's label index uses to find candidate pods without scanning all of them.
Semantics follow apimachinery: a nil selector matches nothing, an empty one matches everything;
an invalid selector matches nothing (the scheduler ignores unparsable terms the same way).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# A requirement: (key, operator, values). Operators: In, NotIn, Exists, DoesNotExist, Gt, Lt.
Requirement = tuple[str, str, frozenset[str]]
Labels = Mapping[str, str]

_LABEL_OPS = frozenset({"In", "NotIn", "Exists", "DoesNotExist"})
_NODE_OPS = frozenset({"In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"})


def _req_matches(req: Requirement, labels: Labels) -> bool:
    key, op, values = req
    if op == "In":
        v = labels.get(key)
        return v is not None and v in values
    if op == "NotIn":
        v = labels.get(key)
        return v is None or v not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    v = labels.get(key)
    if v is None:
        return False
    try:
        have = int(v)
        want = int(next(iter(values)))
    except (ValueError, StopIteration):
        return False
    return have > want if op == "Gt" else have < want


@dataclass(frozen=True, slots=True)
class LabelMatcher:
    """A compiled selector; ``nothing`` marks the nil (or invalid) selector."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    def matches(self, labels: Labels) -> bool:
        if self.nothing:
            return False
        for req in self.requirements:
            if not _req_matches(req, labels):
                return False
        return True

    @property
    def everything(self) -> bool:
        return not self.nothing and not self.requirements

    def index_keys(self) -> list[tuple[str, frozenset[str] | None]]:
        """Positive requirements (key, values or None for Exists) every matching object satisfies."""
        out: list[tuple[str, frozenset[str] | None]] = []
        for key, op, values in self.requirements:
            if op == "In":
                out.append((key, values))
            elif op in ("Exists", "Gt", "Lt"):
                out.append((key, None))
        return out

    def with_requirements(self, extra: Iterable[Requirement]) -> LabelMatcher:
        extra = tuple(extra)
        if self.nothing or not extra:
            return self
        return LabelMatcher(self.requirements + extra)


NOTHING = LabelMatcher(nothing=True)
EVERYTHING = LabelMatcher()


def compile_label_selector(sel: Any) -> LabelMatcher:
    """A metav1.LabelSelector dict (matchLabels, matchExpressions) -> matcher; None matches nothing."""
    if sel is None or not isinstance(sel, dict):
        return NOTHING
    reqs: list[Requirement] = []
    for k, v in sorted((sel.get("matchLabels") or {}).items()):
        reqs.append((str(k), "In", frozenset([str(v)])))
    for expr in sel.get("matchExpressions") or []:
        req = _compile_expr(expr, _LABEL_OPS)
        if req is None:
            return NOTHING
        reqs.append(req)
    return LabelMatcher(tuple(reqs))


def _compile_expr(expr: Any, ops: frozenset[str]) -> Requirement | None:
    if not isinstance(expr, dict):
        return None
    key, op = expr.get("key"), expr.get("operator")
    values = expr.get("values") or []
    if not isinstance(key, str) or op not in ops:
        return None
    if op in ("In", "NotIn") and not values:
        return None
    if op in ("Exists", "DoesNotExist") and values:
        return None
    if op in ("Gt", "Lt"):
        if len(values) != 1:
            return None
        try:
            int(values[0])
        except (TypeError, ValueError):
            return None
    return (key, op, frozenset(str(v) for v in values))


@dataclass(frozen=True, slots=True)
class NodeSelectorTerm:
    """One term of a v1.NodeSelector: matchExpressions on labels AND matchFields on metadata.name."""

    labels: LabelMatcher
    fields: tuple[Requirement, ...] = ()

    def matches(self, node_labels: Labels, node_name: str) -> bool:
        if not self.labels.matches(node_labels):
            return False
        if self.fields:
            fields = {"metadata.name": node_name}
            for req in self.fields:
                if not _req_matches(req, fields):
                    return False
        return True


_NEVER = NodeSelectorTerm(NOTHING)


def compile_node_selector_term(term: Any) -> NodeSelectorTerm:
    """An empty or invalid term matches no node (as in component-helpers' nodeaffinity)."""
    if not isinstance(term, dict):
        return _NEVER
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return _NEVER
    reqs: list[Requirement] = []
    for e in exprs:
        r = _compile_expr(e, _NODE_OPS)
        if r is None:
            return _NEVER
        reqs.append(r)
    freqs: list[Requirement] = []
    for f in fields:
        r = _compile_expr(f, frozenset({"In", "NotIn"}))
        if r is None or r[0] != "metadata.name":
            return _NEVER
        freqs.append(r)
    return NodeSelectorTerm(LabelMatcher(tuple(reqs)), tuple(freqs))


@dataclass(frozen=True, slots=True)
class NodeSelector:
    """v1.NodeSelector: the terms are ORed; no terms match no node."""

    terms: tuple[NodeSelectorTerm, ...]

    def matches(self, node_labels: Labels, node_name: str) -> bool:
        for t in self.terms:
            if t.matches(node_labels, node_name):
                return True
        return False


def compile_node_selector(sel: Any) -> NodeSelector:
    terms = sel.get("nodeSelectorTerms") if isinstance(sel, dict) else None
    return NodeSelector(tuple(compile_node_selector_term(t) for t in terms or []))
