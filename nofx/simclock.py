"""A simulated clock for generated history: ``nofx demo`` writes a week of events in minutes.

``nofx.domain.utcnow`` (which stamps every event, lease and scaling decision) adds this
offset to the real clock. It is zero unless a simulation sets it, and only the process that
sets it sees it; nothing in a server ever does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_offset = timedelta(0)


def offset() -> timedelta:
    return _offset


def set_now(at: datetime) -> None:
    """From now on (in this process) the clock reads ``at`` and runs on from there."""
    global _offset
    _offset = at - datetime.now(UTC)


def reset() -> None:
    global _offset
    _offset = timedelta(0)
