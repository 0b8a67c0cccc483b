"""Dashboard numbers: pure metric functions and read-only warehouse access."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from dashboards import data, metrics


def frame(rows: list[dict]) -> pl.DataFrame:
    base = {
        "session_id": "s",
        "tenant_id": "default",
        "pattern": "solo",
        "capability": "code.generate",
        "status": "succeeded",
        "agent_name": "a",
        "cost_usd": 0.01,
        "total_tokens": 100,
        "duration_ms": 1000.0,
        "error_type": None,
        "requested_at": datetime(2026, 11, 20, tzinfo=UTC),
    }
    return pl.DataFrame([{**base, "session_id": f"s{i}", **r} for i, r in enumerate(rows)])


def test_success_rate_counts_finished_sessions_only() -> None:
    sessions = frame(
        [
            {"status": "succeeded"},
            {"status": "failed", "error_type": "timeout"},
            {"status": "running"},
        ]
    )
    head = metrics.headline(sessions)
    assert (head.sessions, head.succeeded, head.failed, head.finished) == (3, 1, 1, 2)
    assert head.success_rate == 0.5
    assert head.cost_usd == pytest.approx(0.03)
    assert metrics.headline(sessions.head(0)).success_rate is None
    assert metrics.fmt_rate(None) == "n/a" and metrics.fmt_rate(0.5) == "50.0%"
    assert metrics.fmt_usd(1.5) == "$1.5000"


def test_filters_trend_reasons_and_agent_table() -> None:
    now = datetime(2026, 11, 23, tzinfo=UTC)
    sessions = frame(
        [
            {"requested_at": now - timedelta(days=10), "agent_name": "old"},
            {
                "requested_at": now - timedelta(hours=2),
                "status": "failed",
                "error_type": "timeout",
                "agent_name": "b",
            },
            {
                "requested_at": now - timedelta(hours=1),
                "status": "failed",
                "error_type": None,
                "tenant_id": "acme",
            },
            {"requested_at": now - timedelta(hours=1)},
        ]
    )
    recent = metrics.apply_filters(sessions, since=metrics.since_for("7 days", now))
    assert recent.height == 3
    assert metrics.apply_filters(sessions, tenants=["acme"]).height == 1
    assert metrics.apply_filters(sessions, agents=["b"], capabilities=["code.generate"]).height == 1
    assert metrics.since_for("all", now) is None
    trend = metrics.daily_trend(sessions)
    assert trend["sessions"].sum() == 4 and trend.height == 2
    reasons = metrics.failure_reasons(sessions)
    assert dict(zip(reasons["error_type"], reasons["sessions"], strict=True)) == {
        "timeout": 1,
        "unknown": 1,
    }
    agents = metrics.agent_table(sessions)
    assert agents.filter(pl.col("agent_name") == "b")["success_rate"][0] == 0.0
    for empty in (metrics.daily_trend, metrics.failure_reasons, metrics.agent_table):
        assert empty(sessions.head(0)).height == 0


def test_reads_are_read_only_and_missing_things_are_explained(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "w.duckdb"
    with pytest.raises(data.WarehouseUnavailable, match="make demo"):
        data.query("select 1", path)
    with duckdb.connect(str(path)) as conn:
        conn.execute("create table main.t as select 1 as x")
    assert data.query("select x from main.t", path)["x"][0] == 1
    with pytest.raises(data.WarehouseUnavailable, match="no such table"):
        data.query("select * from main.agent_sessions", path)
    # a writer holds the file: the reader gives up with a clear message instead of blocking it
    with (
        pytest.raises(data.WarehouseUnavailable, match="busy"),
        duckdb.connect(str(path)) as writer,
    ):
        writer.execute("insert into main.t values (2)")
        data.query("select * from main.t", path, retries=2)
    assert data.table_exists("t", path) and not data.table_exists("agent_sessions", path)
    assert data.load_agent_daily(path) is None
