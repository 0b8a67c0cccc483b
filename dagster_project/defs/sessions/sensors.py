"""Sessions: run the sessions waiting in status 'requested' with the nofx runtime.

The sensor is off by default because `nofx up` starts a `nofx worker` that runs sessions
as they arrive; turn it on in a deployment without workers.
"""

import asyncio
import json

import dagster as dg
from sqlalchemy import func, select

from dagster_project.lib.cursors import read_cursor
from dagster_project.lib.resources import EventStoreResource
from nofx.domain import SessionStatus
from nofx.runtime import Runtime, RuntimeConfig
from nofx.store.schema import sessions


class RunSessionsConfig(dg.Config):
    """How the runtime runs: ``time_scale`` multiplies simulated latencies (0 = instant)."""

    time_scale: float = 1.0
    limit: int | None = None


@dg.op(description="Claim and run every requested session with the nofx runtime.")
def run_pending_sessions(
    context: dg.OpExecutionContext, config: RunSessionsConfig, event_store: EventStoreResource
) -> dict[str, int]:
    with event_store.open() as store:
        runtime = Runtime(store, config=RuntimeConfig(time_scale=config.time_scale))
        summary = asyncio.run(runtime.run_pending(limit=config.limit))
    outcome = {
        "sessions": len(summary.sessions),
        "succeeded": summary.succeeded,
        "failed": summary.failed,
        "interrupted": len(summary.interrupted),
    }
    context.log.info(f"runtime finished: {outcome}")
    context.add_output_metadata(dict(outcome))
    return outcome


@dg.job(description="Run the sessions waiting in status 'requested' (launched by a sensor).")
def run_requested_sessions() -> None:
    run_pending_sessions()


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
