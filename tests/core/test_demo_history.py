"""`nofx demo` makes a week of history on a simulated clock: every Track C table fills and
every seed alert rule is evaluated; the pieces (demand shape, clock) behave as they say."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nofx import simclock
from nofx.alert_rules import DEFAULT_RULES
from nofx.demo_history import hourly_weights, interleave, spread
from nofx.domain import utcnow
from nofx.fleet import demo_requests, demo_workflow_requests


@given(st.integers(0, 5000), st.lists(st.floats(0.01, 10), min_size=1, max_size=300))
def test_spread_adds_up_and_follows_the_weights(total: int, weights: list[float]) -> None:
    counts = spread(total, weights)
    assert sum(counts) == total and all(c >= 0 for c in counts)
    whole = sum(weights)
    assert all(abs(c - total * w / whole) < 1 for c, w in zip(counts, weights, strict=True))


def test_weekdays_are_busier_than_weekends_and_days_than_nights() -> None:
    monday = datetime(2026, 3, 2, tzinfo=UTC)
    weights = hourly_weights(monday, 7 * 24)
    assert weights[10] > weights[20] > weights[3]  # Monday 10:00, 20:00, 03:00
    assert weights[5 * 24 + 10] < weights[10]  # Saturday 10:00


def test_workflows_are_spread_through_the_week_with_one_near_the_end() -> None:
    plain, flows = demo_requests(90, seed=1), demo_workflow_requests(5, seed=1)
    mixed = interleave(plain, flows)
    assert len(mixed) == 95 and sorted(map(id, mixed)) == sorted(map(id, plain + flows))
    where = [i for i, r in enumerate(mixed) if r in flows]
    assert where[0] < 20 and where[-1] >= 85


def test_the_simulated_clock_moves_utcnow_and_resets() -> None:
    past = datetime(2026, 1, 5, 9, tzinfo=UTC)
    try:
        simclock.set_now(past)
        assert abs(utcnow() - past) < timedelta(seconds=5)
    finally:
        simclock.reset()
    assert abs(utcnow() - datetime.now(UTC)) < timedelta(seconds=5)


@pytest.mark.slow
def test_the_demo_fills_every_track_c_table_and_evaluates_every_seed_rule(
    demo_home: Path,
) -> None:
    nofx_home = demo_home  # `nofx demo` at make demo's time scale (tests/pipeline_fixture.py)
    summary = json.loads((nofx_home / "demo-summary.json").read_text())
    empty = [name for name, rows in summary["track_c"].items() if not rows]
    assert empty == []
    assert {r.rule_id for r in DEFAULT_RULES} <= set(summary["rules_evaluated"])
    assert "daily_spend" in summary["rules_evaluated"]  # the tenant's rule on a custom metric
    with duckdb.connect(str(nofx_home / "warehouse.duckdb"), read_only=True) as conn:
        (span,) = conn.execute(
            "select max(started_at) - min(started_at) from main.agent_sessions"
        ).fetchall()[0]
        # predictions made while the session waited, whose outcome arrived afterwards
        (scored,) = conn.execute(
            "select count(*) from analytics.prediction_log as l join main.agent_sessions as s "
            "using (session_id) where s.status in ('succeeded', 'failed') "
            "and l.actual_status = 'requested'"
        ).fetchall()[0]
    assert span >= timedelta(days=7)
    assert scored >= 10


@pytest.mark.slow
def test_live_accuracy_is_scored_on_exactly_the_predictions_made_before_the_outcome(
    demo_home: Path,
) -> None:
    """The demo predicts the sessions left waiting, runs them, then refreshes: the live
    accuracy counts exactly those predictions (none made after an outcome was known), and
    the tenant's prediction_accuracy rule is evaluated on it."""
    with duckdb.connect(str(demo_home / "warehouse.duckdb"), read_only=True) as conn:
        (waiting,) = conn.execute(
            "select count(*) from analytics.prediction_log as l join main.agent_sessions as s "
            "using (session_id) where l.actual_status = 'requested' "
            "and s.status in ('succeeded', 'failed')"
        ).fetchall()[0]
        ((scored, low, high),) = conn.execute(
            "select sum(predictions), min(balanced_accuracy), max(balanced_accuracy) "
            "from analytics.prediction_accuracy where source = 'live'"
        ).fetchall()
        tenants = {
            t
            for (t,) in conn.execute(
                "select distinct tenant_id from analytics.alert_evaluations "
                "where rule_id = 'prediction_accuracy'"
            ).fetchall()
        }
    assert waiting >= 10 and scored == waiting and 0 <= low <= high <= 1
    assert "default" in tenants
