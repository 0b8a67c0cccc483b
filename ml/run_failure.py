"""Will this agent run fail? Calibrated probabilities from what is known before it starts.

The features come from the run request and from the agent's own past, never from the run's
outcome: how full the agent's context window will be, how tight the timeout is against the
latency the agent has shown lately, and how often it failed recently (a degraded release
shows there first). Evaluation holds out whole days at the end, so the score says how the
model does tomorrow; the decision threshold is chosen on the training days only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import polars as pl
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, SplineTransformer, StandardScaler

from ml.errors import InsufficientDataError
from ml.failure_model import evaluate, youden_threshold
from nofx.routing.prediction import MARGIN_CAP, MARGIN_FLOOR

RUN_CATEGORICAL = ("agent_id", "capability")
RUN_NUMERIC = (
    "complexity",
    "log_input_tokens",
    "proficiency",
    "context_fill",
    "over_context",
    "log_timeout_margin",
    "recent_failure_rate",
    "prior_failure_rate",
)
RUN_FEATURES = RUN_CATEGORICAL + RUN_NUMERIC
# Risk is not linear in these (a timeout margin matters near zero and not at all far above
# it), so they also enter through cubic splines.
RUN_CURVED = ("log_timeout_margin", "recent_failure_rate", "complexity", "context_fill")
RUN_LABEL = "failed"
RECENT_RUNS = 20
LATENCY_HISTORY = 50
MIN_RUNS = 100


def add_history_features(runs: pl.DataFrame) -> pl.DataFrame:
    """The model's inputs for each run, from the request and the agent's earlier runs only.

    ``runs`` needs occurred_at, agent_id, capability, complexity, input_tokens, timeout_s,
    context_window_tokens (null when unknown), proficiency, latency_ms and failed.
    """
    ordered = runs.sort(["occurred_at", "run_id"]).with_row_index("_order")
    # A prompt over the agent's window is rejected before the agent runs (a permanent error
    # the request causes, known before the call): not the agent's outcome, so it is not in
    # its history, as the router's LearnedStats skips permanent errors (ADR 0014).
    counted = (
        (pl.col("input_tokens") <= pl.col("context_window_tokens")).fill_null(True).cast(pl.Int64)
    )
    failed = pl.col("failed").cast(pl.Int64) * pl.col("_counted")
    ordered = ordered.with_columns(counted.alias("_counted"))
    ordered = ordered.with_columns(
        # counted outcomes strictly before this run, per agent
        pl.col("_counted").cum_sum().shift(1).over("agent_id").fill_null(0).alias("_prior_runs"),
        failed.cum_sum().shift(1).over("agent_id").fill_null(0).alias("_prior_failures"),
    )
    # failures among an agent's first j counted outcomes, to subtract the ones older than the
    # last RECENT_RUNS: recent = F(prior) - F(prior - RECENT_RUNS)
    cumulative = (
        ordered.filter(pl.col("_counted") == 1)
        .select(
            "agent_id",
            pl.col("_counted").cum_sum().over("agent_id").alias("_upto"),
            failed.cum_sum().over("agent_id").alias("_failures_upto"),
        )
        .with_columns(pl.col("_upto").cast(pl.Int64), pl.col("_failures_upto").cast(pl.Int64))
    )
    history = (
        ordered.with_columns((pl.col("_prior_runs") - RECENT_RUNS).cast(pl.Int64).alias("_upto"))
        .join(cumulative, on=["agent_id", "_upto"], how="left")
        .with_columns(
            (pl.col("_prior_failures") - pl.col("_failures_upto").fill_null(0))
            .cast(pl.Float64)
            .alias("_recent_failures"),
            pl.col("_prior_failures").cast(pl.Float64),
        )
        .drop("_upto", "_failures_upto", "_counted")
    )
    successes = (
        history.filter(pl.col("failed") == 0)
        .select(
            "agent_id",
            "occurred_at",
            pl.col("latency_ms")
            .rolling_median(LATENCY_HISTORY, min_samples=1)
            .over("agent_id")
            .alias("agent_latency_p50_ms"),
        )
        .sort("occurred_at")
    )
    joined = history.sort("occurred_at").join_asof(
        successes,
        on="occurred_at",
        by="agent_id",
        strategy="backward",
        allow_exact_matches=False,
        check_sortedness=False,  # both sides were sorted by time just above
    )
    recent_n = pl.min_horizontal(pl.col("_prior_runs"), pl.lit(RECENT_RUNS)).cast(pl.Float64)
    expected_ms = pl.col("agent_latency_p50_ms").fill_null(1000.0) * (1.0 + pl.col("complexity"))
    fill = (
        pl.col("input_tokens").cast(pl.Float64) / pl.col("context_window_tokens").cast(pl.Float64)
    ).fill_null(0.0)
    return (
        joined.with_columns(
            pl.col("input_tokens").cast(pl.Float64).clip(1.0).log().alias("log_input_tokens"),
            fill.alias("context_fill"),
            (fill > 1.0).cast(pl.Float64).alias("over_context"),
            (pl.col("timeout_s") * 1000.0 / expected_ms)
            .log()
            .clip(MARGIN_FLOOR, MARGIN_CAP)
            .alias("log_timeout_margin"),
            # smoothed towards a small prior rate so an agent's first runs are not 0 or 1
            ((pl.col("_recent_failures") + 0.05) / (recent_n + 1.0)).alias("recent_failure_rate"),
            ((pl.col("_prior_failures") + 0.5) / (pl.col("_prior_runs") + 10.0)).alias(
                "prior_failure_rate"
            ),
            pl.col("proficiency").cast(pl.Float64),
            pl.col("complexity").cast(pl.Float64),
        )
        .sort("_order")
        .drop("_order", "_recent_failures", "_prior_runs", "_prior_failures")
    )


def build_run_pipeline() -> Pipeline:
    """One-hot agent and capability, scaled numbers plus splines of the curved ones, then
    logistic regression: close to calibrated by construction, and its terms can be read.
    (On the simulated fleet it matches gradient boosting within 0.005 AUC.)"""
    preprocess = ColumnTransformer(
        [
            ("categories", OneHotEncoder(handle_unknown="ignore"), list(RUN_CATEGORICAL)),
            ("curves", SplineTransformer(n_knots=6, degree=3), list(RUN_CURVED)),
            ("numbers", StandardScaler(), list(RUN_NUMERIC)),
        ]
    )
    return Pipeline(
        [
            ("features", preprocess),
            ("classifier", LogisticRegression(C=0.1, max_iter=3000)),
        ]
    )


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(roc_auc_score(labels, scores)) if len(set(labels.tolist())) == 2 else math.nan


@dataclass
class RunFailureModel:
    pipeline: Pipeline
    threshold: float
    metrics: dict[str, float] = field(default_factory=dict)
    holdout: pd.DataFrame = field(default_factory=pd.DataFrame)

    def probabilities(self, features: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.pipeline.predict_proba(features[list(RUN_FEATURES)]))[:, 1]

    @property
    def holdout_features(self) -> pd.DataFrame:
        return self.holdout[list(RUN_FEATURES)]

    @property
    def holdout_labels(self) -> np.ndarray:
        return self.holdout[RUN_LABEL].to_numpy(dtype=int)


def runs_from_step_calls(calls: pl.DataFrame) -> pl.DataFrame:
    """The ``agent_step_calls`` mart as runs: attempts that completed or failed (abandoned
    ones say nothing about the agent), with what was known when each started. The context
    window comes from the agent's spec when the mart carries ``context_window_tokens``
    (agents declare it); otherwise that input is absent (zero)."""
    finished = calls.filter(
        pl.col("outcome").is_in(["completed", "failed"]) & pl.col("started_at").is_not_null()
    )
    return finished.select(
        pl.col("step_call_id").alias("run_id"),
        pl.col("started_at").alias("occurred_at"),
        "agent_id",
        "capability",
        pl.col("complexity").fill_null(0.5).cast(pl.Float64),
        pl.col("requested_input_tokens").fill_null(1000).cast(pl.Int64).alias("input_tokens"),
        pl.col("timeout_s").fill_null(60.0).cast(pl.Float64),
        (
            pl.col("context_window_tokens").cast(pl.Int64)
            if "context_window_tokens" in calls.columns
            else pl.lit(None, dtype=pl.Int64)
        ).alias("context_window_tokens"),
        pl.col("proficiency").fill_null(3).cast(pl.Float64),
        pl.col("latency_ms").cast(pl.Float64),
        (pl.col("outcome") == "failed").cast(pl.Int64).alias("failed"),
    )


def day_split(frame: pl.DataFrame, holdout_days: int | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Everything before the last ``holdout_days`` days trains; those days are held out.

    With ``holdout_days=None`` (a history shorter than a couple of weeks) the latest quarter
    of the runs by time is held out instead."""
    if frame.height < MIN_RUNS:
        raise InsufficientDataError(
            f"only {frame.height} agent runs to learn from; {MIN_RUNS} are needed",
            hint="run more sessions and materialize again",
        )
    if holdout_days is None:
        cut = frame["occurred_at"].sort()[int(frame.height * 0.75)]
    else:
        last = frame["occurred_at"].max()
        assert isinstance(last, datetime), "occurred_at is a datetime column"
        last_midnight = last.replace(hour=0, minute=0, second=0, microsecond=0)
        cut = last_midnight - timedelta(days=holdout_days - 1)
    train = frame.filter(pl.col("occurred_at") < cut).to_pandas()
    holdout = frame.filter(pl.col("occurred_at") >= cut).to_pandas()
    if train.empty or holdout.empty or train[RUN_LABEL].nunique() < 2:
        raise InsufficientDataError(
            f"{len(train)} training runs and {len(holdout)} held-out runs after cutting "
            f"{holdout_days} days, and the training runs need both outcomes",
            hint="collect more days of runs, or hold out fewer days",
        )
    return train, holdout


