"""How each pattern did on similar tasks, read from the store (the I/O half of auto's choice)."""

from __future__ import annotations

from sqlalchemy import func, select

from nofx.domain import PatternName
from nofx.patterns.choice import BANDS, CHOOSABLE, PatternStats, complexity_band
from nofx.store import EventStore
from nofx.store.schema import sessions


def pattern_history(
    store: EventStore, tenant_id: str, capability: str, complexity: float
) -> dict[PatternName, PatternStats]:
    """Per pattern: finished sessions and successes on the same capability and complexity band.
    Blocking: call it off the event loop."""
    low, high = BANDS[complexity_band(complexity)]
    complexity_col = func.json_extract(sessions.c.request, "$.task.complexity")
    capability_col = func.json_extract(sessions.c.request, "$.task.capability")
    if store.dialect == "postgresql":
        complexity_col = sessions.c.request["task"]["complexity"].as_float()
        capability_col = sessions.c.request["task"]["capability"].as_string()
    query = (
        select(sessions.c.pattern, sessions.c.status, func.count())
        .where(
            sessions.c.tenant_id == tenant_id,
            sessions.c.status.in_(["succeeded", "failed"]),
            capability_col == capability,
            complexity_col >= low,
            complexity_col < high,
        )
        .group_by(sessions.c.pattern, sessions.c.status)
    )
    totals: dict[PatternName, list[int]] = {}
    with store.engine.connect() as conn:
        for row in conn.execute(query):
            pattern, status, n = str(row[0]), str(row[1]), int(row[2])
            if pattern not in {p.value for p in CHOOSABLE}:
                continue
            entry = totals.setdefault(PatternName(pattern), [0, 0])
            entry[0] += n
            entry[1] += n if status == "succeeded" else 0
    return {p: PatternStats(n, ok) for p, (n, ok) in totals.items()}
