"""A tenant's own history, read through the tenant's rows: step outcomes to learn estimates
from, and circuit-breaker transitions.

``POST /workflows/learn`` and ``GET /orchestration/breakers`` read every tenant's session
(or breaker) events in global order and dropped the others' in Python: any tenant could
make the server scan the whole event log, and learning kept every outcome it found in
memory. Here each read starts from the caller's own rows (its most recent sessions, its
agents) and reaches their streams through the events table's (stream_id, seq) key only (no
term the planner could range over the whole log with: the stream type is implied by the
stream ids, and the position is compared as an expression), so the
cost of a request is bounded by the caller's history, never by another tenant's, and the
number of sessions learned from is capped (``ApiLimits.max_learn_sessions``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, Subquery, func, literal, select

from nofx.store import EventStore
from nofx.store.event_store import row_to_event
from nofx.store.schema import agents, events, sessions

STEP_OUTCOMES = ("StepCompleted", "StepFailed")


def step_outcomes_query(tenant_id: str, after_position: int, max_sessions: int) -> Select[Any]:
    """The step outcomes of the tenant's ``max_sessions`` most recent sessions."""
    streams = select(literal("session-") + _recent(tenant_id, max_sessions).c.session_id)
    return (
        select(events.c.type, events.c.payload)
        .where(
            events.c.stream_id.in_(streams),
            events.c.tenant_id == tenant_id,
            events.c.type.in_(STEP_OUTCOMES),
            # an expression, not the column: the position is filtered on the streams' rows,
            # never used to range over the log from it (with 0, every event)
            events.c.position + 0 > after_position,
        )
        .order_by(events.c.position)
    )


def _recent(tenant_id: str, max_sessions: int) -> Subquery:
    return (
        select(sessions.c.session_id)
        .where(sessions.c.tenant_id == tenant_id)
        .order_by(sessions.c.created_at.desc())
        .limit(max_sessions)
        .subquery()
    )


def step_outcomes(
    store: EventStore, tenant_id: str, *, after_position: int, max_sessions: int
) -> tuple[list[dict[str, Any]], int]:
    """The step outcomes (payload and ``succeeded``) of the tenant's ``max_sessions`` most
    recent sessions, after ``after_position``, in global order; and how many sessions
    were read (the caller says so when it hit the cap)."""
    query = step_outcomes_query(tenant_id, after_position, max_sessions)
    count = select(func.count()).select_from(_recent(tenant_id, max_sessions))
    with store.engine.connect() as conn:
        outcomes: list[dict[str, Any]] = [
            {**row.payload, "succeeded": row.type == "StepCompleted"} for row in conn.execute(query)
        ]
        read = int(conn.execute(count).scalar() or 0)
    return outcomes, read


def breaker_events_query(tenant_id: str) -> Select[Any]:
    """Every BreakerTransitioned event of the tenant's agents, in global order."""
    streams = select(literal("breaker-") + agents.c.agent_id).where(agents.c.tenant_id == tenant_id)
    return (
        select(events)
        .where(events.c.stream_id.in_(streams), events.c.tenant_id == tenant_id)
        .order_by(events.c.position)
    )


def breaker_events(store: EventStore, tenant_id: str) -> list[Any]:
    """Every BreakerTransitioned event of the tenant's agents, in global order."""
    with store.engine.connect() as conn:
        return [row_to_event(row) for row in conn.execute(breaker_events_query(tenant_id))]
