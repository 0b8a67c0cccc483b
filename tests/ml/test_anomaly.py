"""Anomaly detection on a simulated fleet with hidden ground truth, trained on a clean week
and judged on the two weeks after it."""

from __future__ import annotations

from datetime import datetime

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.anomaly import TrueEpisode, detect_episodes, evaluate_episodes, fit_baselines, score
from ml.errors import InsufficientDataError
from ml.fleet_timeseries import fleet_telemetry

CUT = datetime(2026, 1, 12)  # one week of training, then the episodes begin


def split(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    return (
        frame.filter(pl.col("bucket_start") < CUT),
        frame.filter(pl.col("bucket_start") >= CUT),
    )


@pytest.mark.parametrize("seed", [7, 8, 9, 10])
def test_injected_degradations_are_found_with_precision_and_recall_over_90(seed: int) -> None:
    frame, truth = fleet_telemetry(agents=8, days=21, episodes=12, seed=seed)
    train, test = split(frame)
    found = detect_episodes(test, fit_baselines(train))
    result = evaluate_episodes(found, truth)
    assert result["precision"] >= 0.9 and result["recall"] >= 0.9, result


def test_a_clean_fleet_raises_nothing() -> None:
    frame, _ = fleet_telemetry(agents=6, days=14, episodes=0, seed=3)
    train, test = split(frame)
    assert detect_episodes(test, fit_baselines(train)) == []


def test_an_episode_says_what_was_normal_and_what_was_seen() -> None:
    frame, truth = fleet_telemetry(agents=4, days=14, episodes=3, seed=11)
    train, test = split(frame)
    found = detect_episodes(test, fit_baselines(train))
    assert found
    for episode in found:
        assert episode.peak_score > 8
        if episode.metric in ("latency", "cost"):
            assert episode.observed > episode.baseline
    true_agents = {t.agent_id for t in truth}
    assert {e.agent_id for e in found} <= true_agents


def test_too_little_history_is_refused_with_what_to_do() -> None:
    frame, _ = fleet_telemetry(agents=2, days=3, episodes=0, seed=1)
    with pytest.raises(InsufficientDataError, match="hours of history"):
        fit_baselines(frame.head(10))
    with pytest.raises(InsufficientDataError):
        fit_baselines(frame.clear())


def test_evaluation_counts_overlaps_by_agent() -> None:
    t = TrueEpisode("a", datetime(2026, 1, 1, 3), datetime(2026, 1, 1, 6))
    assert evaluate_episodes([], [t]) == {
        "precision": 1.0,
        "recall": 0.0,
        "found": 0.0,
        "true": 1.0,
    }


@settings(max_examples=20, deadline=None)
@given(st.randoms(use_true_random=False))
def test_scores_do_not_depend_on_row_order(rng) -> None:  # type: ignore[no-untyped-def]
    frame, _ = fleet_telemetry(
        agents=3, days=3, episodes=1, seed=5, episodes_after=datetime(2026, 1, 6)
    )
    baselines = fit_baselines(frame)
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=rng.randint(0, 10_000))
    assert score(shuffled, baselines).equals(score(frame, baselines))
