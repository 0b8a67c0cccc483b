"""Operations assets: prediction accuracy over time, and alert evaluation after each refresh.

``prediction_accuracy`` joins the predictions made before an outcome (``prediction_log``)
with the outcomes that have since arrived, per model version and day, next to each
version's holdout score from training. ``alerts`` turns the marts into observations (as of
the newest data, so a replayed history alerts as it would have live), evaluates the rules
of ``nofx.alerts`` and records raised, repeated and resolved alerts in the event store,
delivering new ones to the webhook when ``NOFX_ALERT_WEBHOOK_URL`` is set; it publishes the
alerts as ``analytics.alerts`` for the dashboards.
"""

import json
from datetime import timedelta
from typing import Any

import dagster as dg
import duckdb
import polars as pl

from dagster_project.defs.models import (
    ANALYTICS_SCHEMA,
    PREDICTION_LOG_TABLE,
    PREDICTION_MODELS_TABLE,
    replace_table,
    session_failure_predictions,
)
from dagster_project.resources import EventStoreResource, WarehouseResource
from ml.anomaly import detect_episodes, fit_baselines
from ml.recommendations import (
    agent_benchmark,
    cheaper_agent,
    flaky_steps,
    recommendations_frame,
    underused_pools,
)
from nofx.alerts import AlertService, Observation, evaluate, load_rules

