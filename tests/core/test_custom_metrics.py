"""Custom business metrics: tenant SQL sees only the tenant's rows of the published marts and
cannot run anything but one bounded SELECT (no files, no attach, no settings)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from fastapi.testclient import TestClient

from nofx.metrics import (
    ALLOWED_MARTS,
    CustomMetricService,
    MetricQueryError,
    check_metric_sql,
    run_metric,
)
from nofx.security import ApiKeyService, Scope
from nofx.store import EventStore


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute(
            "create table main.agent_sessions as select * from (values "
            "('s1', 'acme', 'succeeded', 1.0), ('s2', 'acme', 'failed', 2.0), "
            "('s3', 'bolt', 'succeeded', 100.0)) as t(session_id, tenant_id, status, cost_usd)"
        )
        conn.execute("create table main.secrets as select 'bolt' as tenant_id, 42 as pin")
        conn.execute("create schema analytics")
        conn.execute("create table analytics.alerts as select 'bolt' as tenant_id, 'x' as m")
    return path


def run(sql: str, warehouse: Path, tenant: str = "acme", **kw: float) -> list[tuple[str, float]]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return [(v.subject, v.value) for v in run_metric(sql, tenant_id=tenant, source=conn, **kw)]


def test_a_metric_sees_only_its_tenants_rows(warehouse: Path) -> None:
    assert run("select sum(cost_usd) as value from agent_sessions", warehouse) == [("tenant", 3.0)]
    assert run("select sum(cost_usd) as value from agent_sessions", warehouse, "bolt") == [
        ("tenant", 100.0)
    ]
    # no filter on tenant_id can widen it: the other tenant's rows are not in the sandbox
    everyone = "select count(*) as value from agent_sessions where tenant_id <> 'acme' or true"
    assert run(everyone, warehouse) == [("tenant", 2.0)]
    by_status = (
        "select status as subject, count(*) as value from agent_sessions group by 1 order by 1"
    )
    assert run(by_status, warehouse) == [("failed", 1.0), ("succeeded", 1.0)]


@pytest.mark.parametrize(
    "sql",
    [
        "select pin as value from secrets",  # not a published mart
        "select count(*) as value from main.secrets, agent_sessions",
        "select count(*) as value from analytics.alerts, agent_sessions",
        "select count(*) as value from agent_sessions, duckdb_tables() where table_name = 'secrets'"
        " having count(*) > 0",
    ],
)
def test_other_tables_are_out_of_reach(sql: str, warehouse: Path) -> None:
    try:
        result = run(sql, warehouse)
    except MetricQueryError:
        return
    assert result == []  # duckdb_tables() lists only the sandbox: no 'secrets' there


@pytest.mark.parametrize(
    "sql",
    [
        "attach '/tmp/x.duckdb' as x",
        "select 1 as value from agent_sessions; attach '/tmp/x.duckdb' as x",
        "copy agent_sessions to '/tmp/out.csv'",
        "select * from read_csv('/etc/passwd'), agent_sessions",
        "select * from read_csv_auto('/etc/passwd')",
        "pragma database_list",
        "select 1 as value; select 2 as value",
        "install httpfs",
        "set enable_external_access = true",
        "create table agent_sessions2 as select * from agent_sessions",
        "delete from agent_sessions",
        "select * from glob('/*'), agent_sessions",
        "select 1 as value",  # reads no mart
        "",
        "select 1 as value from agent_sessions " + "x" * 5000,
    ],
)
def test_anything_but_one_select_over_the_marts_is_refused(sql: str) -> None:
    with pytest.raises(MetricQueryError):
        check_metric_sql(sql)


def test_the_sandbox_holds_even_where_the_static_check_would_not_look(warehouse: Path) -> None:
    """The static check is a courtesy; with it bypassed the sandbox still denies files."""
    from nofx.metrics import sandbox

    with duckdb.connect(":memory:", config=sandbox.SANDBOX_CONFIG) as conn:
        conn.execute("create table agent_sessions as select 1 as value")
        sandbox._locked(conn)
        with pytest.raises(duckdb.Error):
            conn.execute("select * from read_csv('/etc/passwd')").fetchall()
        with pytest.raises(duckdb.Error):
            conn.execute(f"attach '{warehouse}' as w").fetchall()
        with pytest.raises(duckdb.Error):
            conn.execute("set enable_external_access = true").fetchall()


def test_results_are_bounded_and_shaped(warehouse: Path) -> None:
    with pytest.raises(MetricQueryError, match="value"):
        run("select count(*) as n from agent_sessions", warehouse)
    with pytest.raises(MetricQueryError, match="number"):
        run("select 'x' as value from agent_sessions", warehouse)
    with pytest.raises(MetricQueryError, match="rows"):
        run("select range as value from agent_sessions, range(1000)", warehouse)
    with pytest.raises(MetricQueryError, match="limit"):
        run(
            "select count(*) as value from agent_sessions, range(100000000000) a",
            warehouse,
            timeout_s=0.3,
        )


def test_every_allowed_mart_is_tenant_scoped() -> None:
    """Each mart the sandbox copies is filtered by tenant_id: the dbt models must have it."""
    root = Path(__file__).resolve().parents[2] / "dbt" / "models" / "marts"
    for name in ALLOWED_MARTS:
        assert "tenant_id" in (root / f"{name}.sql").read_text(), name


def test_metrics_over_http_are_per_tenant(store: EventStore) -> None:
    from nofx.api.app import create_app

    keys = ApiKeyService(store)
    a = {"Authorization": f"Bearer {keys.create('acme', 'a', {Scope.WRITE}).plaintext}"}
    b = {"Authorization": f"Bearer {keys.create('bolt', 'b', {Scope.WRITE}).plaintext}"}
    body = {"sql": "select sum(cost_usd) as value from agent_sessions", "description": "spend"}
    with TestClient(create_app(store=store, auth_required=True)) as client:
        made = client.put("/api/v1/custom-metrics/spend", json=body, headers=a)
        assert made.status_code == 200 and made.json()["metric"] == "custom:spend"
        assert [m["name"] for m in client.get("/api/v1/custom-metrics", headers=a).json()] == [
            "spend"
        ]
        assert client.get("/api/v1/custom-metrics", headers=b).json() == []
        assert client.get("/api/v1/custom-metrics/spend", headers=b).status_code == 404
        assert client.get("/api/v1/custom-metrics/spend/values", headers=b).status_code == 404
        assert client.delete("/api/v1/custom-metrics/spend", headers=b).status_code == 404
        evil = client.put(
            "/api/v1/custom-metrics/evil",
            json={"sql": "select 1 as value from agent_sessions; attach 'x' as y"},
            headers=b,
        )
        assert evil.status_code == 422 and "'attach' is not allowed" in evil.json()["detail"]
        two = client.put(
            "/api/v1/custom-metrics/two",
            json={"sql": "select 1 as value from agent_sessions; select 2 as value from agents"},
            headers=b,
        )
        assert two.status_code == 422 and "exactly one statement" in two.json()["detail"]
        values = client.get("/api/v1/custom-metrics/spend/values", headers=a)
        assert values.status_code == 200 and values.json()["items"] == []  # not computed yet
        assert client.delete("/api/v1/custom-metrics/spend", headers=a).status_code == 204
    assert CustomMetricService(store).list() == []
