"""The invariant checker itself: it passes a clean run and catches each kind of corruption."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, insert, update

from nofx.domain import utcnow
from nofx.runtime import Runtime
from nofx.store import EventStore
from nofx.store.schema import events as events_table
from nofx.store.schema import sessions as sessions_table
from tests.chaos.invariants import assert_invariants, audit, read_streams
from tests.chaos.scenario import submit_burst


@pytest.fixture
async def finished(runtime: Runtime, fleet) -> EventStore:
    submit_burst(runtime.sessions, 6)
    await runtime.run_pending()
    assert_invariants(runtime.store)
    return runtime.store


def session_streams(store: EventStore) -> list:
    return [events for events in read_streams(store).values() if events[0].stream_type == "session"]


def raw_append(store: EventStore, like, seq: int, event_type: str, payload: dict) -> None:
    with store.transaction() as tx:
        tx.conn.execute(
            insert(events_table).values(
                stream_id=like.stream_id,
                stream_type=like.stream_type,
                seq=seq,
                type=event_type,
                tenant_id=like.tenant_id,
                occurred_at=utcnow(),
                payload=payload,
            )
        )


def test_a_clean_run_passes(finished: EventStore) -> None:
    result = audit(finished)
    assert result.ok and result.sessions == 6 and result.terminal_sessions == 6
    assert result.succeeded + result.failed == 6
    assert result.events == sum(len(e) for e in read_streams(finished).values())


def test_a_lost_event_is_found(finished: EventStore) -> None:
    victim = session_streams(finished)[0][2]
    with finished.transaction() as tx:
        tx.conn.execute(delete(events_table).where(events_table.c.position == victim.position))
    result = audit(finished)
    assert result.events_lost == 1
    assert any(victim.stream_id in v and "missing [3]" in v for v in result.violations)
    with pytest.raises(AssertionError, match="invariant violations"):
        assert_invariants(finished)


def test_a_second_terminal_event_is_found(finished: EventStore) -> None:
    events = session_streams(finished)[0]
    raw_append(finished, events[-1], len(events) + 1, "SessionCompleted", dict(events[-1].payload))
    result = audit(finished)
    assert result.duplicate_completions == 1


def test_an_event_after_the_end_and_a_rerun_step_are_found(finished: EventStore) -> None:
    events = session_streams(finished)[0]
    started = next(e for e in events if e.type == "StepStarted")
    assert any(e.type == "StepCompleted" for e in events)
    raw_append(finished, events[-1], len(events) + 1, "StepStarted", dict(started.payload))
    result = audit(finished)
    assert result.steps_rerun_after_completion == 1
    assert result.unpaired_attempts == 1
    assert any("after the terminal event" in v for v in result.violations)


def test_a_projection_that_drifted_from_its_events_is_found(finished: EventStore) -> None:
    events = session_streams(finished)[0]
    with finished.transaction() as tx:
        tx.conn.execute(
            update(sessions_table)
            .where(sessions_table.c.session_id == events[0].payload["session_id"])
            .values(cost_usd=123.0, attempts=99)
        )
    result = audit(finished)
    assert result.projection_mismatches == 1
    assert any("cost_usd: table=123.0" in v and "attempts" in v for v in result.violations)


def test_unfinished_sessions_fail_only_when_required(runtime: Runtime, fleet) -> None:
    submit_burst(runtime.sessions, 2)
    assert audit(runtime.store, require_terminal=False).ok
    result = audit(runtime.store)
    assert sum("not terminal" in v for v in result.violations) == 2
