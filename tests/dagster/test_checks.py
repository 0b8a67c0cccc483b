"""Great Expectations checks fail on bad data, and a failed blocking check stops downstream."""

from __future__ import annotations

from datetime import datetime

import dagster as dg
import duckdb
import polars as pl

from dagster_project.defs.ingest.assets import raw_events
from dagster_project.defs.ingest.checks import (
    raw_events_known_stream_types,
    raw_events_row_suite,
    raw_events_valid,
    validate_raw_events,
)
from dagster_project.defs.transform.checks import agent_sessions_suite
from dagster_project.lib.expectations import validate
from dagster_project.lib.raw_events import RAW_TABLE, copy_new_events, ensure_raw_table
from dagster_project.lib.resources import EventStoreResource, WarehouseResource
from nofx.settings import Settings
from nofx.store import EventStore


def insert_raw(settings: Settings, rows: list[tuple]) -> None:
    with duckdb.connect(str(settings.warehouse_path)) as conn:
        ensure_raw_table(conn)
        conn.executemany(f"insert into {RAW_TABLE} values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def good_row(position: int, stream_type: str = "session") -> tuple:
    now = datetime(2026, 1, 1, 12, 0, 0)
    return (
        position,
        f"{stream_type}-x",
        stream_type,
        position,
        "SessionRequested",
        "default",
        now,
        None,
        '{"session_id": "x"}',
        now,
    )


@dg.asset(deps=[raw_events])
def downstream_of_raw_events() -> None:
    """Stands in for dbt: must not run when the blocking check fails."""


def resources(settings: Settings) -> dict:
    return {
        "event_store": EventStoreResource(database_url=settings.database_url),
        "warehouse": WarehouseResource(path=str(settings.warehouse_path)),
    }


def test_blocking_check_fails_on_bad_rows_and_stops_downstream(
    settings: Settings, store: EventStore
) -> None:
    duplicate = good_row(1)
    broken_payload = (*good_row(2)[:8], "{not json", good_row(2)[9])
    insert_raw(settings, [good_row(1), duplicate, broken_payload])
    result = dg.materialize(
        [raw_events, raw_events_valid, downstream_of_raw_events],
        resources=resources(settings),
        raise_on_error=False,
    )
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed
    failures = evaluation.metadata["failures"].value
    assert any("expect_column_values_to_be_unique(position)" in f for f in failures.values())
    assert any("json_parseable(payload)" in f for f in failures.values())
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {"raw_events"}  # downstream blocked


def test_checks_pass_on_real_events_and_warn_on_unknown_stream_types(
    settings: Settings, store: EventStore, fleet
) -> None:
    with duckdb.connect(str(settings.warehouse_path)) as conn:
        copy_new_events(store, conn)
    last = store.last_position()
    insert_raw(settings, [good_row(last + 1, stream_type="telepathy")])
    result = dg.materialize(
        [raw_events, raw_events_valid, raw_events_known_stream_types, downstream_of_raw_events],
        resources=resources(settings),
        raise_on_error=False,
    )
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evaluations["raw_events_valid"].passed
    warning = evaluations["raw_events_known_stream_types"]
    assert not warning.passed and warning.severity == dg.AssetCheckSeverity.WARN
    assert warning.metadata["unknown_stream_types"].value == "telepathy"
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "downstream_of_raw_events" in materialized  # a warning does not block


def test_agent_sessions_suite_catches_negative_cost_duplicates_and_unknown_agents() -> None:
    good = pl.DataFrame(
        {
            "session_id": ["a", "b"],
            "succeeded": [True, False],
            "cost_usd": [0.1, 0.0],
            "attempts": [1, 2],
            "agent_id": ["agt_1", None],
        }
    )
    assert validate(good, agent_sessions_suite(["agt_1"]), "sessions").passed
    bad = good.with_columns(
        pl.Series("session_id", ["a", "a"]),
        pl.Series("cost_usd", [-0.1, 0.0]),
        pl.Series("agent_id", ["agt_9", None]),
    )
    outcome = validate(bad, agent_sessions_suite(["agt_1"]), "sessions")
    assert not outcome.passed
    assert len(outcome.failures) == 3


def test_raw_suite_rejects_missing_columns() -> None:
    frame = pl.DataFrame({"position": [1]})
    outcome = validate(frame, raw_events_row_suite()[:1], "raw")
    assert not outcome.passed and outcome.rows == 1


def test_ingest_is_idempotent_and_picks_up_a_late_commit(
    settings: Settings, store: EventStore, fleet
) -> None:
    """A gap below the cursor (an event committed after a later one was read, as can happen
    on PostgreSQL) is filled by the look-back window, without duplicating anything."""
    with duckdb.connect(str(settings.warehouse_path)) as conn:
        first = copy_new_events(store, conn, batch_size=4)
        assert first.rows_added == store.count_events() == first.last_position
        assert first.batches == -(-first.rows_added // 4)
        conn.execute(f"delete from {RAW_TABLE} where position = 3")
        assert copy_new_events(store, conn).rows_added == 0  # SQLite: no look-back needed
        late = copy_new_events(store, conn, lookback=5, batch_size=2)
        assert late.rows_added == 1
        positions = [r[0] for r in conn.execute(f"select position from {RAW_TABLE}").fetchall()]
    assert sorted(positions) == list(range(1, store.count_events() + 1))


def test_batched_validation_finds_duplicates_across_batches_and_bad_rows_in_any(
    settings: Settings,
) -> None:
    """Batches bound memory; keys are still checked over the whole table."""
    rows = [good_row(p) for p in range(1, 8)]
    rows.append((*good_row(9)[:3], 3, *good_row(9)[4:]))  # (stream, seq) of row 3 again
    rows.append((*good_row(10)[:8], "{not json", good_row(10)[9]))  # in the last batch
    insert_raw(settings, rows)
    warehouse = WarehouseResource(path=str(settings.warehouse_path))
    outcome = validate_raw_events(warehouse, chunk_rows=3)
    assert not outcome.passed and outcome.rows == 9
    described = " ".join(outcome.failures.values())
    assert "compound_columns_to_be_unique" in described
    assert "json_parseable(payload): unexpected=1" in described
    assert any(key.startswith("batch 3/") for key in outcome.failures)  # rows 9-10: batch 3
    clean = validate_raw_events(warehouse, chunk_rows=100)
    assert clean.failures.keys() != outcome.failures.keys()  # batch labels follow the batching
