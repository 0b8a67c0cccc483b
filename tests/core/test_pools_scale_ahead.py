"""The autoscaler reads the published demand forecast and grows an idle pool before the
peak, recording why; with no forecast in the warehouse it stays reactive."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from nofx.demand_forecast import TABLE, WarehouseDemandForecast, peak_within
from nofx.domain import AgentSpec
from nofx.pools import Autoscaler, PoolGate, PoolService
from nofx.registry import AgentRegistry
from nofx.routing.autoscale import ScalingPolicy
from nofx.settings import Settings
from nofx.store import EventStore

NOW = datetime(2026, 3, 9, 8, 30, tzinfo=UTC)
POLICY = ScalingPolicy(
    min_replicas=1,
    max_replicas=8,
    target_utilisation=0.5,
    scale_up_cooldown_s=0,
    scale_down_cooldown_s=0,
)


def agent(registry: AgentRegistry):  # type: ignore[no-untyped-def]
    return registry.register(
        AgentSpec(
            name="pooled",
            capabilities=[{"name": "code.generate", "proficiency": 4}],
            provider={"kind": "simulated", "config": {}},
            max_concurrency=2,
        )
    )


def publish(settings: Settings, agent_id: str, peak: float) -> None:
    hours = [NOW.replace(minute=0, tzinfo=None) + timedelta(hours=h) for h in range(-1, 4)]
    frame = pl.DataFrame(
        {
            "agent_id": [agent_id] * len(hours),
            "tenant_id": ["default"] * len(hours),
            "bucket_start": hours,
            "expected_concurrency": [0.5, 0.5, peak, 0.5, 9.0],  # +2 h is beyond the lead
        }
    )
    with duckdb.connect(str(settings.warehouse_path)) as conn:
        conn.execute("create schema if not exists analytics")
        conn.register("f", frame)
        conn.execute(f"create or replace table {TABLE} as select * from f")


async def test_an_idle_pool_grows_before_the_forecast_peak(
    store: EventStore, registry: AgentRegistry, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOFX_SCALE_AHEAD_MIN", "60")
    pooled = agent(registry)
    PoolService(store).configure(pooled, POLICY)
    scaler = Autoscaler(PoolService(store), "w1", refresh_s=0.0)
    scaler.gates[pooled.agent_id] = PoolGate(2)  # it has seen traffic; idle right now
    assert await scaler.evaluate({pooled.agent_id: pooled}, NOW) == []  # no forecast yet

    publish(settings, pooled.agent_id, peak=6.0)
    scaler.forecast.loaded_at = float("-inf")
    (decision,) = await scaler.evaluate({pooled.agent_id: pooled}, NOW)
    assert (decision.before, decision.after) == (1, 6)  # 6 in flight / (2 per replica x 0.5)
    event = PoolService(store).decisions(pooled.agent_id)[-1]
    assert event.payload["reason"].startswith("forecast peak 6.0 calls in flight")
    assert event.payload["utilisation"] == 0.0  # the real load, recorded as such


def test_the_peak_is_the_highest_hour_overlapping_the_lead_time() -> None:
    hours = [NOW.replace(minute=0, tzinfo=None) + timedelta(hours=h) for h in range(-2, 3)]
    frame = pl.DataFrame(
        {
            "agent_id": ["a"] * 5,
            "bucket_start": hours,
            "expected_concurrency": [9.0, 1.0, 2.0, 3.0, 7.0],
        }
    )
    # 08:30 + 60 min: the 08:00 and 09:00 hours overlap, 06:00 is over and 10:00 is too far
    assert peak_within(frame, "a", NOW, timedelta(minutes=60)) == 3.0
    assert peak_within(frame, "b", NOW, timedelta(minutes=60)) is None
    assert peak_within(pl.DataFrame(), "a", NOW, timedelta(minutes=60)) is None


def test_no_warehouse_means_no_forecast(settings: Settings, tmp_path: Path) -> None:
    forecast = WarehouseDemandForecast(refresh_s=0.0)
    forecast.refresh()
    assert forecast.peak("a", NOW) is None
