"""Model quality: simulated fleets with hidden ground truth, and real runs nobody here made.

Failure prediction (agent runs): simulated fleets of 12 agents over 28 days, each run played
by the runtime's SimulatedProvider; trained on the first 21 days, scored on the last 7 (held
out whole). Peers: the agent's own historical failure rate as the score, and the oracle (the
simulator's hidden failure probability), which bounds what any model can reach.

Anomaly detection: fleets of agents with hourly telemetry (ml.fleet_timeseries), one clean
week to learn each agent's baseline, then two weeks with injected degradation episodes;
precision and recall of the episodes found, per seed and pooled. The peer is the fixed
threshold rule people start with (latency over 2x the agent's training median, error rate
over 10%, cost per call over 2x its median), run on the same data.

Forecasts: hourly calls, cost and concurrency over five weeks with growth and bursts; the
last week held out; MAE against the weekly and daily seasonal naive forecasts. Duration
quantiles per capability and agent on the simulated runs, against mean + z * sd.

Request-time failure prediction (the router's model, ml.request_failure): only inputs that
exist when the router decides; its bins, regularisation and fixed edges were chosen on the
DEVELOPMENT_SEEDS, and every number reported comes from HELD_OUT_SEEDS (fleets never looked
at while developing), each trained on 21 days and scored on the last 7, next to a logistic
regression on the same features and the agent's own past failure rate, with 95% t-intervals
over seeds. The closed loop (ml.closed_loop): per held-out seed, one fleet and one task
stream routed by four arms with the product's objective (balanced), on the uniform fleet and on a fleet
priced and skilled like a real LLM fleet (ml.fleet_runs TIERED_MODELS): the open loop (declarations only, as before the loop), the router with learned statistics only,
the product (learned statistics + model), and an oracle; success rate, cost per successful
session, regret, each with a 95% interval over the held-out seeds.

Real data (../shared/data/real, skipped with a reason when absent): SWE-Bench Pro, failure
AUC of (model, repository) against the per-model base rate with an instance-grouped split;
Terminal-Bench, cross-validated p50/p90 agent-duration forecasts.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bench.report import parse_args, show, write
from ml.anomaly import AnomalyEpisode, detect_episodes, evaluate_episodes, fit_baselines
from ml.closed_loop import closed_loop
from ml.duration import coverage, fit_quantiles, forecast, normal_baseline, pinball_loss
from ml.fleet_runs import simulated_runs
from ml.fleet_timeseries import fleet_telemetry, fleet_usage
from ml.forecast import backtest
from ml.real_runs import (
    SWE_BENCH_FILE,
    TERMINAL_BENCH_FILE,
    duration_forecast_check,
    load_swe_bench,
    load_terminal_bench,
    swe_bench_failure_check,
)
from ml.request_failure import train_request_model
from ml.run_failure import add_history_features, train_run_failure_model

# NOFX_REAL_DATA points elsewhere (e.g. from a git worktree, where ../shared is not beside it)
REAL_DATA = Path(
    os.environ.get("NOFX_REAL_DATA")
    or Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
)

CUT = datetime(2026, 1, 12)
# Seeds looked at while choosing the request-time model's bins and regularisation; the
# reported numbers come only from the held-out ones.
DEVELOPMENT_SEEDS = (1, 2)
HELD_OUT_SEEDS = tuple(range(101, 111))


def interval95(values: list[float]) -> list[float]:
    """Student-t 95% interval of the mean over seeds ([mean, mean] for a single seed)."""
    from scipy import stats

    arr = np.asarray(values, dtype=float)
    m = float(arr.mean())
    if len(arr) < 2:
        return [m, m]
    half = float(stats.t.ppf(0.975, len(arr) - 1) * arr.std(ddof=1) / np.sqrt(len(arr)))
    return [m - half, m + half]


def request_time_rows(
    seeds: tuple[int, ...], runs_per_day: int, fleet: str = "uniform"
) -> list[dict[str, Any]]:
    rows = []
    for seed in seeds:
        runs, _ = simulated_runs(days=28, runs_per_day=runs_per_day, seed=seed, fleet=fleet)
        m = train_request_model(add_history_features(runs), holdout_days=7).metrics
        rows.append(
            {
                "seed": seed,
                "holdout_runs": int(m["holdout_runs"]),
                "auc": m["roc_auc"],
                "balanced_accuracy": m["balanced_accuracy"],
                "brier": m["brier"],
                "logistic_auc": m["logistic_auc"],
                "logistic_balanced_accuracy": m["logistic_balanced_accuracy"],
                "logistic_brier": m["logistic_brier"],
                "agent_rate_auc": m["agent_rate_auc"],
                "agent_rate_balanced_accuracy": m["agent_rate_balanced_accuracy"],
                "oracle_auc": m["oracle_auc"],
            }
        )
    return rows


# the product's default objective (what /agents/select and the runtime rank on); under the
# "cost" objective every arm picks the cheapest agent whose window fits (ADR 0014)
CLOSED_LOOP_OBJECTIVE = "balanced"
CLOSED_LOOP_BASELINE = (
    "open_loop: the same SmartRouter before the loop closed (declared proficiency as the prior "
    "mean, declared latency, price and context window; no learned statistics, no model)"
)


def closed_loop_rows(
    seeds: tuple[int, ...],
    runs_per_day: int,
    objective: str = CLOSED_LOOP_OBJECTIVE,
    fleet: str = "uniform",
) -> list[dict[str, Any]]:
    return [
        closed_loop(seed, runs_per_day=runs_per_day, objective=objective, fleet=fleet)  # type: ignore[arg-type]
        for seed in seeds
    ]


def closed_loop_summary(loops: list[dict[str, Any]], prefix: str = "closed_loop") -> dict:
    """Four arms on the same fleet and task stream; every figure a mean over held-out seeds
    with its 95% interval. Headline: the product (learned statistics + model) against the
    open loop; the model's own value: against the posterior-only router."""

    def stat(key: str) -> dict[str, Any]:
        values = [r[key] for r in loops]
        return {
            f"{prefix}_{key}": float(np.mean(values)),
            f"{prefix}_{key}_ci95": interval95(values),
        }

    out: dict[str, Any] = {
        f"{prefix}_seeds": [r["seed"] for r in loops],
        f"{prefix}_objective": loops[0]["objective"],
        f"{prefix}_fleet": loops[0]["fleet"],
        f"{prefix}_baseline": CLOSED_LOOP_BASELINE,
        f"{prefix}_cost_per_success_reduction": mean(loops, "vs_open_cost_per_success_reduction"),
        f"{prefix}_cost_per_success_reduction_ci95": interval95(
            [r["vs_open_cost_per_success_reduction"] for r in loops]
        ),
        f"{prefix}_success_gain": mean(loops, "vs_open_success_gain"),
        f"{prefix}_success_gain_ci95": interval95([r["vs_open_success_gain"] for r in loops]),
    }
    for key in (
        "vs_posterior_cost_per_success_reduction",
        "vs_posterior_success_gain",
        "vs_posterior_stream_cost_reduction",
        "vs_posterior_both_completed_cost_reduction",
        "vs_open_stream_cost_reduction",
        "vs_open_both_completed_cost_reduction",
        "oracle_vs_open_cost_per_success_reduction",
        "oracle_vs_posterior_cost_per_success_reduction",
    ):
        out.update(stat(key))
    for arm in ("open", "posterior", "predictive", "oracle"):
        out.update(stat(f"{arm}_success_rate"))
        out.update(stat(f"{arm}_cost_per_success"))
        out[f"{prefix}_{arm}_attempts_per_session"] = mean(loops, f"{arm}_attempts_per_session")
    for arm in ("open", "posterior", "predictive"):
        out.update(stat(f"{arm}_regret_cost_per_success"))
        out.update(stat(f"{arm}_regret_success"))
    return out