OPERATIONS_GROUP = "operations"
ACCURACY_TABLE = f"{ANALYTICS_SCHEMA}.prediction_accuracy"
ALERTS_TABLE = f"{ANALYTICS_SCHEMA}.alerts"
RECOMMENDATIONS_TABLE = f"{ANALYTICS_SCHEMA}.recommendations"
ANOMALIES_TABLE = f"{ANALYTICS_SCHEMA}.agent_anomalies"
ANOMALY_SCHEMA = {
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
    cast(avg(coalesce(latency_ms, 0)) as double) as mean_latency_ms,
    cast(sum(cost_usd) as double) as cost_usd
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
ALERT_COLUMNS = {
    "alert_id": pl.String,
    "tenant_id": pl.String,
    "rule_id": pl.String,
    "metric": pl.String,
    "subject": pl.String,
    "fingerprint": pl.String,
    "severity": pl.String,
    "status": pl.String,
    "message": pl.String,
    "value": pl.Float64,
    "threshold": pl.Float64,
    "occurrences": pl.Int64,
    "first_seen_at": pl.Datetime("us", "UTC"),
    "last_seen_at": pl.Datetime("us", "UTC"),
    "resolved_at": pl.Datetime("us", "UTC"),
    "resolved_by": pl.String,
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


def table_exists(conn: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    schema, table = qualified.split(".", 1)
    query = (
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?"
    )
    rows = conn.execute(query, [schema, table]).fetchall()
    return bool(rows and rows[0][0])


@dg.asset(
    group_name=OPERATIONS_GROUP,
    kinds={"duckdb"},
    deps=[session_failure_predictions, "agent_sessions"],
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


def observations(conn: duckdb.DuckDBPyConnection) -> tuple[list[Observation], set[str]]:
    """What the rules look at, as of the newest data; and which metrics could be measured."""
    found: list[Observation] = []
    measured: set[str] = set()

    def one(metric: str, sql: str, table: str) -> None:
        if not table_exists(conn, table):
            return  # not published (yet): the metric is not measured, so nothing resolves
        rows = conn.execute(sql).fetchall()
        measured.add(metric)
        for subject, value, samples in rows:
            if value is not None:
                found.append(Observation(metric, str(subject), float(value), int(samples or 0)))

    one(
        "session_failure_rate",
        """
        select 'fleet', avg(case when status = 'failed' then 1.0 else 0.0 end), count(*)
        from main.agent_sessions
        where status in ('succeeded', 'failed')
            and ended_at >= (select max(ended_at) from main.agent_sessions) - interval 1 day
        having count(*) > 0
        """,
        "main.agent_sessions",
    )
    one(
        "orchestration_failure_rate",
        """
        select 'fleet',
            avg(case when status = 'failed' and failure_class = 'orchestration' then 1.0 else 0.0 end),
            count(*)
        from main.agent_sessions
        where status in ('succeeded', 'failed')
            and ended_at >= (select max(ended_at) from main.agent_sessions) - interval 1 day
        having count(*) > 0
        """,
        "main.agent_sessions",
    )
    one(
        "workflow_delay_ratio",
        """
        select 'workflows', avg(delay_ratio), count(*)
        from main.workflow_executions
        where delay_ratio is not null
            and ended_at >= (select max(ended_at) from main.workflow_executions) - interval 1 day
        having count(*) > 0
        """,
        "main.workflow_executions",
    )
    one(
        "pool_utilisation",
        """
        select agent_id, utilisation * replicas_before / replicas_after, 1
        from (
            select *, row_number() over (partition by agent_id order by decision_id desc) as nth
            from main.pool_scaling_decisions
            where event_type = 'PoolScaled'
        ) as latest
        where nth = 1 and replicas_after > 0
        """,
        "main.pool_scaling_decisions",
    )
    one(
        "api_p95_ms",
        """
        select source, max(p95_ms), sum(requests)
        from main.api_latency_windows
        where window_end >= (select max(window_end) from main.api_latency_windows)
            - interval 1 hour
        group by source
        """,
        "main.api_latency_windows",
    )
    one(
        "agent_anomaly_episodes",
        f"select agent_id, count(*), count(*) from {ANOMALIES_TABLE} group by agent_id",
        ANOMALIES_TABLE,
    )
    one(
        "prediction_accuracy",
        f"""
        select model_name || ' v' || model_version, balanced_accuracy, predictions
        from (
            select *, row_number() over (
                partition by model_name order by model_version desc, day desc
            ) as nth
            from {ACCURACY_TABLE}
            where source = 'live' and balanced_accuracy is not null
        ) as latest
        where nth = 1
        """,
        ACCURACY_TABLE,
    )
    # a champion promoted below the alert line on its own held-out window (ADR 0018); a
    # mirror written before holdout_rows existed is skipped until the next model run
    mirrored = conn.execute(
        "select count(*) from information_schema.columns where table_schema = 'analytics' "
        "and table_name = 'prediction_models' and column_name = 'holdout_rows'"
    ).fetchall()[0][0]
    if mirrored:
        one(
            "prediction_accuracy",
            """
            select model_name || ' v' || version || ' (holdout)', balanced_accuracy,
                holdout_rows
            from analytics.prediction_models
            where is_champion and balanced_accuracy is not null and holdout_rows is not null
            """,
            "analytics.prediction_models",
        )
    return found, measured


@dg.asset(
    group_name=OPERATIONS_GROUP,
    kinds={"duckdb", "polars"},
    deps=["agent_step_calls"],
    description="Degradation episodes per agent in the last 24 hours (latency, errors, cost "
    "against a baseline learned from the hours before), in analytics.agent_anomalies.",
)
def agent_anomalies(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.connect() as conn:
        hourly = conn.sql(HOURLY_CALLS_SQL).pl()
        episodes: list[dict[str, Any]] = []
        baselines: dict[str, Any] = {}
        if hourly.height:
            cut = hourly["bucket_start"].max() - timedelta(hours=24)  # type: ignore[operator]
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


@dg.asset(
    group_name=OPERATIONS_GROUP,
    kinds={"duckdb", "python"},
    deps=[
        agent_anomalies,
        "agent_sessions",
        "workflow_executions",
        "pool_scaling_decisions",
        "api_latency_windows",
        prediction_accuracy,
    ],
    description="Evaluates the alert rules (nofx.alerts; NOFX_ALERT_RULES to change them) on "
    "the fresh marts and records raised, repeated and resolved alerts in the event store.",
)
def alerts(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, event_store: EventStoreResource
) -> dg.MaterializeResult:
    rules = load_rules()
    with warehouse.connect(read_only=True) as conn:
        found, measured = observations(conn)
    firings = evaluate(rules, found)
    with event_store.open() as store:
        service = AlertService(store)
        result = service.sync(firings, measured)
        delivered = service.deliver(result.raised)
        current = [a.as_dict() for a in service.list(limit=10_000)]
    # published with the marts, so dashboards see alerts without reading the control plane
    with warehouse.connect() as conn:
        replace_table(conn, ALERTS_TABLE, pl.DataFrame(current, schema=ALERT_COLUMNS))
    for alert in result.raised:
        context.log.warning(f"alert raised: {alert.message}")
    metadata: dict[str, Any] = {
        "observations": len(found),
        "firing": len(firings),
        "raised": len(result.raised),
        "repeated": len(result.repeated),
        "resolved": len(result.resolved),
        "delivered": delivered,
        "open": dg.MetadataValue.json([f.fingerprint for f in firings]),
    }
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    group_name=OPERATIONS_GROUP,
    kinds={"duckdb", "polars"},
    deps=["agent_step_calls", "pool_scaling_decisions"],
    description="Recommendations with estimated savings (cheaper agent with equal success, "
    "flaky steps, under-used pools), ranked by money saved, in analytics.recommendations; "
    "agent benchmarking insights in analytics.analytics_insights.",
)
def recommendations(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Per tenant, so one tenant's recommendations never reveal another's agents."""
    with warehouse.connect() as conn:
        calls = conn.sql(
            "select tenant_id, capability, agent_id, agent_name, succeeded, cost_usd, "
            "coalesce(latency_ms, 0) as latency_ms from main.agent_step_calls "
            "where outcome in ('completed', 'failed')"
        ).pl()
        decisions = conn.sql("select * from main.pool_scaling_decisions").pl()
        frames, insights = [], []
        for tenant in sorted(set(calls["tenant_id"].to_list()) | set(decisions["tenant_id"])):
            mine = calls.filter(pl.col("tenant_id") == tenant)
            pools = decisions.filter(pl.col("tenant_id") == tenant)
            items = cheaper_agent(mine) + flaky_steps(mine) + underused_pools(pools)
            frames.append(
                recommendations_frame(items).with_columns(pl.lit(tenant).alias("tenant_id"))
            )
            for item in agent_benchmark(mine):
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
    return dg.MaterializeResult(
        metadata={
            "recommendations": frame.height,
            "insights": len(insights),
            "estimated_savings_usd": float(savings.sum()) if savings.len() else 0.0,
            "kinds": dg.MetadataValue.json(frame["kind"].value_counts().to_dicts()),
        }
    )
