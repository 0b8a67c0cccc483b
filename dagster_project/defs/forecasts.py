"""Forecast assets: duration and cost quantiles per step type and agent, and hourly usage.

The fitting is in ``ml/`` (ml.duration, ml.forecast); these assets read the step calls mart,
publish ``analytics.step_duration_forecasts`` and ``analytics.usage_forecasts``, and track
each fit in MLflow (parameters and backtest scores), so forecast quality has a history.
"""

from typing import Any

import dagster as dg
import polars as pl

from dagster_project.defs.models import ANALYTICS_SCHEMA, ML_GROUP, replace_table
from dagster_project.resources import MlflowResource, WarehouseResource
from ml.duration import MIN_SAMPLES, QUANTILES, coverage, fit_quantiles, forecast
from ml.errors import InsufficientDataError
from ml.forecast import MIN_HISTORY_HOURS, backtest, forecast_usage, hourly_usage
from ml.registry import log_tracking_run

DURATION_TABLE = f"{ANALYTICS_SCHEMA}.step_duration_forecasts"
USAGE_TABLE = f"{ANALYTICS_SCHEMA}.usage_forecasts"
USAGE_SCHEMA = {"bucket_start": pl.Datetime("us"), "metric": pl.String, "forecast": pl.Float64}
HORIZON_HOURS = 7 * 24


@dg.asset(
    group_name=ML_GROUP,
    kinds={"duckdb", "mlflow"},
    deps=["agent_step_calls"],
    description="p50/p90 latency and cost per capability and agent (falling back to the "
    "capability, then the fleet, when an agent has under 20 runs), in "
    "analytics.step_duration_forecasts; the fit is tracked in MLflow.",
)
def step_duration_forecasts(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    with warehouse.connect(read_only=True) as conn:
        calls = conn.sql(
            "select capability, agent_id, cast(latency_ms as double) as latency_ms, "
            "cast(cost_usd as double) as cost_usd from main.agent_step_calls "
            "where outcome = 'completed'"
        ).pl()
    latency = fit_quantiles(calls, "latency_ms")
    cost = fit_quantiles(calls, "cost_usd")
    if latency.is_empty():
        table = pl.DataFrame()
    else:
        table = latency.rename({"p50": "latency_p50_ms", "p90": "latency_p90_ms"}).join(
            cost.select(
                "capability",
                "agent_id",
                pl.col("p50").alias("cost_p50_usd"),
                pl.col("p90").alias("cost_p90_usd"),
            ),
            on=["capability", "agent_id"],
            how="left",
            nulls_equal=True,
        )
    with warehouse.connect() as conn:
        replace_table(conn, DURATION_TABLE, table)
    metrics: dict[str, float] = {"groups": float(table.height), "calls": float(calls.height)}
    if calls.height:
        fitted = forecast(latency, calls.select("capability", "agent_id", "latency_ms"))
        metrics["in_sample_p90_coverage"] = coverage(
            fitted["latency_ms"].to_numpy(), fitted["p90"].to_numpy()
        )
        metrics["agent_level_share"] = float((table["level"] == "agent").mean() or 0.0)
    run_id = log_tracking_run(
        experiment="nofx-duration-forecasts",
        tracking_uri=mlflow.tracking_uri,
        artifact_root=mlflow.artifact_root,
        params={"quantiles": ",".join(map(str, QUANTILES)), "min_samples": MIN_SAMPLES},
        metrics=metrics,
        tags={"dagster.run_id": context.run.run_id},
    )
    return dg.MaterializeResult(
        metadata={**metrics, "mlflow_run_id": run_id, "dagster/row_count": table.height}
    )


@dg.asset(
    group_name=ML_GROUP,
    kinds={"duckdb", "mlflow"},
    deps=["agent_step_calls"],
    description="Hourly calls, tokens, cost and concurrency for the next 7 days (seasonal "
    "trend model), in analytics.usage_forecasts; needs a week of history. The backtest "
    "against the seasonal naive forecasts is tracked in MLflow once there are two weeks.",
)
def usage_forecasts(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    with warehouse.connect(read_only=True) as conn:
        calls = conn.sql(
            "select started_at, input_tokens, output_tokens, cost_usd, "
            "cast(latency_ms as double) as latency_ms from main.agent_step_calls"
        ).pl()
    usage = hourly_usage(calls)
    metadata: dict[str, Any] = {"history_hours": usage.height}
    try:
        frame = forecast_usage(usage, horizon_hours=HORIZON_HOURS)
    except InsufficientDataError as exc:
        context.log.info(f"usage_forecasts: {exc}")
        frame = pl.DataFrame(schema=USAGE_SCHEMA)
        metadata["skipped_reason"] = str(exc)
    with warehouse.connect() as conn:
        replace_table(conn, USAGE_TABLE, frame)
    if usage.height >= MIN_HISTORY_HOURS + HORIZON_HOURS:
        scores = {
            f"{metric}_{key}": value
            for metric in ("calls", "cost_usd", "concurrency")
            for key, value in backtest(usage, metric, horizon_hours=HORIZON_HOURS).items()
        }
        metadata["mlflow_run_id"] = log_tracking_run(
            experiment="nofx-usage-forecasts",
            tracking_uri=mlflow.tracking_uri,
            artifact_root=mlflow.artifact_root,
            params={"model": "seasonal_trend_huber", "horizon_hours": HORIZON_HOURS},
            metrics=scores,
            tags={"dagster.run_id": context.run.run_id},
        )
        metadata.update(scores)
    metadata["dagster/row_count"] = frame.height
    return dg.MaterializeResult(metadata=metadata)
