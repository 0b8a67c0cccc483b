"""Resource and cost forecasts over time: hourly calls, tokens, cost and concurrency.

The model is a regression on log(1 + value) with one level per hour of the day, separately
for weekdays and weekends, plus a linear trend: traffic of an agent fleet follows office
hours and grows, and a week or three of history is enough to learn that. Robust to bursts:
it is fitted with a Huber loss, so a one-hour retry storm does not lift every forecast.

The baselines it must beat are the seasonal naive forecasts everyone starts with: "the same
hour last week" and "the same hour yesterday".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import polars as pl
from sklearn.linear_model import HuberRegressor

from ml.errors import InsufficientDataError

MIN_HISTORY_HOURS = 7 * 24
HOURS_PER_WEEK = 168


def _design(times: list[datetime], origin: datetime) -> np.ndarray:
    """48 seasonal indicators (hour x weekend) and the trend in weeks since ``origin``."""
    out = np.zeros((len(times), 49))
    for i, at in enumerate(times):
        out[i, at.hour + (24 if at.weekday() >= 5 else 0)] = 1.0
        out[i, 48] = (at - origin).total_seconds() / (HOURS_PER_WEEK * 3600)
    return out


@dataclass
class SeasonalTrendForecaster:
    """Fit on an hourly series, forecast any later hours."""

    origin: datetime
    model: HuberRegressor

    @classmethod
    def fit(cls, times: list[datetime], values: np.ndarray) -> SeasonalTrendForecaster:
        if len(times) < MIN_HISTORY_HOURS:
            raise InsufficientDataError(
                f"{len(times)} hours of history; forecasting needs at least a week "
                f"({MIN_HISTORY_HOURS} hours) to see both weekdays and a weekend",
                hint="let the fleet run longer, then materialize again",
            )
        origin = times[0]
        model = HuberRegressor(fit_intercept=False, alpha=1e-4, max_iter=2000)
        model.fit(_design(times, origin), np.log1p(np.asarray(values, dtype=float)))
        return cls(origin=origin, model=model)

    def predict(self, times: list[datetime]) -> np.ndarray:
        return np.clip(np.expm1(self.model.predict(_design(times, self.origin))), 0.0, None)


def seasonal_naive(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Repeat the last ``season`` hours of history over the horizon."""
    last = np.asarray(history, dtype=float)[-season:]
    return np.array([last[h % season] for h in range(horizon)])


def hourly_usage(step_calls: pl.DataFrame) -> pl.DataFrame:
    """Hourly fleet totals from step calls (started_at, ended_at, input/output tokens,
    cost_usd, latency_ms): calls, tokens, cost and mean concurrency (busy seconds / 3600).
    Hours with no calls are present with zeros, so seasons line up."""
    calls = step_calls.filter(pl.col("started_at").is_not_null()).with_columns(
        pl.col("started_at").dt.truncate("1h").alias("bucket_start")
    )
    if calls.is_empty():
        return pl.DataFrame(
            schema={
                "bucket_start": pl.Datetime("us"),
                "calls": pl.Int64,
                "tokens": pl.Int64,
                "cost_usd": pl.Float64,
                "concurrency": pl.Float64,
            }
        )
    totals = calls.group_by("bucket_start").agg(
        pl.len().cast(pl.Int64).alias("calls"),
        (pl.col("input_tokens").fill_null(0) + pl.col("output_tokens").fill_null(0))
        .sum()
        .cast(pl.Int64)
        .alias("tokens"),
        pl.col("cost_usd").fill_null(0.0).sum().alias("cost_usd"),
        (pl.col("latency_ms").fill_null(0.0).sum() / 3_600_000).alias("concurrency"),
    )
    first, last = pl.col("bucket_start").min(), pl.col("bucket_start").max()
    hours = totals.select(pl.datetime_range(first, last, "1h").alias("bucket_start"))
    return (
        hours.with_columns(pl.col("bucket_start").cast(totals["bucket_start"].dtype))
        .join(totals, on="bucket_start", how="left")
        .fill_null(0)
        .sort("bucket_start")
    )


def forecast_usage(usage: pl.DataFrame, *, horizon_hours: int = 7 * 24) -> pl.DataFrame:
    """The next ``horizon_hours`` of every metric in ``usage`` (long format: bucket_start,
    metric, forecast), from a model fitted on all of ``usage``."""
    times = usage["bucket_start"].to_list()
    future = [times[-1] + timedelta(hours=h + 1) for h in range(horizon_hours)]
    frames = []
    for metric in ("calls", "tokens", "cost_usd", "concurrency"):
        model = SeasonalTrendForecaster.fit(times, usage[metric].to_numpy())
        frames.append(
            pl.DataFrame(
                {"bucket_start": future, "metric": metric, "forecast": model.predict(future)}
            )
        )
    return pl.concat(frames)


def backtest(usage: pl.DataFrame, metric: str, *, horizon_hours: int = 7 * 24) -> dict[str, float]:
    """Hold out the last ``horizon_hours``, forecast them once from the rest, and compare
    mean absolute errors with the weekly and daily seasonal naive forecasts."""
    if usage.height < MIN_HISTORY_HOURS + horizon_hours:
        raise InsufficientDataError(
            f"{usage.height} hours of usage; a backtest needs {MIN_HISTORY_HOURS + horizon_hours}",
            hint="backtest on a longer history or a shorter horizon",
        )
    train, test = usage.head(usage.height - horizon_hours), usage.tail(horizon_hours)
    history = train[metric].to_numpy().astype(float)
    actual = test[metric].to_numpy().astype(float)
    model = SeasonalTrendForecaster.fit(train["bucket_start"].to_list(), history)
    ours = float(np.mean(np.abs(model.predict(test["bucket_start"].to_list()) - actual)))
    weekly = float(np.mean(np.abs(seasonal_naive(history, horizon_hours, HOURS_PER_WEEK) - actual)))
    daily = float(np.mean(np.abs(seasonal_naive(history, horizon_hours, 24) - actual)))
    return {
        "mae": ours,
        "mae_seasonal_naive_weekly": weekly,
        "mae_seasonal_naive_daily": daily,
        "mae_ratio_to_best_naive": ours / min(weekly, daily)
        if min(weekly, daily) > 0
        else float("nan"),
    }
