"""Jobs: run requested sessions with the nofx runtime, refresh the warehouse, rebuild everything."""

import asyncio

import dagster as dg

from dagster_project.defs.ingest import raw_events
from dagster_project.defs.operations import OPERATIONS_GROUP
from dagster_project.defs.transform import DAILY_GROUP, DAILY_PARTITIONS, TRANSFORM_GROUP
from dagster_project.resources import EventStoreResource
from nofx.runtime import Runtime, RuntimeConfig


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


everything = dg.define_asset_job(
    "everything",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups(DAILY_GROUP),
    description="Every unpartitioned asset: raw events, dbt staging and marts, the models, "
    "forecasts and operations (the daily marts have their own job, one day per run).",
)

refresh_warehouse = dg.define_asset_job(
    "refresh_warehouse",
    selection=dg.AssetSelection.assets(raw_events)
    | dg.AssetSelection.groups(TRANSFORM_GROUP, DAILY_GROUP, OPERATIONS_GROUP),
    partitions_def=DAILY_PARTITIONS,
    description="Land new events, rebuild the dbt models and the day's partition of the daily "
    "marts, score prediction accuracy and evaluate the alert rules (no retraining).",
)

daily_rollup = dg.define_asset_job(
    "daily_rollup",
    selection=dg.AssetSelection.groups(DAILY_GROUP),
    partitions_def=DAILY_PARTITIONS,
    description="Rebuild one day (or a range of days, in one run) of the daily marts.",
)
