"""Operations assets: prediction accuracy over time, anomalies, and recommendations.

``prediction_accuracy`` joins the predictions made before an outcome (``prediction_log``)
with the outcomes that have since arrived, per model version and day, next to each
version's holdout score from training. The alert assets are in ``alerts.py``.
"""

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import dagster as dg
import polars as pl

from dagster_project.defs.operations.usage import usage_insights
from dagster_project.lib import groups
from dagster_project.lib.resources import WarehouseResource
from dagster_project.lib.warehouse import ANALYTICS_SCHEMA, replace_table, table_exists
from ml.anomaly import detect_episodes, fit_baselines
from ml.recommendations import (
    agent_benchmark,
    cheaper_agent,
    flaky_steps,
    recommendations_frame,
    underused_pools,
)

# written by the ml assets; read here
PREDICTION_LOG_TABLE = f"{ANALYTICS_SCHEMA}.prediction_log"
PREDICTION_MODELS_TABLE = f"{ANALYTICS_SCHEMA}.prediction_models"
ACCURACY_TABLE = f"{ANALYTICS_SCHEMA}.prediction_accuracy"
RECOMMENDATIONS_TABLE = f"{ANALYTICS_SCHEMA}.recommendations"
ANOMALIES_TABLE = f"{ANALYTICS_SCHEMA}.agent_anomalies"
ANOMALY_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "agent_id": pl.String,
    "metric": pl.String,
    "start": pl.Datetime("us"),
    "end": pl.Datetime("us"),
    "peak_score": pl.Float64,
    "baseline": pl.Float64,
    "observed": pl.Float64,
}
HOURLY_CALLS_SQL = """
select
    agent_id,
    cast(date_trunc('hour', ended_at) as timestamp) as bucket_start,
    cast(count(*) as bigint) as calls,
    cast(sum(case when succeeded then 0 else 1 end) as bigint) as failures,
    cast(avg(coalesce(latency_ms, 0)) as double precision) as mean_latency_ms,
    cast(sum(cost_usd) as double precision) as cost_usd
from main.agent_step_calls
where outcome in ('completed', 'failed') and agent_id is not null
group by 1, 2
"""
INSIGHTS_TABLE = f"{ANALYTICS_SCHEMA}.analytics_insights"
INSIGHT_SCHEMA = {
    "insight_id": pl.String,
    "tenant_id": pl.String,
    "kind": pl.String,
    "subject": pl.String,
    "title": pl.String,
    "detail": pl.String,
    "value": pl.Float64,
    "evidence": pl.String,
}
LIVE_ACCURACY_SQL = f"""
with joined as (
    select
        l.model_name,
        l.model_version,
        cast(l.predicted_at as date) as day,
        l.failure_probability,
        l.predicted_failure,
        s.status = 'failed' as failed
    from {PREDICTION_LOG_TABLE} as l
    inner join main.agent_sessions as s on s.session_id = l.session_id
    where s.status in ('succeeded', 'failed')
),
rates as (
    select
        model_name,
        model_version,
        day,
        count(*) as predictions,
        avg(case when predicted_failure = failed then 1.0 else 0.0 end) as accuracy,
        sum(case when predicted_failure and failed then 1.0 else 0.0 end)
            / nullif(sum(case when failed then 1.0 else 0.0 end), 0) as tpr,
        sum(case when not predicted_failure and not failed then 1.0 else 0.0 end)
            / nullif(sum(case when not failed then 1.0 else 0.0 end), 0) as tnr,
        avg(power(failure_probability - case when failed then 1.0 else 0.0 end, 2)) as brier
    from joined
    group by 1, 2, 3
)
select
    model_name,
    cast(model_version as bigint) as model_version,
    day,
    'live' as source,
    cast(predictions as bigint) as predictions,
    accuracy,
    (coalesce(tpr, tnr) + coalesce(tnr, tpr)) / 2 as balanced_accuracy,
    brier
from rates
"""

HOLDOUT_ACCURACY_SQL = f"""
select
    model_name,
    cast(version as bigint) as model_version,
    cast(created_at as date) as day,
    'holdout' as source,
    cast(null as bigint) as predictions,
    accuracy,
    balanced_accuracy,
    brier
from {PREDICTION_MODELS_TABLE}
"""


