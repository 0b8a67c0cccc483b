"""What the alert rules look at, per tenant, as of the newest data in the warehouse.

Every observation belongs to a tenant (its sessions, workflows, pools, agents, predictions
and custom metrics) or to the operator (``FLEET_TENANT``: API processes and the models every
tenant shares), so a tenant's alerts never mention another tenant's agents.
"""

from typing import Any

from dagster_project.lib.warehouse import ANALYTICS_SCHEMA, Connection, has_column, table_exists
from nofx.alerts import FLEET_TENANT, Observation

ANOMALIES_TABLE = f"{ANALYTICS_SCHEMA}.agent_anomalies"
ACCURACY_TABLE = f"{ANALYTICS_SCHEMA}.prediction_accuracy"
PREDICTION_LOG_TABLE = f"{ANALYTICS_SCHEMA}.prediction_log"
ALERT_FORECASTS_TABLE = f"{ANALYTICS_SCHEMA}.alert_forecasts"
CUSTOM_VALUES_TABLE = f"{ANALYTICS_SCHEMA}.custom_metric_values"
FORECASTABLE = ("pool_utilisation", "session_failure_rate")  # metrics with a forecast


# metric -> (table it needs, SQL returning tenant, subject, value, samples[, detail])
TENANT_SQL: dict[str, tuple[str, str]] = {
    "session_failure_rate": (
        "main.agent_sessions",
        """
        select tenant_id, 'fleet', avg(case when status = 'failed' then 1.0 else 0.0 end),
            count(*)
        from main.agent_sessions
        where status in ('succeeded', 'failed')
            and ended_at >= (select max(ended_at) from main.agent_sessions) - interval '1 day'
        group by tenant_id
        """,
    ),
    "orchestration_failure_rate": (
        "main.agent_sessions",
        """
        select tenant_id, 'fleet',
            avg(case when status = 'failed' and failure_class = 'orchestration'
                then 1.0 else 0.0 end),
            count(*)
        from main.agent_sessions
        where status in ('succeeded', 'failed')
            and ended_at >= (select max(ended_at) from main.agent_sessions) - interval '1 day'
        group by tenant_id
        """,
    ),
    "workflow_delay_ratio": (
        "main.workflow_executions",
        """
        select tenant_id, 'workflows', avg(delay_ratio), count(*)
        from main.workflow_executions
        where delay_ratio is not null
            and ended_at >= (select max(ended_at) from main.workflow_executions) - interval '1 day'
        group by tenant_id
        """,
    ),
    "pool_utilisation": (
        "main.pool_scaling_decisions",
        """
        select tenant_id, agent_id, utilisation * replicas_before / replicas_after, 1
        from (
            select *, row_number() over (partition by agent_id order by decision_id desc) as nth
            from main.pool_scaling_decisions
            where event_type = 'PoolScaled'
        ) as latest
        where nth = 1 and replicas_after > 0
        """,
    ),
    "prediction_accuracy": (
        PREDICTION_LOG_TABLE,
        f"""
        with latest as (
            select model_name, max(model_version) as model_version
            from {PREDICTION_LOG_TABLE} group by 1
        ),
        joined as (
            select l.tenant_id, l.model_name || ' v' || l.model_version as subject,
                l.predicted_failure, s.status = 'failed' as failed
            from {PREDICTION_LOG_TABLE} as l
            inner join latest using (model_name, model_version)
            inner join main.agent_sessions as s on s.session_id = l.session_id
            where s.status in ('succeeded', 'failed')
        ),
        rates as (
            select tenant_id, subject, count(*) as n,
                sum(case when predicted_failure and failed then 1.0 else 0.0 end)
                    / nullif(sum(case when failed then 1.0 else 0.0 end), 0) as tpr,
                sum(case when not predicted_failure and not failed then 1.0 else 0.0 end)
                    / nullif(sum(case when not failed then 1.0 else 0.0 end), 0) as tnr
            from joined group by 1, 2
        )
        select tenant_id, subject, (coalesce(tpr, tnr) + coalesce(tnr, tpr)) / 2, n from rates
        """,
    ),
    # every registered agent, with 0 when it had no episode: the rule is evaluated (and its
    # alerts clear) even on a quiet day
    "agent_anomaly_episodes": (
        ANOMALIES_TABLE,
        f"""
        select a.tenant_id, a.agent_id, count(e.agent_id), 1
        from main.agents as a
        left join {ANOMALIES_TABLE} as e on e.agent_id = a.agent_id
        group by 1, 2
        """,
    ),
}
FLEET_SQL: dict[str, tuple[str, str]] = {
    "api_p95_ms": (
        "main.api_latency_windows",
        """
        select source, max(p95_ms), sum(requests)
        from main.api_latency_windows
        where window_end >= (select max(window_end) from main.api_latency_windows)
            - interval '1 hour'
        group by source
        """,
    ),
    "prediction_accuracy": (
        ACCURACY_TABLE,
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
    ),
}


