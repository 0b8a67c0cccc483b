"""Forecasts (in the ml group): duration and cost quantiles per step type and agent, and hourly usage.

The fitting is in ``ml/`` (ml.duration, ml.forecast); these assets read the step calls mart,
publish ``analytics.step_duration_forecasts`` and ``analytics.usage_forecasts``, and track
each fit in MLflow (parameters and backtest scores), so forecast quality has a history.
"""

from typing import Any

import dagster as dg
import polars as pl

from dagster_project.lib import groups
from dagster_project.lib.resources import MlflowResource, WarehouseResource
from dagster_project.lib.warehouse import ANALYTICS_SCHEMA, replace_table
from ml.duration import MIN_SAMPLES, QUANTILES, fit_quantiles, forecast
from ml.errors import InsufficientDataError
from ml.forecast import MIN_HISTORY_HOURS, backtest, forecast_usage, hourly_usage
from ml.registry import log_tracking_run

DURATION_TABLE = f"{ANALYTICS_SCHEMA}.step_duration_forecasts"
USAGE_TABLE = f"{ANALYTICS_SCHEMA}.usage_forecasts"
USAGE_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "bucket_start": pl.Datetime("us"),
    "metric": pl.String,
    "forecast": pl.Float64,
    "tenant_id": pl.String,
}
HORIZON_HOURS = 7 * 24


def duration_table(calls: pl.DataFrame, latency: pl.DataFrame) -> pl.DataFrame:
    """Latency quantiles (already fitted) and cost quantiles side by side, one row per
    (capability, agent) level."""
    cost = fit_quantiles(calls, "cost_usd")
    return latency.rename({"p50": "latency_p50_ms", "p90": "latency_p90_ms"}).join(
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


@dg.asset(
    group_name=groups.ML,
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
            "select tenant_id, capability, agent_id, cast(latency_ms as double precision) as latency_ms, "
            "cast(cost_usd as double precision) as cost_usd from main.agent_step_calls "
            "where outcome = 'completed'"
        ).pl()
    # per tenant: one tenant's forecasts never mention another's agents
    tables, covered = [], 0
    for tenant in sorted(set(calls["tenant_id"].to_list())):
        mine = calls.filter(pl.col("tenant_id") == tenant)
        latency = fit_quantiles(mine, "latency_ms")
        if latency.is_empty():
            continue
        tables.append(duration_table(mine, latency).with_columns(pl.lit(tenant).alias("tenant_id")))
        fitted = forecast(latency, mine.select("capability", "agent_id", "latency_ms"))
        covered += int((fitted["latency_ms"] <= fitted["p90"]).sum())
    table = pl.concat(tables, how="diagonal") if tables else pl.DataFrame()
    with warehouse.connect() as conn:
        replace_table(conn, DURATION_TABLE, table)
    metrics: dict[str, float] = {"groups": float(table.height), "calls": float(calls.height)}
    if table.height:
        metrics["in_sample_p90_coverage"] = covered / calls.height
        agent_level = (table["level"] == "agent").mean()
        metrics["agent_level_share"] = (
            float(agent_level) if isinstance(agent_level, int | float) else 0.0
        )
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
    group_name=groups.ML,
    kinds={"duckdb", "mlflow"},
    deps=["agent_step_calls"],
    description="Hourly calls, tokens, cost and concurrency for the next 7 days (seasonal "
    "trend model), in analytics.usage_forecasts; needs a week of history. The backtest "
    "against the seasonal naive forecasts is tracked in MLflow per tenant with two weeks.",
)
def usage_forecasts(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    with warehouse.connect(read_only=True) as conn:
        calls = conn.sql(
            "select tenant_id, started_at, input_tokens, output_tokens, cost_usd, "
            "cast(latency_ms as double precision) as latency_ms from main.agent_step_calls"
        ).pl()
    frames, skipped, backtests = [], {}, {}
    for tenant in sorted(set(calls["tenant_id"].to_list())):
        mine = hourly_usage(calls.filter(pl.col("tenant_id") == tenant))
        try:
            frames.append(
                forecast_usage(mine, horizon_hours=HORIZON_HOURS).with_columns(
                    pl.lit(tenant).alias("tenant_id")
                )
            )
        except InsufficientDataError as exc:
            skipped[tenant] = str(exc)
            context.log.info(f"usage_forecasts for {tenant}: {exc}")
            continue
        if mine.height >= MIN_HISTORY_HOURS + HORIZON_HOURS:
            scores = {
                f"{metric}_{key}": value
                for metric in ("calls", "cost_usd", "concurrency")
                for key, value in backtest(mine, metric, horizon_hours=HORIZON_HOURS).items()
            }
            log_tracking_run(
                experiment="nofx-usage-forecasts",
                tracking_uri=mlflow.tracking_uri,
                artifact_root=mlflow.artifact_root,
                params={"model": "seasonal_trend_huber", "horizon_hours": HORIZON_HOURS},
                metrics=scores,
                tags={"dagster.run_id": context.run.run_id, "tenant_id": tenant},
            )
            backtests[tenant] = scores["calls_mae_ratio_to_best_naive"]
    frame = pl.concat(frames) if frames else pl.DataFrame(schema=USAGE_SCHEMA)
    with warehouse.connect() as conn:
        replace_table(conn, USAGE_TABLE, frame)
    metadata: dict[str, Any] = {
        "tenants_forecast": len(frames),
        "skipped": dg.MetadataValue.json(skipped),
        "calls_mae_ratio_to_best_naive": dg.MetadataValue.json(backtests),
    }
    metadata["dagster/row_count"] = frame.height
    return dg.MaterializeResult(metadata=metadata)


DEMAND_TABLE = f"{ANALYTICS_SCHEMA}.pool_demand_forecasts"
DEMAND_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "agent_id": pl.String,
    "tenant_id": pl.String,
    "bucket_start": pl.Datetime("us"),
    "expected_concurrency": pl.Float64,
}
SHARE_DAYS = 7


