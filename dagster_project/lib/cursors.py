"""Sensor cursors are JSON, so the UI shows what a sensor last acted on."""

import json


def read_cursor(raw: str | None) -> dict:
    """A sensor cursor as a dict ({} when unset or unreadable, so a bad cursor self-heals)."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
