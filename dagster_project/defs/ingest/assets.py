"""Ingest: every event from the nofx event store, landed incrementally in ``raw.raw_events``
(the copy itself is ``lib.raw_events``)."""

import dagster as dg

from dagster_project.lib import groups
from dagster_project.lib.raw_events import RAW_TABLE, copy_new_events
from dagster_project.lib.resources import EventStoreResource, WarehouseResource
from dagster_project.lib.warehouse import scalar


@dg.asset(
    group_name=groups.INGEST,
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
