"""Refresh on new events: land them, rebuild the marts and re-evaluate the alerts.

On by default, so `make up` needs no click in the UI. The refresh job spans the ingest,
transform, daily and operations groups (no retraining: that is the nightly schedule).
"""

import json
from datetime import UTC, datetime

import dagster as dg
from sqlalchemy import Connection, func, select

from dagster_project.lib import groups
from dagster_project.lib.cursors import read_cursor
from dagster_project.lib.partitions import DAILY_PARTITIONS
from dagster_project.lib.resources import EventStoreResource
from nofx.alerts import STREAM_TYPE as ALERT_STREAM_TYPE
from nofx.store.schema import events

# Events the refresh writes itself (the alert rules' AlertRaised/Repeated/Resolved): they
# must not start another refresh, or every refresh would start the next one, forever.
WRITTEN_BY_THE_REFRESH = (ALERT_STREAM_TYPE,)


def last_outside_position(conn: Connection) -> int:
    """The newest event's position, not counting the refresh's own writes."""
    query = select(func.max(events.c.position)).where(
        events.c.stream_type.not_in(WRITTEN_BY_THE_REFRESH)
    )
    return int(conn.execute(query).scalar() or 0)


refresh_warehouse = dg.define_asset_job(
    "refresh_warehouse",
    selection=dg.AssetSelection.assets("raw_events")
    | dg.AssetSelection.groups(groups.TRANSFORM, groups.DAILY, groups.OPERATIONS),
    partitions_def=DAILY_PARTITIONS,
    description="Land new events, rebuild the dbt models and the day's partition of the daily "
    "marts, score prediction accuracy and evaluate the alert rules (no retraining).",
)


@dg.sensor(
    job=refresh_warehouse,
    minimum_interval_seconds=60,
    description="Refreshes raw_events, the dbt models, prediction accuracy and the alerts "
    "when new events land in the store (at most once a minute). On by default.",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def new_events_sensor(
    context: dg.SensorEvaluationContext, event_store: EventStoreResource
) -> dg.SensorResult | dg.SkipReason:
    with event_store.open() as store, store.engine.connect() as conn:
        last = last_outside_position(conn)
    seen = int(read_cursor(context.cursor).get("last_position", 0))
    if last <= seen:
        return dg.SkipReason(f"no new events since position {seen}")
    today = datetime.now(UTC).strftime("%Y-%m-%d")  # the daily marts' partition that grows
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"events/{last}",
                partition_key=today,
                tags={"nofx/new_events": str(last - seen)},
            )
        ],
        cursor=json.dumps({"last_position": last}),
    )
