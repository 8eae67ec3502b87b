"""Limits on what a request may carry, so bad input is refused cheaply and never hurts the server."""

from __future__ import annotations

from typing import Any

MAX_BODY_BYTES = 3 * 1024 * 1024  # kube-apiserver's default request body limit
MAX_DEPTH = 100  # real Kubernetes objects nest about 20 deep
MAX_KEY_BYTES = 1024 * 1024


def depth_exceeds(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests deeper than ``limit`` (iterative: safe on any input)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return False
