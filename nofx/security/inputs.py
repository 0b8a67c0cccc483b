"""Checks on untrusted structured input that every layer can share (API, bus)."""

from __future__ import annotations

from typing import Any

MAX_JSON_DEPTH = 32
"""Deepest nesting a message body (or any JSON the API takes) may have by default."""


def json_depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value (a scalar is 0), counting no deeper than ``limit + 1``.

    Iterative, so a hostile document cannot exhaust the interpreter's stack.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return deepest
        stack.extend((child, depth) for child in children)
    return deepest
