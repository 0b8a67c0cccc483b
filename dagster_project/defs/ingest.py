"""Land new events from the event store into the warehouse table ``raw.raw_events``.

Incremental by construction: the cursor is the highest position already in DuckDB,
so a re-run (or a crash mid-way) never copies an event twice. Every event type is
taken as-is; the payload stays JSON text for dbt to parse.
"""

import json
from dataclasses import dataclass
from typing import Any

import dagster as dg
import duckdb
import polars as pl

from dagster_project.resources import EventStoreResource, WarehouseResource
from nofx.domain import Event
from nofx.store import EventStore

RAW_SCHEMA = "raw"
RAW_TABLE = "raw.raw_events"
BATCH_SIZE = 5_000
LATE_COMMIT_LOOKBACK = 1_000

RAW_EVENTS_DDL = f"""
create schema if not exists {RAW_SCHEMA};
create table if not exists {RAW_TABLE} (
    position bigint not null,
    stream_id varchar not null,
    stream_type varchar not null,
    seq integer not null,
    type varchar not null,
    tenant_id varchar not null,
    occurred_at timestamp not null,
    idempotency_key varchar,
    payload varchar not null,
    loaded_at timestamp not null
);
"""

RAW_COLUMNS = {
    "position": pl.Int64,
    "stream_id": pl.String,
    "stream_type": pl.String,
    "seq": pl.Int32,
    "type": pl.String,
    "tenant_id": pl.String,
    "occurred_at": pl.Datetime("us"),
    "idempotency_key": pl.String,
    "payload": pl.String,
}


@dataclass(frozen=True)
class IngestResult:
    rows_added: int
    last_position: int
    batches: int


def scalar(conn: duckdb.DuckDBPyConnection, sql: str) -> Any:
    """The first value of a query, with the result fully consumed (DuckDB 2 insists)."""
    rows = conn.execute(sql).fetchall()
    return rows[0][0] if rows else None


def ensure_raw_table(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(RAW_EVENTS_DDL)


def warehouse_cursor(conn: duckdb.DuckDBPyConnection) -> int:
    """The highest event position already landed (0 for an empty warehouse)."""
    return int(scalar(conn, f"select coalesce(max(position), 0) from {RAW_TABLE}"))


def events_frame(events: list[Event]) -> pl.DataFrame:
    """Events as a typed frame: UTC timestamps without zone, payload as JSON text."""
    return pl.DataFrame(
        {
            "position": [e.position for e in events],
            "stream_id": [e.stream_id for e in events],
            "stream_type": [e.stream_type for e in events],
            "seq": [e.seq for e in events],
            "type": [e.type for e in events],
            "tenant_id": [e.tenant_id for e in events],
            "occurred_at": [e.occurred_at.replace(tzinfo=None) for e in events],
            "idempotency_key": [e.idempotency_key for e in events],
            "payload": [json.dumps(e.payload, sort_keys=True, default=str) for e in events],
        },
        schema=RAW_COLUMNS,
    )


def default_lookback(store: EventStore) -> int:
    """How far behind the cursor to look again for events committed late.

    SQLite serialises writers, so positions commit in order. On PostgreSQL a transaction
    holding a lower position can commit after a higher one was read; re-reading a window
    below the cursor (and skipping positions already landed) picks such events up.
    """
    return 0 if store.dialect == "sqlite" else LATE_COMMIT_LOOKBACK


def copy_new_events(
    store: EventStore,
    conn: duckdb.DuckDBPyConnection,
    *,
    batch_size: int = BATCH_SIZE,
    lookback: int | None = None,
) -> IngestResult:
    """Copy events after the warehouse cursor in batches, one DuckDB transaction per batch.

    Positions already in the warehouse are skipped, so the copy is idempotent.
    """
    ensure_raw_table(conn)
    cursor = warehouse_cursor(conn)
    window = default_lookback(store) if lookback is None else lookback
    read_from = max(0, cursor - window)
    added = batches = 0
    while True:
        events = store.read_all(after_position=read_from, limit=batch_size)
        if not events:
            break
        conn.register("incoming_events", events_frame(events))
        try:
            conn.execute("begin transaction")
            inserted = conn.execute(
                f"insert into {RAW_TABLE} "
                "select *, cast(now() as timestamp) as loaded_at from incoming_events "
                f"where position not in (select position from {RAW_TABLE} "
                f"where position between {events[0].position} and {events[-1].position})"
            ).fetchall()
            conn.execute("commit")
        finally:
            conn.unregister("incoming_events")
        added += int(inserted[0][0]) if inserted else 0
        batches += 1
        read_from = events[-1].position
        cursor = max(cursor, read_from)
    return IngestResult(rows_added=added, last_position=cursor, batches=batches)


@dg.asset(
    group_name="ingest",
    kinds={"duckdb", "python"},
    description="Every event from the nofx event store, copied incrementally into raw.raw_events.",
)
def raw_events(
    context: dg.AssetExecutionContext,
    event_store: EventStoreResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    with event_store.open() as store, warehouse.connect() as conn:
        result = copy_new_events(store, conn)
        total = int(scalar(conn, f"select count(*) from {RAW_TABLE}"))
    context.log.info(
        f"raw_events: +{result.rows_added} rows in {result.batches} batches "
        f"(last position {result.last_position})"
    )
    return dg.MaterializeResult(
        metadata={
            "rows_added": result.rows_added,
            "last_position": result.last_position,
            "batches": result.batches,
            "dagster/row_count": total,
        }
    )
