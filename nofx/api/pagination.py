"""Opaque cursors: base64 of a small JSON position, so clients cannot depend on their shape."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, TypeVar

from nofx.errors import ValidationError

T = TypeVar("T")


def encode(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode()


def decode(cursor: str | None) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, json.JSONDecodeError) as exc:
        raise ValidationError(
            "the cursor is not valid", hint="pass next_cursor from the previous page unchanged"
        ) from exc
    if not isinstance(value, dict):
        raise ValidationError("the cursor is not valid", hint="pass next_cursor unchanged")
    return value


def page(
    items: list[T], limit: int, position_of: Callable[[T], dict[str, Any]]
) -> tuple[list[T], str | None]:
    """A page from ``limit + 1`` fetched items: the first ``limit``, and the cursor of the
    next page when there is one (the extra item says so without a count query)."""
    if len(items) <= limit:
        return items, None
    kept = items[:limit]
    return kept, encode(position_of(kept[-1]))
