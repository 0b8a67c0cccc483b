"""Re-evaluate the alerts when forecasts or predictions land outside the refresh job."""

import dagster as dg


@dg.multi_asset_sensor(
    monitored_assets=[dg.AssetKey("usage_forecasts"), dg.AssetKey("operational_predictions")],
    request_assets=dg.AssetSelection.assets("alert_forecasts", "alerts", "alert_evaluations"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Re-evaluates the alerts, predictive ones included, as soon as new forecasts "
    "or predictions materialise (the nightly retrain writes them outside the refresh job).",
)
def forecasts_materialised_sensor(
    context: dg.MultiAssetSensorEvaluationContext,
) -> dg.SensorResult | dg.SkipReason:
    latest = context.latest_materialization_records_by_key()
    if not any(latest.values()):
        return dg.SkipReason("no new forecasts or predictions")
    context.advance_all_cursors()
    return dg.SensorResult(run_requests=[dg.RunRequest()])