def observations(conn: Connection) -> tuple[list[Observation], set[str]]:
    """Every tenant's and the fleet's observations, and which metrics could be measured (a
    metric whose table is not published is not measured, so its alerts do not resolve)."""
    found: list[Observation] = []
    measured: set[str] = set()
    has_agents = table_exists(conn, "main.agents")

    def add(metric: str, tenant: str, subject: Any, value: Any, samples: Any, detail: str = ""):
        if value is not None:
            found.append(
                Observation(
                    metric, str(subject), float(value), int(samples or 0), detail, str(tenant)
                )
            )

    for metric, (table, sql) in TENANT_SQL.items():
        if not table_exists(conn, table):
            continue
        if metric == "orchestration_failure_rate" and not has_column(
            conn, "main", "agent_sessions", "failure_class"
        ):
            continue  # a mart built before failures were classed (ADR 0018)
        if metric == "agent_anomaly_episodes" and not has_agents:
            # no registry mart (a bare warehouse): the episodes alone, as the operator's
            sql = (
                f"select '{FLEET_TENANT}', agent_id, count(*), count(*) "
                f"from {ANOMALIES_TABLE} group by 2"
            )
        if metric == "prediction_accuracy" and not table_exists(conn, "main.agent_sessions"):
            continue
        measured.add(metric)
        for tenant, subject, value, samples in conn.execute(sql).fetchall():
            add(metric, tenant, subject, value, samples)
    for metric, (table, sql) in FLEET_SQL.items():
        if not table_exists(conn, table):
            continue
        measured.add(metric)
        for subject, value, samples in conn.execute(sql).fetchall():
            add(metric, FLEET_TENANT, subject, value, samples)
    # a champion promoted below the alert line on its own held-out window (ADR 0018); a
    # mirror written before holdout_rows existed is skipped until the next model run
    if has_column(conn, "analytics", "prediction_models", "holdout_rows"):
        measured.add("prediction_accuracy")
        for subject, value, samples in conn.execute(
            """
            select model_name || ' v' || version || ' (holdout)', balanced_accuracy, holdout_rows
            from analytics.prediction_models
            where is_champion and balanced_accuracy is not null and holdout_rows is not null
            """
        ).fetchall():
            add("prediction_accuracy", FLEET_TENANT, subject, value, samples)
    if table_exists(conn, ALERT_FORECASTS_TABLE):
        rows = conn.execute(
            f"select tenant_id, metric, subject, value, samples, detail from {ALERT_FORECASTS_TABLE}"
        ).fetchall()
        # every forecastable metric is measured once the table exists: a forecast that no
        # longer shows a crossing (or no waiting sessions) clears its alert
        measured.update(f"forecast:{m}" for m in FORECASTABLE)
        for tenant, metric, subject, value, samples, detail in rows:
            add(metric, tenant, subject, value, samples, detail or "")
    if table_exists(conn, CUSTOM_VALUES_TABLE):
        for tenant, name, subject, value, error in conn.execute(
            f"select tenant_id, name, subject, value, error from {CUSTOM_VALUES_TABLE}"
        ).fetchall():
            if error:
                continue  # a failing metric is not measured: its alerts neither fire nor clear
            measured.add(f"custom:{name}")
            add(f"custom:{name}", tenant, subject, value, 1)
    return found, measured
