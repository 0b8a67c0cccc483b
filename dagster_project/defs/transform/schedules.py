"""The daily marts: one UTC day (or a range of days, in one run) rebuilt at a time."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from dagster_project.lib import groups
from dagster_project.lib.partitions import DAILY_PARTITIONS

daily_rollup = dg.define_asset_job(
    "daily_rollup",
    selection=dg.AssetSelection.groups(groups.DAILY),
    partitions_def=DAILY_PARTITIONS,
    description="Rebuild one day (or a range of days, in one run) of the daily marts.",
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
