"""Anomaly detection per agent on latency, error rate and cost, against a learned baseline.

Each agent's normal behaviour is learned from a training window, robustly: the median and
the median absolute deviation of its hourly mean latency and cost per call (so a few bad
hours in training do not become normal), and its pooled error rate. A new hour is scored
by how far it sits from that baseline in the baseline's own units: a robust z-score for
latency and cost, and for errors the binomial z of the failures seen given the calls made
(an hour with 3 calls and 1 failure is not alarming; 300 calls and 100 failures is).
Consecutive anomalous hours of one agent and metric form an episode. No fixed thresholds
in milliseconds or dollars: the same rule fits a 200 ms agent and a 20 s one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from ml.errors import InsufficientDataError

METRICS = ("latency", "error_rate", "cost")
MAD_TO_SIGMA = 1.4826
MIN_TRAINING_HOURS = 24
# A spread floor relative to the median: a perfectly steady series must not make a 1%
# wobble look like a 50-sigma event.
RELATIVE_FLOOR = 0.05


@dataclass(frozen=True)
class Baseline:
    agent_id: str
    latency_median: float
    latency_spread: float  # per call: an hour of n calls has spread / sqrt(n)
    cost_median: float
    cost_spread: float  # per call
    error_rate: float


@dataclass(frozen=True)
class AnomalyEpisode:
    agent_id: str
    metric: str
    start: datetime
    end: datetime  # start of the last anomalous hour
    peak_score: float
    baseline: float
    observed: float


def _per_call(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter(pl.col("calls") > 0).with_columns(
        (pl.col("cost_usd") / pl.col("calls")).alias("cost_per_call")
    )


def fit_baselines(frame: pl.DataFrame, *, skip_short: bool = False) -> dict[str, Baseline]:
    """One baseline per agent from hourly buckets (agent_id, bucket_start, calls, failures,
    mean_latency_ms, cost_usd). An agent with too little history is an error, or with
    ``skip_short`` left without a baseline (and so never scored)."""
    hourly = _per_call(frame)
    if hourly.is_empty():
        if skip_short:
            return {}
        raise InsufficientDataError("no hour with calls to learn a baseline from")
    baselines = {}
    for (agent_id,), rows in hourly.group_by("agent_id", maintain_order=True):
        if rows.height < MIN_TRAINING_HOURS:
            if skip_short:
                continue
            raise InsufficientDataError(
                f"agent {agent_id} has {rows.height} hours of history; "
                f"{MIN_TRAINING_HOURS} are needed to learn its baseline (let it run longer)"
            )
        lat_med = float(rows["mean_latency_ms"].median())  # type: ignore[arg-type]
        cost_med = float(rows["cost_per_call"].median())  # type: ignore[arg-type]
        # an hour's mean is noisier when it had fewer calls: spreads are per call, and an
        # hour's score divides by spread / sqrt(calls)
        root = rows["calls"].cast(pl.Float64).sqrt()
        lat_mad = float(((rows["mean_latency_ms"] - lat_med) * root).abs().median())  # type: ignore[arg-type]
        cost_mad = float(((rows["cost_per_call"] - cost_med) * root).abs().median())  # type: ignore[arg-type]
        typical = float(root.median())  # type: ignore[arg-type]
        baselines[str(agent_id)] = Baseline(
            agent_id=str(agent_id),
            latency_median=lat_med,
            latency_spread=max(MAD_TO_SIGMA * lat_mad, RELATIVE_FLOOR * lat_med * typical, 1e-9),
            cost_median=cost_med,
            cost_spread=max(MAD_TO_SIGMA * cost_mad, RELATIVE_FLOOR * cost_med * typical, 1e-12),
            # smoothed towards 1% so an agent that never failed in training can still fail
            error_rate=(float(rows["failures"].sum()) + 1) / (float(rows["calls"].sum()) + 100),
        )
    return baselines


def score(frame: pl.DataFrame, baselines: dict[str, Baseline]) -> pl.DataFrame:
    """Per hour and agent: a score per metric (positive = worse than normal); agents without
    a baseline are left out."""
    rows = []
    for row in _per_call(frame).iter_rows(named=True):
        base = baselines.get(str(row["agent_id"]))
        if base is None:
            continue
        p = base.error_rate
        calls, failures = row["calls"], row["failures"]
        rows.append(
            {
                "agent_id": row["agent_id"],
                "bucket_start": row["bucket_start"],
                "latency": (row["mean_latency_ms"] - base.latency_median)
                * math.sqrt(calls)
                / base.latency_spread,
                "cost": (row["cost_per_call"] - base.cost_median)
                * math.sqrt(calls)
                / base.cost_spread,
                "error_rate": (failures - calls * p) / math.sqrt(calls * p * (1 - p)),
                "latency_observed": row["mean_latency_ms"],
                "cost_observed": row["cost_per_call"],
                "error_rate_observed": failures / calls,
            }
        )
    schema: dict[str, pl.DataType | type[pl.DataType]] = {
        "agent_id": pl.String,
        "bucket_start": pl.Datetime("us"),
        **{m: pl.Float64 for m in METRICS},
        **{f"{m}_observed": pl.Float64 for m in METRICS},
    }
    return pl.DataFrame(rows, schema=schema).sort("agent_id", "bucket_start")


def detect_episodes(
    frame: pl.DataFrame,
    baselines: dict[str, Baseline],
    *,
    threshold: float = 8.0,
    bucket_hours: float = 1.0,
) -> list[AnomalyEpisode]:
    """Runs of consecutive hours (gaps of one empty hour tolerated) scoring above
    ``threshold`` for one agent and metric."""
    scored = score(frame, baselines)
    episodes: list[AnomalyEpisode] = []
    baseline_of: dict[str, Callable[[Baseline], float]] = {
        "latency": lambda b: b.latency_median,
        "cost": lambda b: b.cost_median,
        "error_rate": lambda b: b.error_rate,
    }
    for metric in METRICS:
        hot = scored.filter(pl.col(metric) > threshold)
        for (agent_id,), rows in hot.group_by("agent_id", maintain_order=True):
            current: list[dict[str, Any]] = []
            for row in rows.sort("bucket_start").iter_rows(named=True):
                gap = (
                    (row["bucket_start"] - current[-1]["bucket_start"]).total_seconds() / 3600
                    if current
                    else 0
                )
                if current and gap > 2 * bucket_hours:
                    episodes.append(
                        _episode(str(agent_id), metric, current, baseline_of, baselines)
                    )
                    current = []
                current.append(row)
            if current:
                episodes.append(_episode(str(agent_id), metric, current, baseline_of, baselines))
    return sorted(episodes, key=lambda e: (e.start, e.agent_id, e.metric))


def _episode(
    agent_id: str,
    metric: str,
    rows: list[dict[str, Any]],
    baseline_of: dict[str, Callable[[Baseline], float]],
    baselines: dict[str, Baseline],
) -> AnomalyEpisode:
    peak = max(rows, key=lambda r: r[metric])
    return AnomalyEpisode(
        agent_id=agent_id,
        metric=metric,
        start=rows[0]["bucket_start"],
        end=rows[-1]["bucket_start"],
        peak_score=float(peak[metric]),
        baseline=float(baseline_of[metric](baselines[agent_id])),
        observed=float(peak[f"{metric}_observed"]),
    )


@dataclass(frozen=True)
class TrueEpisode:
    agent_id: str
    start: datetime
    end: datetime  # exclusive


def evaluate_episodes(found: list[AnomalyEpisode], truth: list[TrueEpisode]) -> dict[str, float]:
    """Precision: found episodes that overlap a true one of the same agent; recall: true
    episodes that some found episode overlaps. Several metrics firing for one true episode
    count as one find (an outage often slows and fails at once)."""

    def overlaps(f: AnomalyEpisode, t: TrueEpisode) -> bool:
        return f.agent_id == t.agent_id and f.start < t.end and f.end >= t.start

    merged: dict[tuple[str, datetime], AnomalyEpisode] = {}
    for f in found:
        merged.setdefault((f.agent_id, f.start), f)
    unique = list(merged.values())
    true_positive = sum(1 for f in unique if any(overlaps(f, t) for t in truth))
    recalled = sum(1 for t in truth if any(overlaps(f, t) for f in unique))
    return {
        "precision": true_positive / len(unique) if unique else 1.0,
        "recall": recalled / len(truth) if truth else 1.0,
        "found": float(len(unique)),
        "true": float(len(truth)),
    }
