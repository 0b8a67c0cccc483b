"""On PostgreSQL the writer's fixed statements store exactly what SQLAlchemy Core stored.

The old path is Core's multi-row ``INSERT ... RETURNING`` (``sort_by_parameter_order``) and
Core's executemany; the new one is ``unnest`` and pipelined fixed statements
(nofx.store.driver, ADR 0016). The same rows go through both, in transactions rolled back
afterwards, and what the database holds is compared column by column (JSON as its text).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.exc import IntegrityError

from nofx.domain import NewEvent
from nofx.store import EventStore, schema
from nofx.store.driver import DriverStatement
from nofx.store.writer import _INSERT_RETURNING, EVENT_COLUMNS, Append, _insert_events
from tests.core.test_driver import json_values

pytestmark = pytest.mark.postgres
SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
pg_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
)
zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)
aware = st.builds(
    lambda us, tz: (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)).astimezone(tz),
    st.integers(min_value=-(10**13), max_value=10**13),
    zones,
)
naive = aware.map(lambda d: d.replace(tzinfo=None))


@st.composite
def event_rows(draw: Any) -> list[dict[str, Any]]:
    """A commit group's rows: a few streams, consecutive seqs, some idempotency keys."""
    times = draw(st.sampled_from(["aware", "naive", "mixed"]))
    moment = {"aware": aware, "naive": naive, "mixed": aware | naive}[times]
    rows: list[dict[str, Any]] = []
    for stream in range(draw(st.integers(min_value=1, max_value=4))):
        stream_id = f"s-{stream}-" + draw(pg_text)
        for seq in range(1, draw(st.integers(min_value=1, max_value=5)) + 1):
            rows.append(
                {
                    "stream_id": stream_id,
                    "stream_type": draw(st.sampled_from(["session", "channel"])),
                    "seq": seq,
                    "type": draw(pg_text),
                    "tenant_id": draw(pg_text),
                    "occurred_at": draw(moment),
                    "idempotency_key": draw(st.none() | pg_text.map(lambda k: f"k{len(rows)}-{k}")),
                    "payload": draw(st.dictionaries(pg_text, json_values, max_size=4)),
                }
            )
    return draw(st.permutations(rows))


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    store = EventStore(pg_url)
    yield store.engine
    store.dispose()


def _stored(conn: Connection, table: Any, order: str) -> list[tuple[Any, ...]]:
    columns = [f"{c.name}::text" if isinstance(c.type, schema.JSON) else c.name for c in table.c]
    return list(
        conn.execute(text(f"SELECT {', '.join(columns)} FROM {table.name} ORDER BY {order}"))
    )


def _through(
    engine: Engine, insert: Any, rows: list[dict[str, Any]]
) -> tuple[list[int], list[Any]]:
    with engine.connect() as conn, conn.begin() as tx:
        positions = insert(conn, [dict(r) for r in rows])
        stored = _stored(conn, schema.events, "position")
        tx.rollback()
    return positions, stored


