"""The usage forecast as the autoscaler reads it: expected calls in flight per agent pool.

The data platform publishes ``analytics.pool_demand_forecasts`` (agent_id, bucket_start,
expected_concurrency: the tenant's hourly concurrency forecast times the agent's share of
its recent busy time). The autoscaler asks for the peak within its lead time
(``NOFX_SCALE_AHEAD_MIN``, default 60 minutes). The table is read on a short-lived read-only
connection at most every ``refresh_s``; without a warehouse or a forecast the peak is None
and scaling is purely reactive.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import polars as pl

from nofx import warehouse
from nofx.settings import Settings

TABLE = "analytics.pool_demand_forecasts"


def lead_time() -> timedelta:
    return timedelta(minutes=Settings.from_env().scale_ahead_min)


def peak_within(
    forecast: pl.DataFrame, agent_id: str, now: datetime, lead: timedelta
) -> float | None:
    """The highest expected concurrency of the agent's hours that overlap [now, now+lead]."""
    if forecast.is_empty():
        return None
    naive = now.astimezone(UTC).replace(tzinfo=None)
    hours = forecast.filter(
        (pl.col("agent_id") == agent_id)
        & (pl.col("bucket_start") <= naive + lead)
        & (pl.col("bucket_start") > naive - timedelta(hours=1))
    )
    if hours.is_empty():
        return None
    return float(hours["expected_concurrency"].max())  # type: ignore[arg-type]


class WarehouseDemandForecast:
    def __init__(self, refresh_s: float = 300.0) -> None:
        self.refresh_s = refresh_s
        self.frame = pl.DataFrame()
        self.loaded_at = float("-inf")

    def refresh(self) -> None:
        """Blocking: call it off the event loop."""
        if time.monotonic() - self.loaded_at < self.refresh_s:
            return
        self.loaded_at = time.monotonic()
        try:
            frame = warehouse.load_table(TABLE)
        except warehouse.WarehouseUnavailable:
            return  # keep what we had; the next refresh tries again
        self.frame = pl.DataFrame() if frame is None else frame

    def peak(self, agent_id: str, now: datetime) -> float | None:
        return peak_within(self.frame, agent_id, now, lead_time())
