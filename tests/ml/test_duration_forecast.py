"""Duration quantiles per step type and agent, and hourly usage forecasts against the
seasonal naive baselines."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from ml.duration import coverage, fit_quantiles, forecast, normal_baseline, pinball_loss
from ml.errors import InsufficientDataError
from ml.fleet_timeseries import fleet_usage
from ml.forecast import (
    SeasonalTrendForecaster,
    backtest,
    forecast_usage,
    hourly_usage,
    seasonal_naive,
)


def history() -> pl.DataFrame:
    rng = np.random.default_rng(1)
    rows = [("code.generate", "fast", v) for v in rng.lognormal(np.log(500), 0.3, 200)]
    rows += [("code.generate", "slow", v) for v in rng.lognormal(np.log(3000), 0.3, 200)]
    rows += [("code.generate", "new", 10_000.0)] * 3  # too few to trust
    rows += [("text.summarize", "fast", v) for v in rng.lognormal(np.log(200), 0.3, 50)]
    return pl.DataFrame(rows, schema=["capability", "agent_id", "latency_ms"], orient="row")


def test_each_agent_gets_its_own_quantiles_and_a_newcomer_borrows_its_capabilitys() -> None:
    table = fit_quantiles(history(), "latency_ms")
    rows = {(r["capability"], r["agent_id"]): r for r in table.iter_rows(named=True)}
    fast, slow = rows[("code.generate", "fast")], rows[("code.generate", "slow")]
    assert 400 < fast["p50"] < 600 and 2500 < slow["p50"] < 3500
    assert fast["p90"] > fast["p50"] and fast["level"] == "agent"
    newcomer, capability = rows[("code.generate", "new")], rows[("code.generate", None)]
    assert newcomer["level"] == "capability" and newcomer["samples"] == 3
    assert newcomer["p50"] == capability["p50"]  # not 10 s from three odd runs


def test_forecast_falls_back_from_agent_to_capability_to_fleet() -> None:
    table = fit_quantiles(history(), "latency_ms")
    asks = pl.DataFrame(
        {
            "capability": ["code.generate", "code.generate", "data.analyze"],
            "agent_id": ["slow", "unseen", "fast"],
        }
    )
    out = forecast(table, asks)
    fleet = table.filter(pl.col("level") == "fleet").row(0, named=True)
    capability = table.filter(
        (pl.col("capability") == "code.generate") & pl.col("agent_id").is_null()
    ).row(0, named=True)
    assert out["p50"][0] > 2500
    assert out["p50"][1] == capability["p50"]
    assert out["p50"][2] == fleet["p50"]
    assert fit_quantiles(history().head(0), "latency_ms").is_empty()


def test_quantile_losses_and_coverage() -> None:
    actual = np.array([1.0, 2.0, 3.0, 4.0])
    assert pinball_loss(actual, actual, 0.9) == 0.0
    assert pinball_loss(actual, actual - 1, 0.9) == pytest.approx(0.9)  # under by one
    assert pinball_loss(actual, actual + 1, 0.9) == pytest.approx(0.1)  # over by one
    assert coverage(actual, np.full(4, 2.5)) == 0.5
    assert normal_baseline(np.array([1.0, 1.0, 1.0]), 0.9) == pytest.approx(1.0)


def test_hourly_forecasts_beat_both_seasonal_naive_baselines() -> None:
    usage = fleet_usage(days=35, seed=4)
    for metric in ("calls", "cost_usd", "concurrency"):
        result = backtest(usage, metric)
        assert result["mae"] < result["mae_seasonal_naive_weekly"], (metric, result)
        assert result["mae"] < result["mae_seasonal_naive_daily"], (metric, result)


def test_a_forecast_follows_weekends_and_growth() -> None:
    usage = fleet_usage(days=28, seed=2, growth_per_week=0.10)
    model = SeasonalTrendForecaster.fit(usage["bucket_start"].to_list(), usage["calls"].to_numpy())
    monday_noon, saturday_noon = datetime(2026, 2, 2, 12), datetime(2026, 2, 7, 12)
    later_monday = monday_noon + timedelta(days=7)
    weekday, weekend, later = model.predict([monday_noon, saturday_noon, later_monday])
    assert weekend < 0.75 * weekday
    assert later > weekday * 1.03


def test_seasonal_naive_repeats_the_last_season() -> None:
    assert seasonal_naive(np.arange(10.0), 5, 3).tolist() == [7.0, 8.0, 9.0, 7.0, 8.0]


def test_short_histories_are_refused_with_a_reason() -> None:
    usage = fleet_usage(days=5, seed=1)
    with pytest.raises(InsufficientDataError, match="at least a week"):
        SeasonalTrendForecaster.fit(usage["bucket_start"].to_list(), usage["calls"].to_numpy())
    with pytest.raises(InsufficientDataError, match="backtest needs"):
        backtest(usage, "calls")


def test_hourly_usage_fills_quiet_hours_and_forecasts_every_metric() -> None:
    start = datetime(2026, 1, 5)
    calls = pl.DataFrame(
        {
            "started_at": [start + timedelta(hours=h) for h in range(0, 24 * 8, 2)],
            "input_tokens": [100] * 96,
            "output_tokens": [50] * 96,
            "cost_usd": [0.01] * 96,
            "latency_ms": [1800.0] * 96,
        }
    )
    usage = hourly_usage(calls)
    assert usage.height == 24 * 8 - 1
    assert usage.filter(pl.col("calls") == 0).height == usage.height - 96
    assert usage["tokens"].max() == 150
    out = forecast_usage(usage, horizon_hours=24)
    assert out.height == 4 * 24 and set(out["metric"]) == {
        "calls",
        "tokens",
        "cost_usd",
        "concurrency",
    }
    assert hourly_usage(calls.head(0)).is_empty()