def request_time_summary(rows: list[dict[str, Any]], prefix: str = "request_time") -> dict:
    auc_gain = [r["auc"] - r["logistic_auc"] for r in rows]
    ba_gain = [r["balanced_accuracy"] - r["logistic_balanced_accuracy"] for r in rows]
    p = prefix
    return {
        f"{p}_seeds": [r["seed"] for r in rows],
        f"{p}_development_seeds": list(DEVELOPMENT_SEEDS),
        f"{p}_auc": mean(rows, "auc"),
        f"{p}_auc_ci95": interval95([r["auc"] for r in rows]),
        f"{p}_balanced_accuracy": mean(rows, "balanced_accuracy"),
        f"{p}_balanced_accuracy_ci95": interval95([r["balanced_accuracy"] for r in rows]),
        f"{p}_min_auc": min(r["auc"] for r in rows),
        f"{p}_min_balanced_accuracy": min(r["balanced_accuracy"] for r in rows),
        f"{p}_logistic_auc": mean(rows, "logistic_auc"),
        f"{p}_logistic_balanced_accuracy": mean(rows, "logistic_balanced_accuracy"),
        f"{p}_auc_gain_over_logistic_ci95": interval95(auc_gain),
        f"{p}_balanced_accuracy_gain_over_logistic_ci95": interval95(ba_gain),
        f"{p}_agent_rate_auc": mean(rows, "agent_rate_auc"),
        f"{p}_agent_rate_balanced_accuracy": mean(rows, "agent_rate_balanced_accuracy"),
        f"{p}_oracle_auc": mean(rows, "oracle_auc"),
    }


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


