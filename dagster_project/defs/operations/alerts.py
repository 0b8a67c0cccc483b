"""Alerting assets: predictive observations, tenants' custom metrics, and the alerts.

``alert_forecasts`` turns what the models say about the next hours into observations of
``forecast:<metric>`` (nofx.alerts.forecast_observation), per tenant: the usage forecast's
concurrency over the tenant's pool capacity (``pool_utilisation``) and the champion's failure
probabilities for the sessions still waiting (``session_failure_rate``). The ``alerts`` asset
evaluates them with the predictive twin of each seed rule, so an alert opens before the
threshold is crossed, with the forecast in its message. ``custom_metric_values`` computes
each tenant's metrics in the sandbox of nofx.metrics. A sensor re-evaluates the alerts
whenever forecasts or predictions materialise.

``alerts`` turns the marts into observations (as of the newest data, so a replayed history
alerts as it would have live), evaluates the rules of ``nofx.alerts`` and records raised,
repeated and resolved alerts in the event store, delivering new ones to the webhook when
``NOFX_ALERT_WEBHOOK_URL`` is set; it publishes the alerts as ``analytics.alerts`` for the
dashboards and appends the rules it evaluated to ``analytics.alert_evaluations``.
"""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import polars as pl

from dagster_project.defs.operations.observations import (
    ALERT_FORECASTS_TABLE,
    CUSTOM_VALUES_TABLE,
    FORECASTABLE,
    observations,
)
from dagster_project.lib import groups
from dagster_project.lib.resources import EventStoreResource, WarehouseResource
from dagster_project.lib.warehouse import (
    ANALYTICS_SCHEMA,
    Connection,
    replace_table,
    table_exists,
)
from nofx.alert_rules import AlertRule, TenantRules, effective_rules
from nofx.alerts import (
    ACTIVE,
    FLEET_TENANT,
    AlertService,
    ForecastPoint,
    by_tenant,
    evaluate,
    forecast_observation,
    load_rules,
    predictive_rule,
)
from nofx.metrics import CustomMetricService, MetricQueryError, run_metric
from nofx.settings import Settings
from nofx.warehouse import mart_schema

ALERTS_TABLE = f"{ANALYTICS_SCHEMA}.alerts"
EVALUATIONS_TABLE = f"{ANALYTICS_SCHEMA}.alert_evaluations"
PREDICTIONS_TABLE = f"{ANALYTICS_SCHEMA}.operational_predictions"
USAGE_TABLE = f"{ANALYTICS_SCHEMA}.usage_forecasts"
MIN_WAITING_SESSIONS = 5
FORECAST_COLUMNS = {
    "tenant_id": pl.String,
    "metric": pl.String,
    "subject": pl.String,
    "value": pl.Float64,
    "samples": pl.Int64,
    "detail": pl.String,
}
ALERT_COLUMNS: dict[str, pl.DataType | type[pl.DataType]] = {
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
    "acknowledged_at": pl.Datetime("us", "UTC"),
    "acknowledged_by": pl.String,
}
VALUE_COLUMNS: dict[str, pl.DataType | type[pl.DataType]] = {
    "tenant_id": pl.String,
    "name": pl.String,
    "subject": pl.String,
    "value": pl.Float64,
    "error": pl.String,
    "computed_at": pl.Datetime("us"),
}


def horizon_hours() -> float:
    """How far ahead predictive rules look (``NOFX_ALERT_HORIZON_H``, default 24)."""
    return Settings.from_env().alert_horizon_h


def with_predictive(rules: tuple[AlertRule, ...]) -> tuple[AlertRule, ...]:
    """The rules plus the predictive twin of each rule on a metric something forecasts."""
    twins = tuple(predictive_rule(r, horizon_hours()) for r in rules if r.metric in FORECASTABLE)
    return rules + twins


