"""Training, time-ordered evaluation, and the promotion rule."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from ml.errors import InsufficientDataError
from ml.failure_model import (
    MIN_SESSIONS,
    beats,
    evaluate,
    failure_probabilities,
    time_split,
    train_failure_model,
)
from tests.ml.synthetic import feature_frame


def test_learns_the_signal_on_a_later_holdout() -> None:
    trained = train_failure_model(feature_frame())
    split = trained.split
    assert split.train["requested_at"].max() < split.holdout["requested_at"].min()
    assert len(split.holdout) == 60 and len(split.train) == 180
    metrics = trained.metrics
    assert metrics["roc_auc"] > 0.75
    assert metrics["brier"] < 0.2
    assert 0 <= metrics["accuracy"] <= 1 and metrics["log_loss"] > 0
    probabilities = failure_probabilities(trained.pipeline, split.holdout)
    assert probabilities.shape == (60,) and ((probabilities >= 0) & (probabilities <= 1)).all()


def test_holdout_order_does_not_depend_on_row_order() -> None:
    frame = feature_frame(n=80)
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=3)
    assert time_split(frame).holdout["session_id"].tolist() == (
        time_split(shuffled).holdout["session_id"].tolist()
    )


def test_too_few_sessions_is_a_clear_error() -> None:
    with pytest.raises(InsufficientDataError, match=f"{MIN_SESSIONS} are needed"):
        train_failure_model(feature_frame(n=MIN_SESSIONS - 1))


def test_a_single_outcome_is_a_clear_error() -> None:
    all_succeeded = feature_frame(n=60).with_columns(pl.lit(0).alias("failed"))
    with pytest.raises(InsufficientDataError, match="0 failures and 45 successes") as info:
        train_failure_model(all_succeeded)
    assert "run more" in str(info.value)


def test_evaluate_on_a_single_class_holdout_leaves_auc_undefined() -> None:
    metrics = evaluate(np.array([0.1, 0.3]), np.array([0, 0]))
    assert math.isnan(metrics["roc_auc"])
    assert metrics["brier"] == pytest.approx((0.01 + 0.09) / 2)
    assert metrics["accuracy"] == 1.0 and metrics["holdout_failure_rate"] == 0.0


@pytest.mark.parametrize(
    ("challenger", "champion", "expected"),
    [
        ({"brier": 0.2}, None, True),
        ({"brier": 0.1}, {"brier": 0.2}, True),
        ({"brier": 0.2}, {"brier": 0.2}, False),
        ({"brier": 0.3}, {"brier": 0.2}, False),
        ({"brier": 0.3}, {"brier": float("nan")}, True),
        ({"brier": float("nan")}, {"brier": 0.2}, False),
        ({}, {"brier": 0.2}, False),
        ({"brier": 0.3}, {}, True),
    ],
)
def test_promotion_rule(challenger, champion, expected) -> None:
    assert beats(challenger, champion) is expected


class _PredictOnly:
    """A pyfunc-like model: predict returns both class columns."""

    def predict(self, features):
        return np.column_stack([np.full(len(features), 0.7), np.full(len(features), 0.3)])


def test_failure_probabilities_from_a_pyfunc_style_model() -> None:
    frame = feature_frame(n=5).to_pandas()
    assert failure_probabilities(_PredictOnly(), frame).tolist() == [0.3] * 5
