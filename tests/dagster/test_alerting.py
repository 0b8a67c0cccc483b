"""Track C alerting in Dagster: predictive alerts per tenant from the forecasts, custom
metrics computed per tenant and alerted on, every evaluated rule recorded."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from dagster_project.defs.operations.alerts import (
    alert_forecasts,
    alerts,
    custom_metric_values,
    utilisation_points,
    with_predictive,
)
from dagster_project.defs.operations.usage import usage_insights
from dagster_project.lib.resources import EventStoreResource, WarehouseResource
from nofx.alert_rules import DEFAULT_RULES, AlertRule, Comparison, TenantRules
from nofx.alerts import FLEET_TENANT, AlertService
from nofx.metrics import CustomMetricService
from nofx.settings import Settings
from nofx.store import EventStore

NOW = datetime(2026, 3, 9, 12)


def build_warehouse(path: Path) -> None:
    """acme's concurrency forecast climbs past its two-slot capacity within 6 hours; bolt's
    stays low. acme had 6 sessions waiting when predicted (30% failure), one has finished."""
    forecast = []
    for tenant, peak in (("acme", 3.0), ("bolt", 0.2)):
        for h in range(48):
            value = peak * min(1.0, h / 6)
            forecast.append((NOW + timedelta(hours=h), "concurrency", value, tenant))
            forecast.append((NOW + timedelta(hours=h), "calls", 10.0, tenant))
    with duckdb.connect(str(path)) as conn:
        conn.execute("create schema analytics")
        conn.register(
            "f",
            pl.DataFrame(
                forecast, schema=["bucket_start", "metric", "forecast", "tenant_id"], orient="row"
            ),
        )
        conn.execute("create table analytics.usage_forecasts as select * from f")
        conn.execute(
            "create table main.pool_scaling_decisions as select * from (values "
            "(1, 'acme', 'PoolScaled', 'a1', 1, 2, 0.5), (2, 'bolt', 'PoolScaled', 'b1', 1, 1, 0.1)"
            ") as t(decision_id, tenant_id, event_type, agent_id, replicas_before, "
            "replicas_after, utilisation)"
        )
        conn.execute(
            "create table main.agents as select * from (values ('a1', 'acme', 1), "
            "('b1', 'bolt', 4)) as t(agent_id, tenant_id, max_concurrency)"
        )
        rows = [(f"s{i}", "acme", 0.3, "requested", "m", 3) for i in range(6)]
        rows += [(f"t{i}", "bolt", 0.3, "requested", "m", 3) for i in range(2)]  # too few
        conn.register(
            "p",
            pl.DataFrame(
                rows,
                schema=[
                    "session_id",
                    "tenant_id",
                    "failure_probability",
                    "actual_status",
                    "model_name",
                    "model_version",
                ],
                orient="row",
            ),
        )
        conn.execute("create table analytics.operational_predictions as select * from p")
        conn.execute(
            "create table main.agent_sessions as select * from (values "
            "('s1', 'acme', 'succeeded', 2.0, timestamp '2026-03-09 10:00'), "
            "('x2', 'bolt', 'succeeded', 90.0, timestamp '2026-03-09 10:00')) "
            "as t(session_id, tenant_id, status, cost_usd, ended_at)"
        )


@pytest.fixture
def setup(tmp_path: Path, settings: Settings) -> dict:
    path = tmp_path / "warehouse.duckdb"
    build_warehouse(path)
    return {
        "path": path,
        "resources": {
            "warehouse": WarehouseResource(path=str(path)),
            "event_store": EventStoreResource(database_url=settings.database_url),
        },
        "url": settings.database_url,
    }


def test_predictive_alerts_open_per_tenant_before_the_threshold_with_the_forecast(
    setup: dict,
) -> None:
    result = dg.materialize([alert_forecasts, alerts], resources=setup["resources"])
    assert result.success
    store = EventStore(setup["url"])
    try:
        service = AlertService(store)
        acme = {a.rule_id: a for a in service.list(tenant_id="acme")}
        bolt = service.list(tenant_id="bolt")
        fleet = service.list(tenant_id=FLEET_TENANT)
    finally:
        store.dispose()
    util = acme["resource_utilisation_forecast"]
    # capacity 2 replicas x 1 slot; the forecast reaches 3 in flight: 150% at +6 h
    assert util.value == pytest.approx(1.5)
    assert "crosses 0.8 in 5 h" in util.message and "forecast: +1h" in util.message
    failing = acme["session_failure_rate_forecast"]
    # s1 was predicted while waiting but has finished since: 5 of the 6 are still waiting
    assert failing.value == pytest.approx(0.3) and "5 waiting sessions" in failing.message
    assert "forecast: +1h 0.3" in failing.message
    assert bolt == [] and fleet == []  # bolt's forecast stays low; 2 waiting is too few
    with duckdb.connect(str(setup["path"]), read_only=True) as conn:
        evaluated = set(
            conn.execute("select tenant_id, rule_id from analytics.alert_evaluations").fetchall()
        )
    assert ("bolt", "resource_utilisation_forecast") in evaluated
    # the waiting sessions finish: the next evaluation sees none waiting and clears the alert
    with duckdb.connect(str(setup["path"])) as conn:
        conn.execute(
            "insert into main.agent_sessions select session_id, tenant_id, 'succeeded', 1.0, "
            "timestamp '2026-03-09 11:00' from analytics.operational_predictions"
        )
    assert dg.materialize([alert_forecasts, alerts], resources=setup["resources"]).success
    store = EventStore(setup["url"])
    try:
        after = {a.rule_id: a.status for a in AlertService(store).list(tenant_id="acme")}
    finally:
        store.dispose()
    assert after["session_failure_rate_forecast"] == "resolved"
    assert after["resource_utilisation_forecast"] == "open"  # the usage forecast still crosses


def test_custom_metrics_are_computed_per_tenant_and_alerted_on(setup: dict) -> None:
    store = EventStore(setup["url"])
    try:
        metrics = CustomMetricService(store)
        for tenant in ("acme", "bolt"):
            metrics.define(tenant, "spend", "select sum(cost_usd) as value from agent_sessions")
            TenantRules(store).put(
                tenant, AlertRule("big_spend", "custom:spend", Comparison.ABOVE, 50.0)
            )
        metrics.define("acme", "broken", "select missing_column as value from agent_sessions")
    finally:
        store.dispose()
    result = dg.materialize([custom_metric_values, alerts], resources=setup["resources"])
    assert result.success
    with duckdb.connect(str(setup["path"]), read_only=True) as conn:
        values = conn.execute(
            "select tenant_id, name, value, error is not null from analytics.custom_metric_values "
            "order by 1, 2"
        ).fetchall()
    assert values == [
        ("acme", "broken", None, True),
        ("acme", "spend", 2.0, False),
        ("bolt", "spend", 90.0, False),
    ]
    store = EventStore(setup["url"])
    try:
        service = AlertService(store)
        assert [a.rule_id for a in service.list(tenant_id="bolt")] == ["big_spend"]
        assert service.list(tenant_id="acme") == []
    finally:
        store.dispose()


def test_every_forecastable_rule_gets_a_predictive_twin_with_the_same_threshold() -> None:
    rules = with_predictive(DEFAULT_RULES)
    twins = {r.rule_id: r for r in rules if r.metric.startswith("forecast:")}
    assert set(twins) == {"session_failure_rate_forecast", "resource_utilisation_forecast"}
    assert twins["resource_utilisation_forecast"].threshold == 0.8


def test_utilisation_points_need_capacity() -> None:
    usage = pl.DataFrame({"bucket_start": [NOW, NOW + timedelta(hours=1)], "forecast": [1.0, 2.0]})
    assert utilisation_points(usage, 0, 24) == []
    points = utilisation_points(usage, 4, 1)
    assert [(p.hours_ahead, p.value) for p in points] == [(1.0, 0.25)]


def test_usage_insights_name_the_busiest_endpoint_the_failing_key_and_the_peak_hour() -> None:
    rows = [
        ("acme", "k1", "GET", "/api/v1/sessions", NOW, 60, 0),
        ("acme", "k2", "POST", "/api/v1/sessions", NOW + timedelta(hours=1), 30, 15),
        ("acme", "k1", "GET", "/api/v1/alerts", NOW + timedelta(hours=1), 10, 0),
    ]
    frame = pl.DataFrame(
        rows,
        schema=["tenant_id", "key_id", "method", "route", "hour", "requests", "client_errors"],
        orient="row",
    )
    insights = usage_insights(frame)
    titles = [i["title"] for i in insights]
    assert titles[0] == "60% of your API traffic is GET /api/v1/sessions"
    assert titles[1] == "key k2 gets 50% of its requests refused (4xx)"
    assert titles[2] == "your API peak is 12:00-13:00 UTC"
    assert {i["kind"] for i in insights} == {"api_usage"}
    assert usage_insights(frame.head(0)) == []


def test_pool_demand_splits_the_tenants_forecast_by_each_agents_busy_share() -> None:
    from dagster_project.defs.forecasts.assets import pool_demand

    usage = pl.DataFrame(
        {
            "tenant_id": ["acme", "acme", "bolt"],
            "bucket_start": [NOW, NOW, NOW],
            "metric": ["concurrency", "calls", "concurrency"],
            "forecast": [4.0, 100.0, -1.0],
        }
    )
    shares = pl.DataFrame(
        {
            "tenant_id": ["acme", "acme", "bolt"],
            "agent_id": ["a1", "a2", "b1"],
            "share": [0.75, 0.25, 1.0],
        }
    )
    rows = pool_demand(usage, shares).select("agent_id", "expected_concurrency").rows()
    assert rows == [("a1", 3.0), ("a2", 1.0), ("b1", 0.0)]  # a negative forecast is no demand