def _core_insert(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    return [int(p) for p in conn.execute(_INSERT_RETURNING, rows).scalars()]


@SETTINGS
@given(rows=event_rows())
def test_a_group_of_events_is_stored_as_core_stored_it(engine: Engine, rows: list[dict]) -> None:
    old_positions, old = _through(engine, _core_insert, rows)
    new_positions, new = _through(engine, _insert_events, rows)
    for positions, stored in ((old_positions, old), (new_positions, new)):
        # each row's position is the one handed back for it, ascending in the group's order
        assert [s[0] for s in stored] == positions == sorted(positions)
        plain = [c for c in EVENT_COLUMNS if c not in ("occurred_at", "payload")]
        at = [EVENT_COLUMNS.index(c) + 1 for c in plain]
        assert [tuple(s[i] for i in at) for s in stored] == [
            tuple(r[c] for c in plain) for r in rows
        ]
    assert [s[1:] for s in new] == [s[1:] for s in old]


@SETTINGS
@given(rows=event_rows())
def test_a_repeated_idempotency_key_is_refused_on_both_paths(
    engine: Engine, rows: list[dict]
) -> None:
    clash = [
        dict(rows[0], idempotency_key="same"),
        dict(rows[-1], seq=1000, idempotency_key="same"),
    ]
    for insert in (_core_insert, _insert_events):
        with engine.connect() as conn, conn.begin() as tx:
            with pytest.raises(IntegrityError):
                insert(conn, clash)
            tx.rollback()


session_rows = st.fixed_dictionaries(
    {
        "tenant_id": pg_text,
        "pattern": st.sampled_from(["solo", "pair", "hierarchical"]),
        "status": st.sampled_from(["requested", "running", "succeeded"]),
        "request": st.dictionaries(pg_text, json_values, max_size=4),
        "agent_id": st.none() | pg_text,
        "attempts": st.integers(min_value=0, max_value=2**31 - 1),
        "cost_usd": st.floats(allow_nan=False, allow_infinity=False, width=64),
        "input_tokens": st.integers(min_value=0, max_value=2**31 - 1),
        "output_tokens": st.integers(min_value=0, max_value=2**31 - 1),
        "output": st.none() | pg_text,
        "error_type": st.none() | pg_text,
        "created_at": aware,
        "updated_at": aware | naive,
        "version": st.integers(min_value=1, max_value=2**31 - 1),
    }
)


@SETTINGS
@given(
    inserted=st.lists(session_rows, min_size=1, max_size=6),
    updates=st.lists(st.tuples(st.integers(min_value=0), session_rows), max_size=8),
)
def test_session_rows_through_the_pipeline_equal_rows_through_core(
    engine: Engine, inserted: list[dict], updates: list[tuple[int, dict]]
) -> None:
    from nofx.sessions import _INSERT_SESSION, _MUTABLE, _UPDATE_SESSION

    ids = [uuid.uuid4().hex for _ in inserted]
    rows = [{**r, "session_id": i} for r, i in zip(inserted, ids, strict=True)]
    # a session may change twice in one group: the last change must win on both paths
    changes = [{**r, "session_id": ids[n % len(ids)]} for n, r in updates]
    stored = []
    for run in (_core_execute, DriverStatement.execute):
        with engine.connect() as conn, conn.begin() as tx:
            run(_INSERT_SESSION, conn, rows)
            run(
                _UPDATE_SESSION,
                conn,
                [{c: r[c] for c in (*_MUTABLE, "session_id")} for r in changes],
            )
            stored.append(_stored(conn, schema.sessions, "session_id"))
            tx.rollback()
    assert stored[0] == stored[1]
    assert len(stored[0]) == len(rows)


def _core_execute(statement: DriverStatement, conn: Connection, rows: list[dict]) -> None:
    """What DriverStatement ran on PostgreSQL before: Core's executemany."""
    if not rows:
        return
    key = statement.key
    names = [*statement.columns, *([f"b_{key}"] if key else [])]
    order = [*statement.columns, *([key] if key else [])]
    conn.execute(
        statement.core, [dict(zip(names, (r[c] for c in order), strict=True)) for r in rows]
    )


def test_the_writer_replays_a_conflicting_group_one_by_one_on_postgresql(pg_url: str) -> None:
    """A key already stored makes the fast insert fail; the replay fails that caller alone."""
    store = EventStore(pg_url)
    try:
        store.append("s-0", "session", "t", [NewEvent(type="A", payload={}, idempotency_key="k")])
        futures = [
            store.submit(
                Append(
                    f"s-{i}",
                    "session",
                    "t",
                    [NewEvent(type="B", payload={"i": i}, idempotency_key=f"k{i}")],
                )
            )
            for i in range(1, 6)
        ]
        clash = store.submit(
            Append("s-9", "session", "t", [NewEvent(type="C", payload={}, idempotency_key="k")])
        )
        written = [f.result().events[0] for f in futures]
        again = clash.result().events[0]
        assert again.stream_id == "s-0"  # found by its key, not written twice
        assert [e.seq for e in written] == [1] * 5
        positions = [e.position for e in written]
        assert positions == sorted(positions) and len(set(positions)) == 5
        with store.engine.connect() as conn:
            stored = conn.execute(
                select(schema.events.c.position, schema.events.c.payload)
                .where(schema.events.c.type == "B")
                .order_by(schema.events.c.position)
            ).all()
        assert [(p, {"i": i}) for p, i in zip(positions, range(1, 6), strict=True)] == [
            (int(p), payload) for p, payload in stored
        ]
    finally:
        store.dispose()