def train_run_failure_model(
    frame: pl.DataFrame, *, holdout_days: int | None = 7
) -> RunFailureModel:
    """Fit on the earlier days, pick the threshold there, score the held-out days.

    ``frame`` is the output of :func:`add_history_features`. Metrics include the peers a
    user would compare against: the agent's own historical failure rate as the score, and,
    when the frame carries ``true_failure_probability`` (a simulation), the oracle.
    """
    train, holdout = day_split(frame, holdout_days)
    pipeline = build_run_pipeline()
    pipeline.fit(train[list(RUN_FEATURES)], train[RUN_LABEL].astype(int))
    model = RunFailureModel(pipeline=pipeline, threshold=0.5, holdout=holdout)
    model.threshold = youden_threshold(
        train[RUN_LABEL].to_numpy(dtype=int), model.probabilities(train)
    )
    labels = holdout[RUN_LABEL].to_numpy(dtype=int)
    # the session model's metrics (brier, roc_auc, balanced accuracy at the threshold...),
    # so both compare alike in the registry, plus the peers a user would compare against
    metrics = {
        **evaluate(
            model.probabilities(holdout),
            labels,
            base_rate=float(train[RUN_LABEL].mean()),
            threshold=model.threshold,
        ),
        "holdout_runs": float(len(labels)),
        "train_runs": float(len(train)),
        "agent_base_rate_auc": _auc(labels, holdout["prior_failure_rate"].to_numpy()),
    }
    if "true_failure_probability" in holdout:
        metrics["oracle_auc"] = _auc(labels, holdout["true_failure_probability"].to_numpy())
    model.metrics = metrics
    return model
