"""Nesting limit for JSON the service reads (FHIR resources nest a dozen levels deep, not hundreds)."""

from __future__ import annotations

from typing import Any


def json_depth_exceeds(data: Any, limit: int, skip: frozenset[str] = frozenset()) -> bool:
    """True when objects/arrays nest deeper than `limit` levels (the top-level value is level 1).
    Iterative, so hostile input cannot exhaust the Python stack. Keys in `skip` (top level only) are not
    walked: the prefetch is checked resource by resource where the engine actually reads it."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    pop, push = stack.pop, stack.append
    top = True
    while stack:
        node, depth = pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            children = [v for k, v in node.items() if k not in skip] if top and skip else node.values()
        else:
            children = node
        top = False
        for child in children:
            if isinstance(child, dict | list):
                push((child, depth + 1))
    return False
