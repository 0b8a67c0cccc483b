"""Raw events into a PostgreSQL warehouse, for the dbt ``postgres`` target (beyond one machine).

The same incremental contract as the DuckDB ``raw_events`` asset: a cursor on
the global position, payload kept as JSON text, nothing copied twice.
"""

from __future__ import annotations

import json

from sqlalchemy import Engine, text

from nofx.store import EventStore

DDL = """
create schema if not exists raw;
create table if not exists raw.raw_events (
    position bigint primary key,
    stream_id varchar not null,
    stream_type varchar not null,
    seq integer not null,
    type varchar not null,
    tenant_id varchar not null,
    occurred_at timestamp not null,
    idempotency_key varchar,
    payload text not null,
    loaded_at timestamp not null default (now() at time zone 'utc')
);
"""

INSERT = text(
    "insert into raw.raw_events (position, stream_id, stream_type, seq, type, tenant_id, occurred_at, "
    "idempotency_key, payload) values (:position, :stream_id, :stream_type, :seq, :type, :tenant_id, "
    ":occurred_at, :idempotency_key, :payload) on conflict (position) do nothing"
)


def land_raw_events(store: EventStore, warehouse: Engine, batch: int = 5_000) -> int:
    """Copy events after the warehouse's last position; returns rows added."""
    with warehouse.begin() as conn:
        for statement in DDL.split(";"):
            if statement.strip():
                conn.execute(text(statement))
        cursor = (
            conn.execute(text("select coalesce(max(position), 0) from raw.raw_events")).scalar()
            or 0
        )
    added = 0
    while True:
        events = store.read_all(after_position=int(cursor), limit=batch)
        if not events:
            return added
        rows = [
            {
                "position": e.position,
                "stream_id": e.stream_id,
                "stream_type": e.stream_type,
                "seq": e.seq,
                "type": e.type,
                "tenant_id": e.tenant_id,
                "occurred_at": e.occurred_at.replace(tzinfo=None),
                "idempotency_key": e.idempotency_key,
                "payload": json.dumps(e.payload),
            }
            for e in events
        ]
        with warehouse.begin() as conn:
            conn.execute(INSERT, rows)
        added += len(rows)
        cursor = events[-1].position