def failure_rows(seeds: range, days: int, runs_per_day: int) -> list[dict[str, Any]]:
    rows = []
    for seed in seeds:
        runs, _ = simulated_runs(days=days, runs_per_day=runs_per_day, seed=seed)
        model = train_run_failure_model(add_history_features(runs), holdout_days=7)
        m = model.metrics
        rows.append(
            {
                "seed": seed,
                "holdout_runs": int(m["holdout_runs"]),
                "failure_rate": m["holdout_failure_rate"],
                "auc": m["roc_auc"],
                "balanced_accuracy": m["balanced_accuracy"],
                "brier": m["brier"],
                "agent_base_rate_auc": m["agent_base_rate_auc"],
                "oracle_auc": m["oracle_auc"],
            }
        )
    return rows


def duration_rows(seeds: range, days: int, runs_per_day: int) -> list[dict[str, Any]]:
    """p50/p90 latency per capability and agent from 21 days, scored on the last 7."""
    rows = []
    for seed in seeds:
        runs, _ = simulated_runs(days=days, runs_per_day=runs_per_day, seed=seed)
        done = runs.filter(pl.col("failed") == 0)
        first, last = done["occurred_at"].min(), done["occurred_at"].max()
        assert isinstance(first, datetime) and isinstance(last, datetime), "a datetime column"
        cut = first + (last - first) * 0.75
        train, test = (
            done.filter(pl.col("occurred_at") < cut),
            done.filter(pl.col("occurred_at") >= cut),
        )
        predicted = forecast(
            fit_quantiles(train, "latency_ms"), test.select("capability", "agent_id", "latency_ms")
        )
        actual = predicted["latency_ms"].to_numpy()
        by_group = train.group_by("capability", "agent_id").agg(pl.col("latency_ms"))
        normal = {
            (r["capability"], r["agent_id"]): (
                normal_baseline(np.array(r["latency_ms"]), 0.5),
                normal_baseline(np.array(r["latency_ms"]), 0.9),
            )
            for r in by_group.iter_rows(named=True)
        }
        peer = np.array(
            [normal[(c, a)] for c, a in zip(test["capability"], test["agent_id"], strict=True)]
        )
        rows.append(
            {
                "seed": seed,
                "p90_coverage": coverage(actual, predicted["p90"].to_numpy()),
                "p90_coverage_normal": coverage(actual, peer[:, 1]),
                "p90_pinball": pinball_loss(actual, predicted["p90"].to_numpy(), 0.9),
                "p90_pinball_normal": pinball_loss(actual, peer[:, 1], 0.9),
                "p50_pinball": pinball_loss(actual, predicted["p50"].to_numpy(), 0.5),
                "p50_pinball_normal": pinball_loss(actual, peer[:, 0], 0.5),
            }
        )
    return rows


def forecast_rows(seeds: range) -> list[dict[str, Any]]:
    rows = []
    for seed in seeds:
        usage = fleet_usage(days=35, seed=seed)
        for metric in ("calls", "cost_usd", "concurrency"):
            rows.append({"seed": seed, "metric": metric, **backtest(usage, metric)})
    return rows


def real_data_results() -> dict[str, Any]:
    out: dict[str, Any] = {}
    swe = REAL_DATA / SWE_BENCH_FILE
    if swe.exists():
        check = swe_bench_failure_check(load_swe_bench(swe))
        out.update(
            swe_bench_auc=check["auc"],
            swe_bench_base_rate_auc=check["base_rate_auc"],
            swe_bench_auc_gain=check["auc_gain"],
            swe_bench_runs=int(check["runs"]),
        )
    else:
        out["swe_bench_skipped"] = f"{swe} is absent (see ../shared/data/real/SOURCES.md)"
    terminal = REAL_DATA / TERMINAL_BENCH_FILE
    if terminal.exists():
        trials = load_terminal_bench(terminal)
        check = duration_forecast_check(trials["agent_seconds"].to_numpy())
        out.update({f"terminal_bench_{k}": v for k, v in check.items()})
    else:
        out["terminal_bench_skipped"] = f"{terminal} is absent"
    return out


def anomaly_rows(seeds: range) -> list[dict[str, Any]]:
    rows = []
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
    return rows


