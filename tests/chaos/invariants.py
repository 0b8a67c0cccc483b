"""What must hold after any amount of chaos: nothing lost, nothing doubled, projections honest.

``audit(store)`` reads the whole event log and the sessions table and reports
every violation it finds, so a failing chaos test (or the chaos benchmark)
says exactly which stream broke which rule.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from nofx.domain import Event
from nofx.sessions import STREAM_TYPE, TERMINAL_EVENTS, replay
from nofx.store import EventStore
from nofx.store.event_store import row_to_event
from nofx.store.schema import events as events_table
from nofx.store.schema import sessions as sessions_table

STEP_OUTCOMES = ("StepCompleted", "StepFailed", "StepAbandoned")
COMPARED_COLUMNS = (
    "status",
    "attempts",
    "cost_usd",
    "input_tokens",
    "output_tokens",
    "agent_id",
    "output",
    "error_type",
    "version",
)


@dataclass
class Audit:
    """Counts and violations found in one store."""

    sessions: int = 0
    terminal_sessions: int = 0
    succeeded: int = 0
    failed: int = 0
    events: int = 0
    events_lost: int = 0
    duplicate_completions: int = 0
    unpaired_attempts: int = 0
    steps_rerun_after_completion: int = 0
    projection_mismatches: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def session_failure_rate(self) -> float:
        return self.failed / self.sessions if self.sessions else 0.0

    def summary(self) -> dict[str, Any]:
        keys = (
            "sessions",
            "terminal_sessions",
            "succeeded",
            "failed",
            "events",
            "events_lost",
            "duplicate_completions",
            "unpaired_attempts",
            "steps_rerun_after_completion",
            "projection_mismatches",
        )
        return {key: getattr(self, key) for key in keys}


def read_streams(store: EventStore) -> dict[str, list[Event]]:
    """Every stream's events in seq order."""
    query = select(events_table).order_by(events_table.c.stream_id, events_table.c.seq)
    streams: dict[str, list[Event]] = defaultdict(list)
    with store.engine.connect() as conn:
        for row in conn.execute(query):
            streams[row.stream_id].append(row_to_event(row))
    return dict(streams)


def read_session_rows(store: EventStore) -> dict[str, dict[str, Any]]:
    with store.engine.connect() as conn:
        return {row.session_id: dict(row._mapping) for row in conn.execute(select(sessions_table))}


def _same(column: str, left: Any, right: Any) -> bool:
    if column == "cost_usd":
        return math.isclose(float(left), float(right), rel_tol=1e-9, abs_tol=1e-12)
    return left == right


def check_stream_order(stream_id: str, events: list[Event], audit: Audit) -> None:
    """Seqs are exactly 1..n and positions grow with them: no event lost or reordered."""
    seqs = [e.seq for e in events]
    if seqs != list(range(1, len(events) + 1)):
        missing = sorted(set(range(1, max(seqs) + 1)) - set(seqs))
        audit.events_lost += len(missing)
        audit.violations.append(f"{stream_id}: seqs {seqs[:5]}... missing {missing[:10]}")
    positions = [e.position for e in events]
    if positions != sorted(positions) or len(set(positions)) != len(positions):
        audit.violations.append(f"{stream_id}: positions do not grow with seq")


def check_session_stream(stream_id: str, events: list[Event], audit: Audit) -> None:
    """One terminal event, last; every attempt started once and ended once; no rerun steps."""
    terminals = [e for e in events if e.type in TERMINAL_EVENTS]
    if len(terminals) > 1:
        audit.duplicate_completions += len(terminals) - 1
        audit.violations.append(f"{stream_id}: {len(terminals)} terminal events")
    if terminals and events[-1].type not in TERMINAL_EVENTS:
        audit.violations.append(f"{stream_id}: {events[-1].type} after the terminal event")
    starts: Counter[tuple[str, int]] = Counter()
    outcomes: Counter[tuple[str, int]] = Counter()
    completed_steps: set[str] = set()
    for event in events:
        p = event.payload
        if event.type == "StepStarted":
            key = (p["step_id"], p["attempt"])
            starts[key] += 1
            if p["step_id"] in completed_steps:
                audit.steps_rerun_after_completion += 1
                audit.violations.append(
                    f"{stream_id}: step {p['step_id']} started after it completed"
                )
        elif event.type in STEP_OUTCOMES:
            key = (p["step_id"], p["attempt"])
            if starts[key] == 0:
                audit.violations.append(f"{stream_id}: {event.type} for {key} that never started")
            outcomes[key] += 1
            if event.type == "StepCompleted":
                completed_steps.add(p["step_id"])
    for key in starts | outcomes:
        if starts[key] != 1 or outcomes[key] > 1 or (terminals and outcomes[key] != 1):
            audit.unpaired_attempts += 1
            audit.violations.append(
                f"{stream_id}: attempt {key} started {starts[key]}x, ended {outcomes[key]}x"
            )


def check_projection(
    session_id: str, events: list[Event], row: dict[str, Any] | None, audit: Audit
) -> None:
    """The sessions table row equals a replay of the session's events."""
    replayed = replay(events)
    if row is None or replayed is None:
        audit.projection_mismatches += 1
        audit.violations.append(
            f"session {session_id}: row={row is not None} events={bool(events)}"
        )
        return
    diffs = [c for c in COMPARED_COLUMNS if not _same(c, row[c], replayed[c])]
    if diffs:
        audit.projection_mismatches += 1
        detail = ", ".join(f"{c}: table={row[c]!r} replay={replayed[c]!r}" for c in diffs)
        audit.violations.append(f"session {session_id}: projection differs from replay ({detail})")


def audit(store: EventStore, *, require_terminal: bool = True) -> Audit:
    """Check every invariant over the whole store; ``require_terminal`` demands all sessions end."""
    result = Audit()
    streams = read_streams(store)
    rows = read_session_rows(store)
    for stream_id, events in streams.items():
        result.events += len(events)
        check_stream_order(stream_id, events, result)
    session_streams = {
        events[0].payload["session_id"]: (stream_id, events)
        for stream_id, events in streams.items()
        if events and events[0].stream_type == STREAM_TYPE
    }
    for session_id in sorted(set(session_streams) | set(rows)):
        stream_id, events = session_streams.get(session_id, (f"session-{session_id}", []))
        row = rows.get(session_id)
        result.sessions += 1
        if events:
            check_session_stream(stream_id, events, result)
        check_projection(session_id, events, row, result)
        status = row["status"] if row else None
        if status in TERMINAL_EVENTS.values():
            result.terminal_sessions += 1
        elif require_terminal:
            result.violations.append(f"session {session_id} is {status}, not terminal")
        result.succeeded += status == "succeeded"
        result.failed += status == "failed"
    return result


def assert_invariants(store: EventStore, *, require_terminal: bool = True) -> Audit:
    """Raise AssertionError listing the first violations; return the audit when all hold."""
    result = audit(store, require_terminal=require_terminal)
    if result.violations:
        shown = "\n  ".join(result.violations[:20])
        raise AssertionError(
            f"{len(result.violations)} invariant violations ({result.summary()}):\n  {shown}"
        )
    return result
