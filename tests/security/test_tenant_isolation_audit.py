"""Adversarial audit of tenant isolation and tenant-controlled execution: each test is a
hole that was found, shown with the payload that opened it."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import duckdb
import pytest

from nofx.metrics import MetricQueryError, check_metric_sql, run_metric


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