def record_evaluations(conn: Connection, evaluated: dict[str, list[str]]) -> None:
    """Append which rules had something to evaluate, per tenant, so 'did every rule ever
    run?' has an answer (the demo test and the Alerts page read it)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = [
        {"tenant_id": t, "rule_id": r, "evaluated_at": now}
        for t, rules in evaluated.items()
        for r in rules
    ]
    frame = pl.DataFrame(
        rows,
        schema={"tenant_id": pl.String, "rule_id": pl.String, "evaluated_at": pl.Datetime("us")},
    )
    conn.execute(f"create schema if not exists {ANALYTICS_SCHEMA}")
    conn.register("evaluated", frame)
    try:
        conn.execute(
            f"create table if not exists {EVALUATIONS_TABLE} as select * from evaluated where false"
        )
        conn.execute(f"insert into {EVALUATIONS_TABLE} select * from evaluated")
    finally:
        conn.unregister("evaluated")


def utilisation_points(
    usage: pl.DataFrame, capacity: float, horizon_h: float
) -> list[ForecastPoint]:
    """Forecast concurrency over capacity, hour by hour from the first forecast hour."""
    if capacity <= 0 or usage.is_empty():
        return []
    usage = usage.sort("bucket_start")
    first = usage["bucket_start"][0]
    points = []
    for at, value in usage.select("bucket_start", "forecast").iter_rows():
        ahead = (at - first).total_seconds() / 3600 + 1
        if ahead <= horizon_h:
            points.append(ForecastPoint(ahead, max(0.0, float(value)) / capacity))
    return points


def forecast_rows(conn: Connection, horizon_h: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    rule = {r.metric: r for r in load_rules()}
    if table_exists(conn, USAGE_TABLE) and table_exists(conn, "main.pool_scaling_decisions"):
        capacity = dict(
            conn.execute(
                """
                select d.tenant_id, sum(d.replicas_after * coalesce(a.max_concurrency, 1))
                from (
                    select *, row_number() over (
                        partition by agent_id order by decision_id desc) as nth
                    from main.pool_scaling_decisions
                ) as d
                left join main.agents as a on a.agent_id = d.agent_id
                where d.nth = 1
                group by 1
                """
                if table_exists(conn, "main.agents")
                else "select tenant_id, sum(replicas_after) from main.pool_scaling_decisions "
                "group by 1"
            ).fetchall()
        )
        usage = conn.sql(
            f"select tenant_id, bucket_start, forecast from {USAGE_TABLE} "
            "where metric = 'concurrency'"
        ).pl()
        for tenant, cap in capacity.items():
            points = utilisation_points(
                usage.filter(pl.col("tenant_id") == tenant), float(cap or 0), horizon_h
            )
            seen = forecast_observation(rule["pool_utilisation"], "pools", points, horizon_h)
            if seen is not None:
                rows.append({**vars(seen), "tenant_id": tenant})
    if table_exists(conn, PREDICTIONS_TABLE):
        # predictions are refreshed with the models; the sessions mart knows who finished since
        still_waiting = (
            " and session_id not in (select session_id from main.agent_sessions "
            "where status in ('succeeded', 'failed', 'cancelled'))"
            if table_exists(conn, "main.agent_sessions")
            else ""
        )
        waiting = conn.execute(
            f"""
            select tenant_id, avg(failure_probability),
                percentile_cont(0.9) within group (order by failure_probability),
                count(*), min(model_name || ' v' || model_version)
            from {PREDICTIONS_TABLE}
            where actual_status not in ('succeeded', 'failed', 'cancelled'){still_waiting}
            group by tenant_id
            having count(*) >= {MIN_WAITING_SESSIONS}
            """
        ).fetchall()
        for tenant, mean, p90, n, model in waiting:
            point = ForecastPoint(min(1.0, horizon_h), float(mean), float(p90))  # they run next
            seen = forecast_observation(
                rule["session_failure_rate"], "waiting sessions", [point], horizon_h
            )
            if seen is not None:
                detail = f"{model} on {n} waiting sessions; {seen.detail}"
                rows.append({**vars(seen), "detail": detail, "tenant_id": tenant})
    return rows


@dg.asset(
    group_name=groups.OPERATIONS,
    kinds={"duckdb", "python"},
    deps=["usage_forecasts", "operational_predictions", "pool_scaling_decisions", "agents"],
    description="What forecasts and predictions say each tenant's metrics will be within "
    "the alert horizon (NOFX_ALERT_HORIZON_H, default 24 h): forecast pool utilisation and "
    "the predicted failure rate of waiting sessions, in analytics.alert_forecasts.",
)
def alert_forecasts(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.connect(read_only=True) as conn:
        rows = forecast_rows(conn, horizon_hours())
    frame = (
        pl.DataFrame(rows, schema=FORECAST_COLUMNS)
        if rows
        else pl.DataFrame(schema=FORECAST_COLUMNS)
    )
    with warehouse.connect() as conn:
        replace_table(conn, ALERT_FORECASTS_TABLE, frame)
    return dg.MaterializeResult(
        metadata={"observations": frame.height, "dagster/row_count": frame.height}
    )


@dg.asset(
    group_name=groups.OPERATIONS,
    kinds={"duckdb", "python"},
    deps=["agent_sessions", "agent_step_calls", "workflow_executions", "api_usage_hourly"],
    description="Every tenant's custom metrics (PUT /api/v1/custom-metrics/{name}), each run "
    "in a sandbox that holds only that tenant's rows, in analytics.custom_metric_values.",
)
def custom_metric_values(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, event_store: EventStoreResource
) -> dg.MaterializeResult:
    with event_store.open() as store:
        metrics = CustomMetricService(store).list()
    now = datetime.now(UTC).replace(tzinfo=None)
    rows: list[dict[str, Any]] = []
    with warehouse.connect(read_only=True) as conn:
        for metric in metrics:
            base = {"tenant_id": metric.tenant_id, "name": metric.name, "computed_at": now}
            try:
                values = run_metric(
                    metric.sql, tenant_id=metric.tenant_id, source=conn, schema=mart_schema()
                )
            except MetricQueryError as exc:
                context.log.warning(f"custom metric {metric.tenant_id}/{metric.name}: {exc}")
                rows.append({**base, "subject": "", "value": None, "error": str(exc)})
                continue
            rows += [
                {**base, "subject": v.subject, "value": v.value, "error": None} for v in values
            ]
    frame = pl.DataFrame(rows, schema=VALUE_COLUMNS) if rows else pl.DataFrame(schema=VALUE_COLUMNS)
    with warehouse.connect() as conn:
        replace_table(conn, CUSTOM_VALUES_TABLE, frame)
    failed = frame.filter(pl.col("error").is_not_null()).height
    return dg.MaterializeResult(
        metadata={"metrics": len(metrics), "values": frame.height - failed, "failed": failed}
    )


# what the alert rules observe (observations.py): both alert tables are written from them
ALERT_INPUTS = [
    "agent_anomalies",
    "alert_forecasts",
    "custom_metric_values",
    "agent_sessions",
    "workflow_executions",
    "pool_scaling_decisions",
    "api_latency_windows",
    "prediction_accuracy",
]


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "alerts",
            group_name=groups.OPERATIONS,
            kinds={"duckdb", "python"},
            deps=ALERT_INPUTS,
            description="Evaluates the alert rules (nofx.alerts; NOFX_ALERT_RULES to change "
            "them) on the fresh marts, records raised, repeated and resolved alerts in the "
            "event store and publishes them in analytics.alerts.",
        ),
        dg.AssetSpec(
            "alert_evaluations",
            group_name=groups.OPERATIONS,
            kinds={"duckdb"},
            deps=ALERT_INPUTS,
            description="Which rules had something to evaluate, per tenant and evaluation, "
            "appended to analytics.alert_evaluations.",
        ),
    ],
)
def alerts(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, event_store: EventStoreResource
) -> Iterator[dg.MaterializeResult]:
    """Each tenant's observations on that tenant's rules (defaults plus its own), the fleet's
    on the operator's rules; alerts are recorded in the owner's stream."""
    defaults = load_rules()
    with warehouse.connect(read_only=True) as conn:
        found, measured = observations(conn)
    grouped = by_tenant(found)
    firings_total, raised, repeated, resolved, delivered = 0, [], 0, 0, 0
    evaluated: dict[str, list[str]] = {}
    with event_store.open() as store:
        service = AlertService(store)
        own_rules = TenantRules(store).all_tenants()
        active = {a.tenant_id for s in ACTIVE for a in service.list(status=s, limit=100_000)}
        for tenant in sorted(set(grouped) | active | set(own_rules)):
            rules = (
                defaults
                if tenant == FLEET_TENANT
                else effective_rules(defaults, own_rules.get(tenant, []))
            )
            rules = with_predictive(rules)
            mine = grouped.get(tenant, [])
            firings = evaluate(rules, mine)
            result = service.sync(firings, measured, tenant_id=tenant)
            delivered += service.deliver(result.raised)
            firings_total += len(firings)
            raised += result.raised
            repeated += len(result.repeated)
            resolved += len(result.resolved)
            metrics = {o.metric for o in mine}
            evaluated[tenant] = sorted(r.rule_id for r in rules if r.metric in metrics)
        current = [a.as_dict() for a in service.list(limit=10_000)]
    # published with the marts, so dashboards see alerts without reading the control plane
    with warehouse.connect() as conn:
        replace_table(conn, ALERTS_TABLE, pl.DataFrame(current, schema=ALERT_COLUMNS))
        record_evaluations(conn, evaluated)
    for alert in raised:
        context.log.warning(f"alert raised for {alert.tenant_id}: {alert.message}")
    metadata: dict[str, Any] = {
        "observations": len(found),
        "tenants": len(evaluated),
        "firing": firings_total,
        "raised": len(raised),
        "repeated": repeated,
        "resolved": resolved,
        "delivered": delivered,
        "rules_evaluated": dg.MetadataValue.json(evaluated),
    }
    yield dg.MaterializeResult(asset_key="alerts", metadata=metadata)
    yield dg.MaterializeResult(
        asset_key="alert_evaluations",
        metadata={"rules_evaluated": sum(len(rules) for rules in evaluated.values())},
    )
