"""Raw events into a PostgreSQL warehouse outside a Dagster run (tests, one-off loads).

The ``raw_events`` asset does the same through ``WarehouseResource`` when the dbt target is
``postgres``; both are ``lib.raw_events.copy_new_events`` on a ``PostgresConnection``
(ADR 0026): the same cursor on the global position, payload kept as JSON text, nothing
copied twice.
"""

from __future__ import annotations

from dagster_project.lib.raw_events import copy_new_events
from nofx.store import EventStore
from nofx.warehouse import postgres


def land_raw_events(store: EventStore, warehouse_url: str, batch: int = 5_000) -> int:
    """Copy events after the warehouse's last position into ``raw.raw_events``; returns rows
    added."""
    with postgres.connect(warehouse_url) as conn:
        return copy_new_events(store, conn, batch_size=batch).rows_added
