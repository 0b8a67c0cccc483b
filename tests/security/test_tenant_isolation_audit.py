"""Adversarial audit of tenant isolation and tenant-controlled execution: each test is a
hole that was found, shown with the payload that opened it."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import duckdb
import pytest
from fastapi.testclient import TestClient

from nofx.alerts import DEFAULT_RULES, AlertService, Observation, evaluate
from nofx.api.app import create_app
from nofx.metrics import MetricQueryError, check_metric_sql, run_metric, sandbox
from nofx.security import ApiKeyService, Scope
from nofx.store import EventStore


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute(
            "create table main.agent_sessions as select * from (values "
            "('s1', 'acme', 'succeeded', 1.0), ('s2', 'bolt', 'succeeded', 100.0)) "
            "as t(session_id, tenant_id, status, cost_usd)"
        )
    return path


def _run(sql: str, warehouse: Path, **kw: float) -> list[float]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return [v.value for v in run_metric(sql, tenant_id="acme", source=conn, **kw)]


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_one_function_call_in_a_metric_cannot_take_the_callers_memory_or_time(
    warehouse: Path,
) -> None:
    """DuckDB's memory_limit (256 MB) and its interrupt bound a query's operators, not one
    scalar call: ``repeat('x', 2000000000)`` allocated 4 GB in the calling process (the
    data platform's) and ran 22 s past a 5 s limit. The sandbox's own capped process
    refuses it, and the caller's memory does not move."""
    before = _peak_rss_mib()
    started = time.monotonic()
    with pytest.raises(MetricQueryError):
        _run(
            "select length(repeat('x', 2000000000)) as value from agent_sessions",
            warehouse,
            timeout_s=1.0,
        )
    assert _peak_rss_mib() - before < 1024
    assert time.monotonic() - started < 15
    # an ordinary metric still answers, with only the tenant's rows
    assert _run("select sum(cost_usd) as value from agent_sessions", warehouse) == [1.0]


def test_a_metric_cannot_read_the_servers_settings() -> None:
    """duckdb_settings() showed the server's home, secret and temp directories (and that
    it runs as root) to any tenant."""
    with pytest.raises(MetricQueryError, match="duckdb_settings"):
        check_metric_sql(
            "select 1 as value, value as subject from duckdb_settings(), agent_sessions"
        )


# -- what held: cross-tenant probes of routes the authorization matrix (tests/api/
# test_security.py) does not cover, kept so a regression shows at once ----------------------


def test_warehouse_lists_bus_channels_and_alerts_stay_per_tenant(
    store: EventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("create schema analytics")
        conn.execute(
            "create table analytics.recommendations as select 'acme' as tenant_id, "
            "'r' || range as recommendation_id, 'cheaper_agent' as kind, "
            "range::double as estimated_savings_usd from range(3) union all "
            "select 'bolt', 'secret-of-bolt', 'cheaper_agent', 1e9"
        )
    monkeypatch.setenv("NOFX_WAREHOUSE_PATH", str(path))
    keys = ApiKeyService(store)
    a = {"Authorization": f"Bearer {keys.create('acme', 'a', {Scope.WRITE}).plaintext}"}
    b = {"Authorization": f"Bearer {keys.create('bolt', 'b', {Scope.WRITE}).plaintext}"}
    (alert,) = (
        AlertService(store)
        .sync(
            evaluate(DEFAULT_RULES, [Observation("api_p95_ms", "h", 500.0, samples=10)]),
            set(),
            tenant_id="bolt",
        )
        .raised
    )
    with TestClient(create_app(store=store, auth_required=True)) as client:
        url = "/api/v1/analytics/recommendations"
        first = client.get(url, params={"limit": 1}, headers=a).json()
        assert [i["tenant_id"] for i in first["items"]] == ["acme"]
        # acme's cursor, replayed by bolt, pages bolt's own snapshot or is refused
        replayed = client.get(url, params={"cursor": first["next_cursor"]}, headers=b)
        assert replayed.status_code == 422 or all(
            i["tenant_id"] == "bolt" for i in replayed.json()["items"]
        )
        seen = client.get(url, headers=a).json()["items"]
        assert "secret-of-bolt" not in {i["recommendation_id"] for i in seen}

        message = {"sender": "x", "topic": "shared", "body": {"pin": 42}}
        assert client.post("/api/v1/orchestration/communicate", json=message, headers=b).is_success
        assert client.get("/api/v1/orchestration/communicate/topic:shared", headers=a).json() == []

        ack = client.post(f"/api/v1/alerts/{alert.alert_id}/acknowledge", json={}, headers=a)
        assert ack.status_code == 404
        assert client.get(f"/api/v1/alerts/{alert.alert_id}", headers=a).status_code == 404
        fleet = client.get("/api/v1/alerts", params={"scope": "fleet"}, headers=a)
        assert fleet.status_code == 403


def test_a_metric_cannot_reach_duckdbs_temp_directory(
    warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB always allows its temp directory (``.tmp`` under the working directory, shared
    by every in-memory database started there) even with external access off, so a metric
    listed and read the spill files of other queries, and its own spills could fill 90 % of
    the disk. ``query()`` assembled the function names at run time, past the static check."""
    spill = tmp_path / "cwd" / ".tmp" / "duckdb_temp_storage-0.tmp"
    spill.parent.mkdir(parents=True)
    spill.write_text("bolt's spilled rows")
    monkeypatch.chdir(spill.parent.parent)
    dynamic = "select 1 as value, content as subject from agent_sessions, query({})"
    listing = f"'select file as content from gl' || 'ob(''{spill.parent}/*'')'"
    for inner in ("'select * from read_' || 'text(''.tmp/*'')'", listing):
        sql = dynamic.format(inner)
        try:
            _run(sql, warehouse)
        except MetricQueryError:
            continue
        raise AssertionError(f"{sql} was answered")
    with duckdb.connect(":memory:", config=sandbox.SANDBOX_CONFIG) as conn:
        sandbox._locked(conn)
        conn.execute("create table t as select 1")
        with pytest.raises(duckdb.Error):
            conn.execute(f"select * from read_text('{spill}')").fetchall()
        with pytest.raises(duckdb.Error, match="Out of Memory"):  # no spilling to disk
            conn.execute(
                "select count(*) from (select random() r from range(30000000) order by r)"
            ).fetchall()


def test_only_the_value_and_subject_of_a_metric_reach_the_caller() -> None:
    """The sandbox's result crosses into the caller's process: other columns and long text
    (up to DuckDB's 256 MB result, pickled twice) are left behind in the sandbox."""
    columns, rows = sandbox._projected(
        ["big", "value", "subject"], [("x" * 10_000, "y" * 10_000, "z" * 10_000), (None, 2, 1)]
    )
    assert columns == ["value", "subject"]
    assert rows == [("y" * 200, "z" * 200), (2, 1)]


def test_a_tenant_with_the_most_rows_a_metric_may_read_still_gets_its_value(
    tmp_path: Path,
) -> None:
    """The sandbox's memory cap is set once the rows are loaded: set before, Arrow's
    allocator crashed the process (SIGSEGV) on a 57 MB mart of 200,000 rows (the most a
    metric may read)."""
    path = tmp_path / "big.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute(
            "create table agent_sessions as select 's' || range as session_id, 'acme' as "
            "tenant_id, 'succeeded' as status, random() as cost_usd, 'cap' || (range % 50) "
            "as capability, repeat('p', 200) as prompt, now() as ended_at, range as a1, "
            f"range::varchar as a2 from range({sandbox.MAX_SOURCE_ROWS})"
        )
    assert _run("select count(*) as value from agent_sessions", path) == [
        float(sandbox.MAX_SOURCE_ROWS)
    ]
