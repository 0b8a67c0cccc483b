"""Opaque cursors: base64 of a small JSON position, so clients cannot depend on their shape."""

from __future__ import annotations

import base64
import json
from typing import Any

from nofx.errors import ValidationError


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
