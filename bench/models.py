"""Model quality on a simulated fleet with hidden ground truth.

Anomaly detection: fleets of agents with hourly telemetry (ml.fleet_timeseries), one clean
week to learn each agent's baseline, then two weeks with injected degradation episodes;
precision and recall of the episodes found, per seed and pooled. The peer is the fixed
threshold rule people start with (latency over 2x the agent's training median, error rate
over 10%, cost per call over 2x its median), run on the same data.
"""

from __future__ import annotations

import time
from datetime import datetime

import polars as pl

from bench.report import parse_args, show, write
from ml.anomaly import AnomalyEpisode, detect_episodes, evaluate_episodes, fit_baselines
from ml.fleet_timeseries import fleet_telemetry

CUT = datetime(2026, 1, 12)


def fixed_threshold_episodes(train: pl.DataFrame, test: pl.DataFrame) -> list[AnomalyEpisode]:
    """The naive peer: static multiples of the training medians, hour by hour."""
    medians = (
        train.with_columns((pl.col("cost_usd") / pl.col("calls")).alias("cpc"))
        .group_by("agent_id")
        .agg(pl.col("mean_latency_ms").median().alias("lat"), pl.col("cpc").median())
    )
    joined = test.join(medians, on="agent_id").with_columns(
        (pl.col("cost_usd") / pl.col("calls")).alias("cost_per_call")
    )
    hot = joined.filter(
        (pl.col("mean_latency_ms") > 2 * pl.col("lat"))
        | (pl.col("failures") / pl.col("calls") > 0.10)
        | (pl.col("cost_per_call") > 2 * pl.col("cpc"))
    )
    return [
        AnomalyEpisode(r["agent_id"], "any", r["bucket_start"], r["bucket_start"], 0, 0, 0)
        for r in hot.iter_rows(named=True)
    ]


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    seeds = range(1, 4) if args.quick else range(1, 21)
    rows = []
    started = time.perf_counter()
    for seed in seeds:
        frame, truth = fleet_telemetry(agents=10, days=21, episodes=15, seed=seed)
        train = frame.filter(pl.col("bucket_start") < CUT)
        test = frame.filter(pl.col("bucket_start") >= CUT)
        ours = evaluate_episodes(detect_episodes(test, fit_baselines(train)), truth)
        peer = evaluate_episodes(fixed_threshold_episodes(train, test), truth)
        rows.append(
            {
                "seed": seed,
                "true_episodes": int(ours["true"]),
                "precision": ours["precision"],
                "recall": ours["recall"],
                "fixed_threshold_precision": peer["precision"],
                "fixed_threshold_recall": peer["recall"],
            }
        )
    elapsed = time.perf_counter() - started

    def mean(key: str) -> float:
        return sum(r[key] for r in rows) / len(rows)

    results = {
        "anomaly_precision": mean("precision"),
        "anomaly_recall": mean("recall"),
        "anomaly_min_precision": min(r["precision"] for r in rows),
        "anomaly_min_recall": min(r["recall"] for r in rows),
        "fixed_threshold_precision": mean("fixed_threshold_precision"),
        "fixed_threshold_recall": mean("fixed_threshold_recall"),
        "fleets": len(rows),
        "seconds": round(elapsed, 2),
        "not_measured_yet": [
            "failure_auc",
            "failure_balanced_accuracy",
            "swe_bench_auc",
            "duration forecast on terminal-bench",
        ],
        "rows": rows,
    }
    show("anomaly detection on simulated fleets (hidden ground truth)", rows)
    summary = {k: v for k, v in results.items() if k not in ("rows", "not_measured_yet")}
    show("summary", [summary])
    write(args.json, "models", args.quick, results)


if __name__ == "__main__":
    main()
