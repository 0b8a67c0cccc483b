"""The root: assembles every asset, check, job, sensor and schedule with their resources.

Lazy (``@dg.definitions``): dbt is parsed only when Dagster loads the definitions.
"""

import dagster as dg

from dagster_project.resources import build_resources


@dg.definitions
def defs() -> dg.Definitions:
    from dagster_project.defs.alerting import (
        alert_forecasts,
        custom_metric_values,
        forecasts_materialised_sensor,
    )
    from dagster_project.defs.checks import (
        agent_sessions_valid,
        raw_events_known_stream_types,
        raw_events_valid,
    )
    from dagster_project.defs.forecasts import (
        pool_demand_forecasts,
        step_duration_forecasts,
        usage_forecasts,
    )
    from dagster_project.defs.ingest import raw_events
    from dagster_project.defs.jobs import (
        daily_rollup,
        everything,
        refresh_warehouse,
        run_requested_sessions,
    )
    from dagster_project.defs.models import (
        failure_model,
        request_failure_model,
        run_failure_model,
        session_failure_predictions,
    )
    from dagster_project.defs.operations import (
        agent_anomalies,
        alerts,
        prediction_accuracy,
        recommendations,
    )
    from dagster_project.defs.sensors import (
        daily_rollup_schedule,
        new_events_sensor,
        nightly_retrain,
        requested_sessions_sensor,
    )
    from dagster_project.defs.transform import nofx_daily_dbt_assets, nofx_dbt_assets

    return dg.Definitions(
        assets=[
            raw_events,
            nofx_dbt_assets(),
            nofx_daily_dbt_assets(),
            failure_model,
            run_failure_model,
            request_failure_model,
            session_failure_predictions,
            step_duration_forecasts,
            usage_forecasts,
            pool_demand_forecasts,
            prediction_accuracy,
            agent_anomalies,
            alert_forecasts,
            custom_metric_values,
            alerts,
            recommendations,
        ],
        asset_checks=[raw_events_valid, raw_events_known_stream_types, agent_sessions_valid],
        jobs=[everything, refresh_warehouse, daily_rollup, run_requested_sessions],
        sensors=[requested_sessions_sensor, new_events_sensor, forecasts_materialised_sensor],
        schedules=[nightly_retrain, daily_rollup_schedule],
        resources=build_resources(),
    )
