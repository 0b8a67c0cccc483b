"""The hot path's driver-level statements store exactly what SQLAlchemy Core would."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from nofx.store import EventStore, schema
from nofx.store.driver import DriverStatement, dumps

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
EVENT_COLUMNS = (
    "stream_id",
    "stream_type",
    "seq",
    "type",
    "tenant_id",
    "occurred_at",
    "idempotency_key",
    "payload",
)


@given(json_values)
def test_dumps_is_json_the_standard_library_reads_back(value: object) -> None:
    assert json.loads(dumps(value)) == value


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    payloads=st.lists(
        st.dictionaries(st.text(max_size=8), json_values, max_size=4), min_size=1, max_size=6
    ),
    offset_us=st.integers(min_value=0, max_value=10**12),
    keyed=st.booleans(),
)
def test_event_rows_through_the_driver_equal_rows_through_core(
    tmp_path: Path, payloads: list[dict], offset_us: int, keyed: bool
) -> None:
    store = EventStore(f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.db'}")
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=offset_us)
    try:
        rows = [
            {
                "stream_id": f"{side}-s",
                "stream_type": "t",
                "seq": i + 1,
                "type": "E",
                "tenant_id": "default",
                "occurred_at": at,
                "idempotency_key": f"{side}/{i}" if keyed else None,
                "payload": payload,
            }
            for side in ("driver", "core")
            for i, payload in enumerate(payloads)
        ]
        half = len(payloads)
        with store.transaction() as tx:
            DriverStatement(schema.events, EVENT_COLUMNS).execute(tx.conn, rows[:half])
            tx.conn.execute(schema.events.insert(), rows[half:])
        with store.engine.connect() as conn:
            stored = conn.execute(select(schema.events).order_by(schema.events.c.position)).all()
            raw = conn.exec_driver_sql("SELECT occurred_at FROM events").scalars().all()
        driver, core = stored[:half], stored[half:]
        for d, c in zip(driver, core, strict=True):
            assert (d.seq, d.type, d.occurred_at, d.payload) == (
                c.seq,
                c.type,
                c.occurred_at,
                c.payload,
            )
            assert (d.idempotency_key is None) == (c.idempotency_key is None)
        assert len(set(raw)) == 1  # the same text for the same instant, whoever wrote it
    finally:
        store.dispose()


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    attempts=st.integers(min_value=0, max_value=50),
    cost=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    output=st.none() | st.text(max_size=30),
)
def test_session_update_through_the_driver_changes_only_its_columns(
    tmp_path: Path, attempts: int, cost: float, output: str | None
) -> None:
    store = EventStore(f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.db'}")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    row = {
        "session_id": "s1",
        "tenant_id": "default",
        "pattern": "solo",
        "status": "requested",
        "request": {"task": {"prompt": "p"}},
        "agent_id": None,
        "attempts": 0,
        "cost_usd": 0.0,
        "input_tokens": 0,
        "output_tokens": 0,
        "output": None,
        "error_type": None,
        "created_at": now,
        "updated_at": now,
        "version": 1,
    }
    changed = dict(
        row,
        attempts=attempts,
        cost_usd=cost,
        output=output,
        status="running",
        version=2,
        updated_at=now + timedelta(seconds=1),
        request={"ignored": True},
    )
    columns = ("status", "attempts", "cost_usd", "output", "updated_at", "version")
    try:
        with store.transaction() as tx:
            DriverStatement(schema.sessions, sorted(row)).execute(tx.conn, [row])
            DriverStatement(schema.sessions, columns, key="session_id").execute(tx.conn, [changed])
        with store.engine.connect() as conn:
            got = conn.execute(select(schema.sessions)).one()._mapping
        for column in columns:
            want = changed[column]
            value = got[column]
            if column == "updated_at":
                value = value.replace(tzinfo=UTC)
            assert value == want
        assert got["request"] == row["request"]  # not among the updated columns
        assert got["created_at"].replace(tzinfo=UTC) == now
    finally:
        store.dispose()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(picks=st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=12))
def test_a_value_shared_by_consecutive_rows_is_converted_once_and_stored_per_row(
    tmp_path: Path, picks: list[int]
) -> None:
    """The driver reuses a column's converted value when a row holds the very object of the
    row before; rows holding other objects (or an equal copy) are converted themselves."""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    times = [base, base + timedelta(seconds=1), base + timedelta(seconds=2), base]
    payloads: list[dict] = [{"a": 1}, {"b": [2]}, {"a": 1}, {}]
    store = EventStore(f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.db'}")
    try:
        rows = [
            {
                "stream_id": "s",
                "stream_type": "t",
                "seq": i + 1,
                "type": "E",
                "tenant_id": "default",
                "occurred_at": times[p],
                "idempotency_key": None,
                "payload": payloads[p],
            }
            for i, p in enumerate(picks)
        ]
        with store.transaction() as tx:
            DriverStatement(schema.events, EVENT_COLUMNS).execute(tx.conn, rows)
        with store.engine.connect() as conn:
            stored = conn.execute(select(schema.events).order_by(schema.events.c.seq)).all()
        assert [(s.occurred_at.replace(tzinfo=UTC), s.payload) for s in stored] == [
            (times[p], payloads[p]) for p in picks
        ]
    finally:
        store.dispose()


def _session_row(sid: str, now: datetime) -> dict:
    return {
        "session_id": sid,
        "tenant_id": "default",
        "pattern": "solo",
        "status": "requested",
        "request": {"task": {"prompt": sid}},
        "agent_id": None,
        "attempts": 0,
        "cost_usd": 0.0,
        "input_tokens": 0,
        "output_tokens": 0,
        "output": None,
        "error_type": None,
        "created_at": now,
        "updated_at": now,
        "version": 1,
    }


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sessions=st.integers(min_value=1, max_value=150),
    updates=st.lists(st.tuples(st.integers(0, 149), st.integers(0, 99)), min_size=1, max_size=150),
)
def test_many_rows_through_the_driver_store_what_core_stores(
    tmp_path: Path, sessions: int, updates: list[tuple[int, int]]
) -> None:
    """Inserts and updates of up to 150 rows leave the same table as Core's statements;
    an update touching a row twice keeps the last, as row by row would; inserted rows get
    consecutive positions in order (what the writer's position arithmetic relies on)."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    columns = ("status", "attempts", "output", "updated_at", "version")
    results = []
    for side in ("driver", "core"):
        store = EventStore(f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.db'}")
        try:
            rows = [_session_row(f"s{i}", now) for i in range(sessions)]
            changes = [
                {
                    "session_id": f"s{target % sessions}",
                    "status": "running",
                    "attempts": n,
                    "output": f"o{n}",
                    "updated_at": now + timedelta(seconds=n),
                    "version": n + 2,
                }
                for target, n in updates
            ]
            events = [
                {
                    "stream_id": "s",
                    "stream_type": "t",
                    "seq": i + 1,
                    "type": "E",
                    "tenant_id": "default",
                    "occurred_at": now,
                    "idempotency_key": f"k{i}",
                    "payload": {"i": i},
                }
                for i in range(sessions)
            ]
            with store.transaction() as tx:
                if side == "driver":
                    DriverStatement(schema.sessions, sorted(rows[0])).execute(tx.conn, rows)
                    DriverStatement(schema.sessions, columns, key="session_id").execute(
                        tx.conn, changes
                    )
                    DriverStatement(schema.events, EVENT_COLUMNS).execute(tx.conn, events)
                else:
                    tx.conn.execute(schema.sessions.insert(), rows)
                    for change in changes:  # in order: the last change of a row wins
                        tx.conn.execute(
                            schema.sessions.update()
                            .where(schema.sessions.c.session_id == change["session_id"])
                            .values({c: change[c] for c in columns})
                        )
                    tx.conn.execute(schema.events.insert(), events)
            with store.engine.connect() as conn:
                got = conn.execute(select(schema.sessions).order_by("session_id")).all()
                stored = conn.execute(select(schema.events).order_by("position")).all()
            assert [e.seq for e in stored] == list(range(1, sessions + 1))
            assert [e.position for e in stored] == list(range(1, sessions + 1))
            results.append(([tuple(r) for r in got], [(e.seq, e.payload) for e in stored]))
        finally:
            store.dispose()
    assert results[0] == results[1]


@given(json_values)
def test_a_json_value_is_bound_as_cores_processor_binds_it(value: object) -> None:
    from sqlalchemy import JSON
    from sqlalchemy.dialects import sqlite

    from nofx.store.driver import json_text

    dialect = sqlite.dialect(json_serializer=dumps)
    core = schema.events.c.payload.type.dialect_impl(dialect).bind_processor(dialect)
    fast = json_text(core, dialect)
    assert fast is not core  # the dict path is taken for this dialect
    for bound in (value, {"v": value}, JSON.NULL):
        assert fast(bound) == core(bound)


def test_a_statement_on_the_cursor_fails_as_core_fails_and_begins_as_core_begins(
    tmp_path: Path,
) -> None:
    from sqlalchemy.exc import IntegrityError

    from nofx.store.driver import run_on_cursor

    store = EventStore(f"sqlite:///{tmp_path / 'cursor.db'}")
    insert_row = (
        "INSERT INTO events (stream_id, stream_type, seq, type, tenant_id, occurred_at, payload)"
        " VALUES ('s', 't', 1, 'E', 'default', '2026-01-01 00:00:00.000000', '{}')"
    )
    try:
        with store.engine.connect() as conn:
            run_on_cursor(conn, insert_row)
            assert conn.in_transaction()  # autobegun, as Core would have
            with pytest.raises(IntegrityError):
                run_on_cursor(conn, insert_row)  # (stream_id, seq) is unique
            conn.rollback()
        assert store.count_events() == 0  # the autobegun transaction was rolled back
    finally:
        store.dispose()