def mean(rows: list[dict[str, Any]], key: str) -> float:
    return float(sum(r[key] for r in rows) / len(rows))


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    started = time.perf_counter()
    if args.quick:
        failure_seeds, runs_per_day, other_seeds = range(1, 3), 1500, range(1, 3)
    else:
        failure_seeds, runs_per_day, other_seeds = range(1, 11), 3000, range(1, 21)
    held_out = HELD_OUT_SEEDS[:2] if args.quick else HELD_OUT_SEEDS
    request_rows = request_time_rows(held_out, runs_per_day)
    loops = closed_loop_rows(held_out, 1000 if args.quick else 3000)
    # the same four arms on a fleet priced and skilled like a real LLM fleet (ml.fleet_runs
    # TIERED_MODELS), with the request-time model judged on that fleet too
    tiered_per_day = 500 if args.quick else 1000
    tiered_request_rows = request_time_rows(held_out, tiered_per_day, "tiered")
    tiered_loops = closed_loop_rows(held_out, tiered_per_day, fleet="tiered")
    failures = failure_rows(failure_seeds, 28, runs_per_day)
    anomalies = anomaly_rows(other_seeds)
    durations = duration_rows(failure_seeds, 28, runs_per_day)
    forecasts = forecast_rows(other_seeds if not args.quick else range(1, 3))
    real = real_data_results()

    def forecast_ratio(metric: str) -> float:
        return mean([r for r in forecasts if r["metric"] == metric], "mae_ratio_to_best_naive")

    results: dict[str, Any] = {
        **request_time_summary(request_rows),
        **closed_loop_summary(loops),
        **request_time_summary(tiered_request_rows, "tiered_request_time"),
        **closed_loop_summary(tiered_loops, "tiered_closed_loop"),
        "failure_auc": mean(failures, "auc"),
        "failure_balanced_accuracy": mean(failures, "balanced_accuracy"),
        "failure_min_auc": min(r["auc"] for r in failures),
        "failure_min_balanced_accuracy": min(r["balanced_accuracy"] for r in failures),
        "failure_agent_base_rate_auc": mean(failures, "agent_base_rate_auc"),
        "failure_oracle_auc": mean(failures, "oracle_auc"),
        "failure_rate": mean(failures, "failure_rate"),
        "anomaly_precision": mean(anomalies, "precision"),
        "anomaly_recall": mean(anomalies, "recall"),
        "anomaly_min_precision": min(r["precision"] for r in anomalies),
        "anomaly_min_recall": min(r["recall"] for r in anomalies),
        "fixed_threshold_precision": mean(anomalies, "fixed_threshold_precision"),
        "fixed_threshold_recall": mean(anomalies, "fixed_threshold_recall"),
        "forecast_calls_mae_ratio": forecast_ratio("calls"),
        "forecast_cost_mae_ratio": forecast_ratio("cost_usd"),
        "forecast_concurrency_mae_ratio": forecast_ratio("concurrency"),
        "duration_p90_coverage": mean(durations, "p90_coverage"),
        "duration_p90_coverage_normal": mean(durations, "p90_coverage_normal"),
        "duration_p90_pinball_ratio": mean(durations, "p90_pinball")
        / mean(durations, "p90_pinball_normal"),
        **real,
        "fleets": len(failures),
        "seconds": 0.0,
        "request_time_rows": request_rows,
        "closed_loop_rows": loops,
        "tiered_request_time_rows": tiered_request_rows,
        "tiered_closed_loop_rows": tiered_loops,
        "failure_rows": failures,
        "anomaly_rows": anomalies,
        "duration_rows": durations,
        "forecast_rows": forecasts,
    }
    results["seconds"] = round(time.perf_counter() - started, 2)
    show("request-time failure prediction, held-out seeds and days", request_rows)
    show("request-time failure prediction, tiered fleet, held-out seeds", tiered_request_rows)
    for title, rows in (("uniform fleet", loops), ("tiered fleet", tiered_loops)):
        show(
            f"closed loop ({title}): open loop / posterior / predictive / oracle, same tasks",
            [
                {
                    k: v
                    for k, v in r.items()
                    if k == "seed"
                    or k.endswith(("_success_rate", "_cost_per_success", "_gain"))
                    or k.endswith("cost_per_success_reduction")
                }
                for r in rows
            ],
        )
    show("failure prediction on held-out days (simulated fleets, hidden ground truth)", failures)
    show("anomaly detection on simulated fleets (hidden ground truth)", anomalies)
    show("hourly forecasts, last week held out (MAE vs seasonal naive)", forecasts)
    show("duration quantiles per capability and agent", durations)
    summary = {k: v for k, v in results.items() if not k.endswith("_rows")}
    show("summary", [{"metric": k, "value": v} for k, v in summary.items()])
    write(args.json, "models", args.quick, results)


if __name__ == "__main__":
    main()
