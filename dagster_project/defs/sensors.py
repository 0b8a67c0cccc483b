"""Sensors and schedules: run requested sessions, refresh on new events, retrain nightly.

The ones that keep marts, models and alerts fresh (new events, nightly retrain, daily
rollup) run by default, so `make up` needs no click in the UI. The requested-sessions
sensor is off by default because `nofx up` starts a `nofx worker` that runs sessions
as they arrive; turn it on in a deployment without workers. Sensor cursors are JSON,
so the UI shows what a sensor last acted on.
"""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
from sqlalchemy import Connection, func, select

from dagster_project.defs.jobs import (
    daily_rollup,
    everything,
    refresh_warehouse,
    run_requested_sessions,
)
from dagster_project.defs.transform import DAILY_PARTITIONS
from dagster_project.resources import EventStoreResource
from nofx.alerts import STREAM_TYPE as ALERT_STREAM_TYPE
from nofx.domain import SessionStatus
from nofx.store.schema import events, sessions

# Events the refresh writes itself (the alert rules' AlertRaised/Repeated/Resolved): they
# must not start another refresh, or every refresh would start the next one, forever.
WRITTEN_BY_THE_REFRESH = (ALERT_STREAM_TYPE,)


def last_outside_position(conn: Connection) -> int:
    """The newest event's position, not counting the refresh's own writes."""
    query = select(func.max(events.c.position)).where(
        events.c.stream_type.not_in(WRITTEN_BY_THE_REFRESH)
    )
    return int(conn.execute(query).scalar() or 0)


def read_cursor(raw: str | None) -> dict:
    """A sensor cursor as a dict ({} when unset or unreadable, so a bad cursor self-heals)."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


@dg.sensor(
    job=run_requested_sessions,
    minimum_interval_seconds=15,
    description="Launches the runtime when sessions wait in status 'requested'. Off by "
    "default: `nofx up` runs a `nofx worker`; turn it on where no worker runs.",
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def requested_sessions_sensor(
    context: dg.SensorEvaluationContext, event_store: EventStoreResource
) -> dg.SensorResult | dg.SkipReason:
    requested = sessions.c.status == SessionStatus.REQUESTED.value
    with event_store.open() as store, store.engine.connect() as conn:
        waiting = int(conn.execute(select(func.count()).where(requested)).scalar() or 0)
        newest = conn.execute(
            select(sessions.c.session_id, sessions.c.created_at)
            .where(requested)
            .order_by(sessions.c.created_at.desc(), sessions.c.session_id.desc())
            .limit(1)
        ).first()
    if newest is None:
        return dg.SkipReason("no sessions in status 'requested'")
    cursor = read_cursor(context.cursor)
    if cursor.get("newest_session_id") == newest.session_id:
        return dg.SkipReason(
            f"{waiting} requested session(s) already handed to a run (newest {newest.session_id})"
        )
    new_cursor = {
        "newest_session_id": newest.session_id,
        "newest_created_at": newest.created_at.isoformat(),
        "waiting": waiting,
    }
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"requested-sessions/{newest.session_id}",
                tags={"nofx/requested_sessions": str(waiting)},
            )
        ],
        cursor=json.dumps(new_cursor),
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


nightly_retrain = dg.ScheduleDefinition(
    name="nightly_retrain",
    job=everything,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    description="Rebuild the warehouse and retrain the models every night at 02:00 UTC. "
    "On by default.",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)


@dg.schedule(
    job=daily_rollup,
    cron_schedule="30 0 * * *",
    execution_timezone="UTC",
    description="At 00:30 UTC, rebuild yesterday's partition of the daily marts with its "
    "late events included. On by default.",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def daily_rollup_schedule(
    context: dg.ScheduleEvaluationContext,
) -> dg.RunRequest | dg.SkipReason:
    tick = context.scheduled_execution_time or datetime.now(UTC)
    yesterday = (tick.astimezone(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    if yesterday < DAILY_PARTITIONS.start.strftime("%Y-%m-%d"):
        return dg.SkipReason(
            f"no events before {DAILY_PARTITIONS.start:%Y-%m-%d}: nothing to roll up"
        )
    return dg.RunRequest(run_key=f"daily/{yesterday}", partition_key=yesterday)
