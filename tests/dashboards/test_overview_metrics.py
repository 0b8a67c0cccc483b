"""What the executive overview decides: counted savings, top actions, health, alerts in
words and time buckets (pure functions; the page itself is in test_browser)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboards import metrics
from ml.recommendations import RECOMMENDATION_SCHEMA


def recs(rows: list[dict]) -> pl.DataFrame:
    full = [
        {
            "recommendation_id": f"{r['kind']}/{r['subject']}/{i}",
            "title": f"{r['kind']} {r['subject']}",
            "detail": "",
            "estimated_savings_s": None,
            "confidence": 0.5,
            "evidence": "{}",
            "tenant_id": "default",
            **r,
        }
        for i, r in enumerate(rows)
    ]
    return pl.DataFrame(full, schema={**RECOMMENDATION_SCHEMA, "tenant_id": pl.Utf8})


def test_overlapping_savings_are_counted_once_in_the_larger_alternative() -> None:
    frame = recs(
        [
            {"kind": "flaky_step", "subject": "code.review", "estimated_savings_usd": 0.30},
            {"kind": "cheaper_agent", "subject": "code.review:a", "estimated_savings_usd": 0.20},
            {"kind": "cheaper_agent", "subject": "code.review:b", "estimated_savings_usd": 0.15},
            {"kind": "flaky_step", "subject": "plan", "estimated_savings_usd": 0.10},
            {"kind": "underused_pool", "subject": "agt_1", "estimated_savings_usd": None},
        ]
    )
    counted = metrics.counted_savings(frame)
    by_id = {r["subject"]: r for r in counted.to_dicts()}
    # code.review: the two agents together (0.35) beat the capability-wide action (0.30)
    assert by_id["code.review:a"]["counted_savings_usd"] == 0.20
    assert by_id["code.review:b"]["counted_savings_usd"] == 0.15
    assert by_id["code.review"]["counted_savings_usd"] == 0.0
    assert "overlaps" in by_id["code.review"]["why"]
    assert by_id["plan"]["counted_savings_usd"] == 0.10  # nothing overlaps it
    assert by_id["agt_1"]["counted_savings_usd"] == 0.0
    assert by_id["agt_1"]["why"] == "no money estimate"
    assert round(float(counted["counted_savings_usd"].sum()), 10) == 0.45
    top = metrics.top_actions(counted)
    assert top["subject"].to_list() == ["code.review:a", "code.review:b", "plan"]


def test_two_tenants_savings_never_cancel_each_other() -> None:
    frame = recs(
        [
            {"kind": "flaky_step", "subject": "x", "estimated_savings_usd": 0.3},
            {"kind": "flaky_step", "subject": "x", "estimated_savings_usd": 0.2, "tenant_id": "t2"},
        ]
    )
    assert float(metrics.counted_savings(frame)["counted_savings_usd"].sum()) == 0.5


def test_no_recommendations_count_nothing() -> None:
    counted = metrics.counted_savings(recs([]))
    assert counted.is_empty() and "counted_savings_usd" in counted.columns
    assert metrics.top_actions(counted).is_empty()


rec_rows = st.lists(
    st.fixed_dictionaries(
        {
            "kind": st.sampled_from(["flaky_step", "cheaper_agent", "underused_pool"]),
            "capability": st.sampled_from(["c1", "c2"]),
            "agent": st.sampled_from(["a", "b", "c"]),
            "estimated_savings_usd": st.one_of(
                st.none(), st.floats(min_value=0, max_value=10, allow_nan=False)
            ),
            "tenant_id": st.sampled_from(["t1", "t2"]),
        }
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(rows=rec_rows)
def test_counted_savings_never_double_count(rows: list[dict]) -> None:
    def subject(r: dict) -> str:
        if r["kind"] == "cheaper_agent":
            return f"{r['capability']}:{r['agent']}"
        return r["capability"] if r["kind"] == "flaky_step" else r["agent"]

    frame = recs(
        [
            {
                "kind": r["kind"],
                "subject": subject(r),
                "estimated_savings_usd": r["estimated_savings_usd"],
                "tenant_id": r["tenant_id"],
            }
            for r in rows
        ]
    )
    counted = metrics.counted_savings(frame)
    assert counted.height == frame.height  # every recommendation stays visible
    claimed = [max(0.0, r["estimated_savings_usd"] or 0.0) for r in rows]
    total = float(counted["counted_savings_usd"].sum())
    assert total <= sum(claimed) + 1e-9
    assert total >= max(claimed, default=0.0) - 1e-9  # the best single action always counts
    for row in counted.to_dicts():
        assert 0.0 <= row["counted_savings_usd"] <= max(0.0, row["estimated_savings_usd"] or 0)
    # per tenant and capability, agent-level and capability-level money never both count
    scoped = counted.filter(
        pl.col("capability").is_not_null() & (pl.col("counted_savings_usd") > 0)
    )
    for (_, _), group in scoped.group_by("tenant_id", "capability"):
        assert group["agent"].is_null().all() or group["agent"].is_not_null().all()
        assert group.filter(pl.col("agent").is_null()).height <= 1
        agents = group["agent"].drop_nulls()
        assert agents.n_unique() == agents.len()  # one action per agent and capability


def alerts(rows: list[dict]) -> pl.DataFrame:
    base = {
        "status": "open",
        "severity": "warning",
        "message": "m",
        "first_seen_at": datetime(2026, 11, 30, 8, 5),
        "last_seen_at": datetime(2026, 11, 30, 9, 0),
    }
    return pl.DataFrame([{**base, **r} for r in rows])


def test_open_alerts_in_words_most_severe_first() -> None:
    frame = alerts(
        [
            {"message": "pool p busy"},
            {"message": "18% of sessions fail", "severity": "critical"},
            {"message": "old", "status": "resolved", "severity": "critical"},
        ]
    )
    assert metrics.alert_sentences(frame) == [
        "CRITICAL: 18% of sessions fail since 2026-11-30 08:05 UTC",
        "WARNING: pool p busy since 2026-11-30 08:05 UTC",
    ]
    assert metrics.alert_sentences(None) == []


def headline(ok: int, failed: int) -> metrics.Headline:
    rows = [{"status": "succeeded"}] * ok + [{"status": "failed"}] * failed
    frame = pl.DataFrame(
        [{**r, "cost_usd": 0.0, "total_tokens": 0} for r in rows],
        schema={"status": pl.Utf8, "cost_usd": pl.Float64, "total_tokens": pl.Int64},
    )
    return metrics.headline(frame)


def test_health_reads_critical_alerts_then_the_failure_target() -> None:
    critical = alerts([{"severity": "critical"}])
    assert metrics.health(headline(99, 1), critical).verdict == "Critical"
    state = metrics.health(headline(90, 10), None)
    assert (
        state.verdict == "Needs attention" and "10.0% of finished sessions failed" in state.reason
    )
    assert metrics.health(headline(100, 1), alerts([])).verdict == "Healthy"
    assert metrics.health(headline(100, 0), alerts([{}])).verdict == "Needs attention"
    assert metrics.health(headline(0, 0), None).verdict == "No data"


def test_buckets_fit_the_range_one_day_is_hourly() -> None:
    assert metrics.bucket_for(timedelta(minutes=3))[0] == "minute"
    assert metrics.bucket_for(timedelta(days=1))[0] == "hour"
    assert metrics.bucket_for(timedelta(days=7))[0] == "6 hours"
    assert metrics.bucket_for(timedelta(days=400))[0] == "day"


def test_activity_follows_the_time_filter_and_splits_outcomes() -> None:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    stamps = [now - timedelta(hours=h) for h in (1, 1, 2, 30)]
    sessions = pl.DataFrame(
        {
            "requested_at": [t.replace(tzinfo=None) for t in stamps],
            "status": ["succeeded", "failed", "running", "succeeded"],
            "cost_usd": [0.1, 0.2, None, 0.4],
        }
    )
    last_day = sessions.filter(
        pl.col("requested_at") >= (now - timedelta(days=1)).replace(tzinfo=None)
    )
    frame, unit, span = metrics.activity(last_day, now - timedelta(days=1), now)
    assert unit == "hour"
    assert span is not None and span[0] == datetime(2026, 11, 29, 12, 0)
    assert frame["sessions"].sum() == 3
    assert set(frame["outcome"]) == {"succeeded", "failed", "open"}
    assert frame.filter(pl.col("outcome") == "failed")["cost_usd"].item() == 0.2
    assert (frame["bucket_end"] - frame["bucket"]).unique().to_list() == [timedelta(hours=1)]
    everything, unit, _ = metrics.activity(sessions, None, now)
    assert unit == "hour" and everything["sessions"].sum() == 4
    empty, _, span = metrics.activity(sessions.clear(), None, now)
    assert empty.is_empty() and span is None


def test_wrong_answers_are_task_failures_and_do_not_breach_the_orchestration_target() -> None:
    rows = (
        [{"status": "succeeded", "answer_quality": 0.8}] * 95
        + [{"status": "failed", "failure_class": "task"}] * 4
        + [{"status": "failed", "failure_class": "orchestration"}]
    )
    frame = pl.DataFrame(
        [
            {"cost_usd": 0.0, "total_tokens": 0, "agent_name": "a", "duration_ms": 1.0, **r}
            for r in rows
        ],
        schema={
            "status": pl.Utf8,
            "failure_class": pl.Utf8,
            "answer_quality": pl.Float64,
            "cost_usd": pl.Float64,
            "total_tokens": pl.Int64,
            "agent_name": pl.Utf8,
            "duration_ms": pl.Float64,
        },
    )
    head = metrics.headline(frame)
    assert (head.orchestration_failed, head.task_failed) == (1, 4)
    assert head.orchestration_failure_rate == pytest.approx(0.01)
    assert head.task_failure_rate == pytest.approx(0.04)
    assert head.answer_quality == pytest.approx(0.8)
    assert metrics.orchestration_sla(head) == "met"  # 5% failed, 1% the orchestrator's
    state = metrics.health(head, None)
    assert state.verdict == "Healthy" and "4.0% on the task" in state.reason
    worse = metrics.headline(frame.with_columns(pl.lit("orchestration").alias("failure_class")))
    assert metrics.orchestration_sla(worse) == "breached"
    assert metrics.health(worse, None).verdict == "Needs attention"
    agents = metrics.agent_table(frame)
    assert agents.select("orchestration_failure_rate", "task_failure_rate").row(0) == (
        pytest.approx(0.01),
        pytest.approx(0.04),
    )


def test_live_accuracy_is_one_line_per_model_without_holdout_scores() -> None:
    accuracy = pl.DataFrame(
        {
            "model_name": ["s", "s", "s", "r"],
            "model_version": [1, 2, 2, 1],
            "day": [date(2026, 11, 30)] * 3 + [date(2026, 11, 29)],
            "source": ["live", "live", "holdout", "live"],
            "predictions": [10, 30, 50, 20],
            "balanced_accuracy": [0.5, 0.9, 0.99, 0.7],
        }
    )
    lines = metrics.live_accuracy_lines(accuracy)
    assert lines.select("model_name", "predictions", "versions").rows() == [
        ("r", 20, "1"),
        ("s", 40, "1, 2"),
    ]
    assert lines["balanced_accuracy"].to_list() == pytest.approx([0.7, (5 + 27) / 40])
    assert metrics.live_accuracy_lines(accuracy.filter(pl.col("source") == "holdout")).is_empty()
