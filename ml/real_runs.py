"""Checks of the models on real agent runs nobody here generated.

- SWE-Bench Pro (nilenso's export of Scale AI's public results): 9,729 SWE-agent runs of 14
  model configurations on up to 730 instances. Does the failure model, given what is known
  before a run (which model, which repository), beat the per-model base rate a dashboard
  would show? The split is grouped by instance, so no instance is seen in training and test.
- Terminal-Bench (one Goose + Claude 4 Opus run, 80 tasks): do quantile duration forecasts
  learned from some tasks cover the others as promised, compared with a normal-curve peer?

The files live in ../shared/data/real (see its SOURCES.md); callers skip when absent.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold, KFold
from sklearn.preprocessing import OneHotEncoder

from ml.duration import coverage, normal_baseline, pinball_loss

SWE_BENCH_FILE = Path("swe-bench-pro-nilenso/agent_runs_data.csv")
TERMINAL_BENCH_FILE = Path("terminal-bench-leaderboard/2025-08-29__07-37-19_results.json")
# instance_<org>__<repo>-<40-hex commit>-v<...>: the repository is known before the run
INSTANCE_PATTERN = r"^instance_(.+?)__(.+)-[0-9a-f]{40}"


def load_swe_bench(path: Path) -> pl.DataFrame:
    """instance_id, repo, model, failed (not resolved), turns."""
    raw = pl.read_csv(path)
    return raw.select(
        pl.col("metadata.instance_id").alias("instance_id"),
        pl.col("metadata.instance_id").str.extract(INSTANCE_PATTERN, 2).alias("repo"),
        pl.col("metadata.model_name").alias("model"),
        (~pl.col("metadata.resolved").cast(pl.Boolean)).cast(pl.Int8).alias("failed"),
        pl.col("metadata.turns").alias("turns"),
    )


def swe_bench_failure_check(runs: pl.DataFrame, *, folds: int = 5) -> dict[str, float]:
    """Out-of-fold AUC of P(fail | model, repo) against the per-model base rate.

    Both are learned on the training folds only; every run is scored once, by a fold that
    never saw its instance."""
    frame = runs.drop_nulls(["repo", "model"]).to_pandas()
    labels = frame["failed"].to_numpy(dtype=int)
    ours = np.zeros(len(frame))
    base_rate = np.zeros(len(frame))
    for train, test in GroupKFold(n_splits=folds).split(frame, labels, frame["instance_id"]):
        encoder = OneHotEncoder(handle_unknown="ignore")
        fitted = LogisticRegression(max_iter=2000).fit(
            encoder.fit_transform(frame.iloc[train][["model", "repo"]]), labels[train]
        )
        ours[test] = fitted.predict_proba(encoder.transform(frame.iloc[test][["model", "repo"]]))[
            :, 1
        ]
        rates = frame.iloc[train].groupby("model")["failed"].mean()
        overall = float(labels[train].mean())
        base_rate[test] = frame.iloc[test]["model"].map(rates).fillna(overall).to_numpy()
    auc = float(roc_auc_score(labels, ours))
    base = float(roc_auc_score(labels, base_rate))
    return {
        "runs": float(len(frame)),
        "instances": float(frame["instance_id"].nunique()),
        "models": float(frame["model"].nunique()),
        "failure_rate": float(labels.mean()),
        "auc": auc,
        "base_rate_auc": base,
        "auc_gain": auc - base,
    }


def load_terminal_bench(path: Path) -> pl.DataFrame:
    """task_id, resolved, failure_mode, agent_seconds (agent phase, start to end)."""
    results = json.loads(path.read_text())["results"]
    rows = []
    for r in results:
        if not r.get("agent_started_at") or not r.get("agent_ended_at"):
            continue
        started = datetime.fromisoformat(r["agent_started_at"])
        ended = datetime.fromisoformat(r["agent_ended_at"])
        rows.append(
            {
                "task_id": r["task_id"],
                "resolved": bool(r.get("is_resolved")),
                "failure_mode": r.get("failure_mode") or "unset",
                "agent_seconds": (ended - started).total_seconds(),
            }
        )
    return pl.DataFrame(rows)


def duration_forecast_check(
    durations: np.ndarray, *, folds: int = 5, seed: int = 0
) -> dict[str, float]:
    """Cross-validated p50/p90 forecasts from the other tasks' durations: coverage and
    pinball loss, ours (empirical quantiles) against mean + z * sd."""
    values = np.asarray(durations, dtype=float)
    ours = {0.5: np.zeros(len(values)), 0.9: np.zeros(len(values))}
    peer = {0.5: np.zeros(len(values)), 0.9: np.zeros(len(values))}
    for train, test in KFold(n_splits=folds, shuffle=True, random_state=seed).split(values):
        for q in (0.5, 0.9):
            ours[q][test] = float(np.quantile(values[train], q))
            peer[q][test] = normal_baseline(values[train], q)
    return {
        "tasks": float(len(values)),
        "p90_coverage": coverage(values, ours[0.9]),
        "p90_coverage_normal": coverage(values, peer[0.9]),
        "p50_pinball": pinball_loss(values, ours[0.5], 0.5),
        "p50_pinball_normal": pinball_loss(values, peer[0.5], 0.5),
        "p90_pinball": pinball_loss(values, ours[0.9], 0.9),
        "p90_pinball_normal": pinball_loss(values, peer[0.9], 0.9),
    }
