"""Run-level failure prediction on a simulated fleet with hidden ground truth: held-out days,
no leakage from a run's own outcome, and a clear gain over the agent's base rate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.errors import InsufficientDataError
from ml.fleet_runs import simulated_runs
from ml.run_failure import add_history_features, train_run_failure_model, youden_threshold

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def runs_frame(outcomes: list[tuple[str, int, float]]) -> pl.DataFrame:
    """Minimal runs: (agent, failed, latency) one minute apart."""
    return pl.DataFrame(
        [
            {
                "run_id": f"r{i:04d}",
                "occurred_at": T0 + timedelta(minutes=i),
                "agent_id": agent,
                "capability": "code.generate",
                "complexity": 0.5,
                "input_tokens": 1000,
                "timeout_s": 60.0,
                "context_window_tokens": 8000,
                "proficiency": 3,
                "latency_ms": latency,
                "failed": failed,
            }
            for i, (agent, failed, latency) in enumerate(outcomes)
        ]
    )


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 1), st.floats(10, 5000)),
        min_size=1,
        max_size=60,
    )
)
def test_history_features_use_only_earlier_runs(outcomes: list[tuple[str, int, float]]) -> None:
    """Flipping the last run's outcome or latency never changes any run's features."""
    frame = runs_frame(outcomes)
    flipped = [*outcomes[:-1], (outcomes[-1][0], 1 - outcomes[-1][1], outcomes[-1][2] * 3)]
    columns = ["recent_failure_rate", "prior_failure_rate", "log_timeout_margin"]
    assert (
        add_history_features(frame)
        .select(columns)
        .equals(add_history_features(runs_frame(flipped)).select(columns))
    )


def test_recent_failures_raise_the_recent_rate_of_that_agent_only() -> None:
    outcomes = [("a", 0, 100.0)] * 20 + [("b", 0, 100.0)] * 5 + [("a", 1, 100.0)] * 10
    features = add_history_features(runs_frame([*outcomes, ("a", 0, 100.0), ("b", 0, 100.0)]))
    last_a, last_b = features.row(-2, named=True), features.row(-1, named=True)
    assert last_a["recent_failure_rate"] > 0.4
    assert last_b["recent_failure_rate"] < 0.05
    assert features["context_fill"][0] == pytest.approx(1000 / 8000)


def test_held_out_days_auc_beats_the_agent_base_rate_and_nears_the_oracle() -> None:
    runs, _ = simulated_runs(days=21, runs_per_day=1500, seed=11)
    model = train_run_failure_model(add_history_features(runs), holdout_days=7)
    m = model.metrics
    assert m["holdout_runs"] == 7 * 1500
    assert m["roc_auc"] >= 0.85, m
    assert m["roc_auc"] > m["agent_base_rate_auc"] + 0.2, m
    assert m["roc_auc"] <= m["oracle_auc"] + 0.02, m
    assert m["balanced_accuracy"] >= 0.8, m
    # calibrated: predicted and observed failure rates agree on the held-out days
    assert m["brier"] < m["holdout_failure_rate"] * (1 - m["holdout_failure_rate"])


def test_the_simulated_fleet_fails_for_the_reasons_it_says() -> None:
    runs, episodes = simulated_runs(days=7, runs_per_day=800, seed=3)
    kinds = set(runs["error_type"].drop_nulls().to_list())
    assert {"context_length_exceeded", "timeout"} <= kinds
    overflow = runs.filter(pl.col("input_tokens") > pl.col("context_window_tokens"))
    assert overflow.height > 0 and overflow["failed"].min() == 1
    degraded = runs.filter(pl.col("degraded"))
    healthy = runs.filter(~pl.col("degraded") & (pl.col("timeout_s") == 60.0))
    assert episodes and degraded["failed"].mean() > 5 * healthy["failed"].mean()


def test_too_few_runs_or_one_outcome_say_what_to_do() -> None:
    with pytest.raises(InsufficientDataError, match="agent runs to learn from"):
        train_run_failure_model(add_history_features(runs_frame([("a", 0, 10.0)] * 5)))
    calm = add_history_features(runs_frame([("a", 0, 10.0)] * 400))
    with pytest.raises(InsufficientDataError, match="both outcomes"):
        train_run_failure_model(
            calm.with_columns(pl.col("occurred_at") + pl.duration(days=0)), holdout_days=0
        )


def test_youden_threshold_separates_clean_scores() -> None:
    assert 0.2 < youden_threshold([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) <= 0.8


def test_a_model_no_better_than_the_base_rate_never_becomes_champion() -> None:
    from ml.failure_model import beats, evaluate

    labels = np.array([0, 0, 0, 1])
    scored = evaluate(np.array([0.9, 0.9, 0.9, 0.1]), labels, base_rate=0.25)
    assert scored["base_rate_brier"] == pytest.approx(0.1875)
    assert not beats(scored, None)  # worse than always saying 25%
    good = evaluate(np.array([0.05, 0.05, 0.05, 0.9]), labels, base_rate=0.25)
    assert beats(good, None) and beats(good, scored)
    assert not beats(scored, good)


def test_step_calls_become_runs_without_abandoned_attempts() -> None:
    from ml.run_failure import runs_from_step_calls

    calls = pl.DataFrame(
        {
            "step_call_id": ["s/a/1", "s/a/2", "s/b/1"],
            "started_at": [T0, T0 + timedelta(seconds=5), T0 + timedelta(seconds=9)],
            "agent_id": ["x", "y", "x"],
            "capability": ["code.review"] * 3,
            "complexity": [0.4, None, 0.2],
            "requested_input_tokens": [800, 800, None],
            "timeout_s": [30.0, None, 30.0],
            "proficiency": [4, 2, None],
            "latency_ms": [900.0, 0.0, 700.0],
            "outcome": ["failed", "abandoned", "completed"],
        }
    )
    runs = runs_from_step_calls(calls)
    assert runs["run_id"].to_list() == ["s/a/1", "s/b/1"]
    assert runs["failed"].to_list() == [1, 0]
    assert runs["input_tokens"].to_list() == [800, 1000] and runs["timeout_s"][1] == 30.0
    assert add_history_features(runs)["context_fill"].to_list() == [0.0, 0.0]