def pool_demand(usage: pl.DataFrame, shares: pl.DataFrame) -> pl.DataFrame:
    """Each agent's expected calls in flight per forecast hour: its tenant's concurrency
    forecast times the agent's share of the tenant's busy time."""
    concurrency = usage.filter(pl.col("metric") == "concurrency").select(
        "tenant_id", "bucket_start", pl.col("forecast").clip(lower_bound=0.0)
    )
    return (
        concurrency.join(shares, on="tenant_id", how="inner")
        .select(
            "agent_id",
            "tenant_id",
            "bucket_start",
            (pl.col("forecast") * pl.col("share")).alias("expected_concurrency"),
        )
        .sort("agent_id", "bucket_start")
    )


@dg.asset(
    group_name=groups.ML,
    kinds={"duckdb", "polars"},
    deps=["usage_forecasts", "agent_step_calls"],
    description="Expected calls in flight per agent pool and forecast hour (the tenant's "
    "concurrency forecast times the agent's share of the last 7 days' busy time), in "
    "analytics.pool_demand_forecasts: the autoscaler grows pools before the peak.",
)
def pool_demand_forecasts(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.connect(read_only=True) as conn:
        usage = conn.sql(
            f"select tenant_id, bucket_start, metric, forecast from {USAGE_TABLE}"
        ).pl()
        shares = (
            conn.sql(
                f"""
            with busy as (
                select tenant_id, agent_id, sum(coalesce(latency_ms, 0)) as ms
                from main.agent_step_calls
                where agent_id is not null and started_at >= (
                    select max(started_at) from main.agent_step_calls
                ) - interval '{SHARE_DAYS} day'
                group by 1, 2
            )
            select tenant_id, agent_id,
                ms / nullif(sum(ms) over (partition by tenant_id), 0) as share
            from busy
            """
            )
            .pl()
            .drop_nulls("share")
        )
    frame = pool_demand(usage, shares) if usage.height else pl.DataFrame(schema=DEMAND_SCHEMA)
    with warehouse.connect() as conn:
        replace_table(conn, DEMAND_TABLE, frame)
    return dg.MaterializeResult(
        metadata={"pools": frame["agent_id"].n_unique(), "dagster/row_count": frame.height}
    )
