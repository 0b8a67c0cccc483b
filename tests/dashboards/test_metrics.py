"""Dashboard numbers: pure metric functions and read-only warehouse access."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import polars as pl
import pytest

from dashboards import metrics


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
            {"status": "requested"},
            {"status": "cancelled"},
        ]
    )
    head = metrics.headline(sessions)
    assert (head.sessions, head.succeeded, head.failed, head.finished, head.open) == (5, 1, 1, 2, 2)
    assert head.success_rate == 0.5
    assert head.cost_usd == pytest.approx(0.05)
    assert head.avg_cost_usd == pytest.approx(0.01)
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
    assert trend.height == 7, "seven calendar days up to the latest one"
    assert trend["sessions"].to_list() == [0] * 6 + [3], "the 10-day-old session is out"
    assert trend["success_rate"].to_list()[-1] == pytest.approx(1 / 3)
    assert trend["success_rate"].null_count() == 6
    assert metrics.daily_trend(sessions, days=11)["sessions"].sum() == 4
    reasons = metrics.failure_reasons(sessions)
    assert dict(zip(reasons["error_type"], reasons["sessions"], strict=True)) == {
        "timeout": 1,
        "unknown": 1,
    }
    agents = metrics.agent_table(sessions)
    assert agents.filter(pl.col("agent_name") == "b")["success_rate"][0] == 0.0
    for empty in (metrics.daily_trend, metrics.failure_reasons, metrics.agent_table):
        assert empty(sessions.head(0)).height == 0


def test_the_time_filter_works_on_the_warehouse_naive_utc_timestamps() -> None:
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    sessions = frame(
        [
            {"requested_at": datetime(2026, 11, 23, 11)},
            {"requested_at": datetime(2026, 11, 21, 11)},
        ]
    )
    assert sessions["requested_at"].dtype == pl.Datetime("us")
    for window, expected in (("24 hours", 1), ("7 days", 2), ("all", 2)):
        since = metrics.since_for(window, now)
        assert metrics.apply_filters(sessions, since=since).height == expected, window
    local = now.astimezone(timezone(timedelta(hours=-5)))
    assert metrics.apply_filters(sessions, since=local - timedelta(hours=2)).height == 1


def test_daily_performance_follows_the_same_filters() -> None:
    daily = pl.DataFrame(
        {
            "day": [datetime(2026, 11, 1), datetime(2026, 11, 22), datetime(2026, 11, 23)],
            "agent_name": ["a", "a", "b"],
            "capability": ["code.review", "code.generate", "code.generate"],
        }
    )
    since = metrics.since_for("7 days", datetime(2026, 11, 23, 12, tzinfo=UTC))
    assert metrics.apply_daily_filters(daily, since=since).height == 2
    assert metrics.apply_daily_filters(daily, agents=["a"]).height == 2
    assert metrics.apply_daily_filters(daily, capabilities=["code.review"]).height == 1
    assert metrics.apply_daily_filters(daily).height == 3


def test_the_critical_path_follows_measured_seconds_not_the_plan() -> None:
    from dashboards.metrics import critical_path

    steps = [
        {"id": "plan", "capability": "p"},
        {"id": "fast", "capability": "c", "needs": ["plan"]},
        {"id": "slow", "capability": "c", "needs": ["plan"]},
        {"id": "merge", "capability": "s", "needs": ["fast", "slow"]},
    ]
    assert critical_path(steps, {"plan": 1, "fast": 1, "slow": 5, "merge": 1}) == [
        "plan",
        "slow",
        "merge",
    ]
    assert critical_path(steps, {"plan": 1, "fast": 9, "slow": 5, "merge": 1})[1] == "fast"
    assert critical_path([], {}) == []


def test_the_dag_marks_failed_skipped_and_critical_steps() -> None:
    import polars as pl

    from dashboards.metrics import workflow_dot

    spec = {
        "steps": [
            {"id": "a", "capability": "code.generate"},
            {"id": "b", "capability": "code.review", "needs": ["a"]},
            {"id": "c", "capability": "code.generate", "needs": ["b"]},
        ]
    }
    steps = pl.DataFrame(
        {
            "step": ["a", "b"],
            "attempts": [1, 3],
            "succeeded": [True, False],
            "seconds": [1.0, 2.5],
            "cost_usd": [0.01, 0.02],
        }
    )
    dot = workflow_dot(spec, steps)
    assert dot.startswith("digraph workflow {") and dot.endswith("}")
    assert '"b" [label="b\\ncode.review\\n3 attempt(s), 2.5s", fillcolor="#ffcdd2"' in dot
    assert '"c" [label="c\\ncode.generate\\nskipped", fillcolor="#eeeeee"' in dot
    assert '"a" -> "b" [color="#d62728"]' in dot  # on the critical path


def test_the_sla_is_met_only_at_one_percent_failures_or_fewer() -> None:
    from dashboards.metrics import sla_status

    assert sla_status(None) == "no data"
    assert sla_status(0.995) == "met" and sla_status(0.99) == "met"
    assert sla_status(0.9) == "breached"
