"""Refresh on new events: land them, rebuild the marts and re-evaluate the alerts.

On by default, so `make up` needs no click in the UI. The refresh job spans the ingest,
transform, daily and operations groups (no retraining: that is the nightly schedule).
"""

import json
import time
from datetime import UTC, datetime

import dagster as dg
from sqlalchemy import Connection, func, select

from dagster_project.lib import groups
from dagster_project.lib.cursors import read_cursor
from dagster_project.lib.partitions import DAILY_PARTITIONS
from dagster_project.lib.resources import EventStoreResource
from nofx.alerts import STREAM_TYPE as ALERT_STREAM_TYPE
from nofx.data_contract import StreamType
from nofx.store.schema import events

# Events the refresh writes itself (the alert rules' AlertRaised/Repeated/Resolved): they
# must not start another refresh, or every refresh would start the next one, forever.
WRITTEN_BY_THE_REFRESH = (ALERT_STREAM_TYPE,)
# The API's own telemetry: request usage, latency windows, the audit trail of writes (each
# write also writes its own events, which count as activity). Every request writes some, a
# health probe too, so a monitored `nofx up` had a full refresh every minute, forever;
# telemetry alone refreshes the warehouse at most every TELEMETRY_REFRESH_S.
TELEMETRY = (StreamType.API_USAGE, StreamType.API_METRICS, StreamType.AUDIT)
TELEMETRY_REFRESH_S = 15 * 60
ACTIVITY = tuple(t for t in StreamType if t not in TELEMETRY and t not in WRITTEN_BY_THE_REFRESH)


def last_positions(conn: Connection) -> tuple[int, int]:
    """The newest position of the fleet's activity and of the API's telemetry: one index
    lookup per stream type (events' (stream_type, position) index)."""
    newest = {
        kind: int(
            conn.execute(
                select(func.max(events.c.position)).where(events.c.stream_type == kind)
            ).scalar()
            or 0
        )
        for kind in (*ACTIVITY, *TELEMETRY)
    }
    return max(newest[k] for k in ACTIVITY), max(newest[k] for k in TELEMETRY)


def refresh_due(
    activity: int, telemetry: int, seen: int, refreshed_at: float | None, now: float
) -> bool:
    """Whether to refresh (pure): on any new fleet activity since position ``seen``; on new
    telemetry alone only once TELEMETRY_REFRESH_S have passed since the last refresh."""
    if activity > seen:
        return True
    if telemetry <= seen:
        return False
    return refreshed_at is None or now - refreshed_at >= TELEMETRY_REFRESH_S


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
    "when the fleet writes new events (at most once a minute; API telemetry alone at most "
    "every 15 minutes). On by default.",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def new_events_sensor(
    context: dg.SensorEvaluationContext, event_store: EventStoreResource
) -> dg.SensorResult | dg.SkipReason:
    with event_store.open() as store, store.engine.connect() as conn:
        activity, telemetry = last_positions(conn)
    cursor = read_cursor(context.cursor)
    seen = int(cursor.get("last_position", 0))
    stamp = cursor.get("refreshed_at")
    refreshed_at = float(stamp) if isinstance(stamp, int | float) else None
    now = time.time()
    if not refresh_due(activity, telemetry, seen, refreshed_at, now):
        if telemetry > seen:
            return dg.SkipReason(
                f"only API telemetry since position {seen}: refreshed at most every "
                f"{TELEMETRY_REFRESH_S // 60} minutes for it"
            )
        return dg.SkipReason(f"no new events since position {seen}")
    last = max(activity, telemetry)
    today = datetime.now(UTC).strftime("%Y-%m-%d")  # the daily marts' partition that grows
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"events/{last}",
                partition_key=today,
                tags={"nofx/new_events": str(last - seen)},
            )
        ],
        cursor=json.dumps({"last_position": last, "refreshed_at": now}),
    )
