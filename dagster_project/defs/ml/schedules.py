"""The nightly rebuild: every unpartitioned asset, models retrained included."""

import dagster as dg

from dagster_project.lib import groups

everything = dg.define_asset_job(
    "everything",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups(groups.DAILY),
    description="Every unpartitioned asset: raw events, dbt staging and marts, the models, "
    "forecasts and operations (the daily marts have their own job, one day per run).",
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