@dg.asset(
    group_name=groups.OPERATIONS,
    kinds={"duckdb"},
    deps=["prediction_log", "agent_sessions"],
    description="Accuracy per model version and day: live (predictions made before the "
    "outcome, joined with it) and holdout (from training), in analytics.prediction_accuracy.",
)
def prediction_accuracy(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.connect() as conn:
        parts = [
            conn.sql(sql).pl()
            for table, sql in (
                (PREDICTION_LOG_TABLE, LIVE_ACCURACY_SQL),
                (PREDICTION_MODELS_TABLE, HOLDOUT_ACCURACY_SQL),
            )
            if table_exists(conn, table)
        ]
        frame = (
            pl.concat(parts, how="vertical_relaxed")
            if parts
            else pl.DataFrame(
                schema={
                    "model_name": pl.String,
                    "model_version": pl.Int64,
                    "day": pl.Date,
                    "source": pl.String,
                    "predictions": pl.Int64,
                    "accuracy": pl.Float64,
                    "balanced_accuracy": pl.Float64,
                    "brier": pl.Float64,
                }
            )
        )
        replace_table(conn, ACCURACY_TABLE, frame)
    live = frame.filter(pl.col("source") == "live")
    return dg.MaterializeResult(
        metadata={
            "rows": frame.height,
            "live_predictions_scored": int(live["predictions"].sum() or 0),
            "dagster/row_count": frame.height,
        }
    )


@dg.asset(
    group_name=groups.OPERATIONS,
    kinds={"duckdb", "polars"},
    deps=["agent_step_calls"],
    description="Degradation episodes per agent in the last 24 hours (latency, errors, cost "
    "against a baseline learned from the hours before), in analytics.agent_anomalies.",
)
def agent_anomalies(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.connect() as conn:
        hourly: pl.DataFrame = conn.sql(HOURLY_CALLS_SQL).pl()
        episodes: list[dict[str, Any]] = []
        baselines: dict[str, Any] = {}
        if hourly.height:
            last = hourly["bucket_start"].max()
            assert isinstance(last, datetime), "bucket_start is a datetime column"
            cut = last - timedelta(hours=24)
            baselines = fit_baselines(hourly.filter(pl.col("bucket_start") < cut), skip_short=True)
            recent = hourly.filter(pl.col("bucket_start") >= cut)
            episodes = [vars(e) for e in detect_episodes(recent, baselines)]
        replace_table(conn, ANOMALIES_TABLE, pl.DataFrame(episodes, schema=ANOMALY_SCHEMA))
    return dg.MaterializeResult(
        metadata={
            "episodes": len(episodes),
            "agents_with_baseline": len(baselines),
            "note": "" if baselines else "no agent has 24 hours of history yet: nothing scored",
        }
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "recommendations",
            group_name=groups.OPERATIONS,
            kinds={"duckdb", "polars"},
            deps=["agent_step_calls", "pool_scaling_decisions", "api_usage_hourly"],
            description="Recommendations with estimated savings (cheaper agent with equal "
            "success, flaky steps, under-used pools), ranked by money saved, in "
            "analytics.recommendations.",
        ),
        dg.AssetSpec(
            "analytics_insights",
            group_name=groups.OPERATIONS,
            kinds={"duckdb", "polars"},
            deps=["agent_step_calls", "api_usage_hourly"],
            description="Agent benchmarking and API usage insights per tenant, in "
            "analytics.analytics_insights.",
        ),
    ],
)
def recommendations(warehouse: WarehouseResource) -> Iterator[dg.MaterializeResult]:
    """Per tenant, so one tenant's recommendations never reveal another's agents."""
    with warehouse.connect() as conn:
        calls = conn.sql(
            "select tenant_id, capability, agent_id, agent_name, succeeded, cost_usd, "
            "coalesce(latency_ms, 0) as latency_ms from main.agent_step_calls "
            "where outcome in ('completed', 'failed')"
        ).pl()
        decisions = conn.sql("select * from main.pool_scaling_decisions").pl()
        usage = (
            conn.sql("select * from main.api_usage_hourly").pl()
            if table_exists(conn, "main.api_usage_hourly")
            else pl.DataFrame(schema={"tenant_id": pl.String})
        )
        frames, insights = [], []
        tenants = set(calls["tenant_id"]) | set(decisions["tenant_id"]) | set(usage["tenant_id"])
        for tenant in sorted(tenants):
            mine = calls.filter(pl.col("tenant_id") == tenant)
            pools = decisions.filter(pl.col("tenant_id") == tenant)
            items = cheaper_agent(mine) + flaky_steps(mine) + underused_pools(pools)
            frames.append(
                recommendations_frame(items).with_columns(pl.lit(tenant).alias("tenant_id"))
            )
            mine_usage = usage.filter(pl.col("tenant_id") == tenant)
            for item in agent_benchmark(mine) + usage_insights(mine_usage):
                insights.append(
                    {
                        **{k: item[k] for k in ("kind", "subject", "title", "detail", "value")},
                        "insight_id": f"{tenant}/{item['kind']}/{item['subject']}",
                        "tenant_id": tenant,
                        "evidence": json.dumps(item["evidence"], default=str),
                    }
                )
        frame = (
            pl.concat(frames)
            if frames
            else recommendations_frame([]).with_columns(pl.lit("").alias("tenant_id"))
        )
        replace_table(conn, RECOMMENDATIONS_TABLE, frame)
        replace_table(conn, INSIGHTS_TABLE, pl.DataFrame(insights, schema=INSIGHT_SCHEMA))
    savings = frame["estimated_savings_usd"].drop_nulls()
    yield dg.MaterializeResult(
        asset_key="recommendations",
        metadata={
            "recommendations": frame.height,
            "estimated_savings_usd": float(savings.sum()) if savings.len() else 0.0,
            "kinds": dg.MetadataValue.json(frame["kind"].value_counts().to_dicts()),
            "dagster/row_count": frame.height,
        },
    )
    yield dg.MaterializeResult(
        asset_key="analytics_insights",
        metadata={"insights": len(insights), "dagster/row_count": len(insights)},
    )
