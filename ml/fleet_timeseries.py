"""A synthetic fleet's hourly telemetry with hidden ground truth, for anomaly tests and
benchmarks. It is a simulation, said plainly: seeded, with the ground truth returned.

Traffic follows a day (quiet nights, busy afternoons) and a week (quieter weekends); each
agent has its own latency level (a lognormal per call, so an hour's mean is noisier when
it had few calls), error rate and price. Degradation episodes of 2 to 6 hours are injected
at random: latency x2-4, an error-rate jump to 15-40%, or cost x3 (a model swapped for a
dearer one).
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta
from typing import TypedDict

import polars as pl

from ml.anomaly import TrueEpisode

KINDS = ("latency", "error_rate", "cost")


class _Profile(TypedDict):
    """One simulated agent's normal behaviour."""

    agent_id: str
    latency_ms: float
    sigma: float
    error_rate: float
    cost: float
    traffic: float


def fleet_telemetry(
    agents: int = 8,
    days: int = 21,
    episodes: int = 12,
    *,
    seed: int = 7,
    start: datetime = datetime(2026, 1, 5),
    episodes_after: datetime | None = None,
) -> tuple[pl.DataFrame, list[TrueEpisode]]:
    """(hourly buckets, injected episodes). Episodes start no earlier than
    ``episodes_after`` (default: after the first week, so training can stay clean)."""
    rng = random.Random(seed)
    hours = days * 24
    first = episodes_after or start + timedelta(days=7)
    profiles: list[_Profile] = [
        {
            "agent_id": f"agt_{i:02d}",
            "latency_ms": rng.uniform(300, 8000),
            "sigma": rng.uniform(0.3, 0.6),
            "error_rate": rng.uniform(0.005, 0.04),
            "cost": rng.uniform(0.0005, 0.02),
            "traffic": rng.uniform(20, 200),
        }
        for i in range(agents)
    ]
    truth: list[TrueEpisode] = []
    injected: dict[tuple[str, int], tuple[str, float]] = {}
    earliest = int((first - start).total_seconds() // 3600)
    while len(truth) < episodes:
        profile = rng.choice(profiles)
        length = rng.randint(2, 6)
        begin = rng.randint(earliest, hours - length - 1)
        if any((profile["agent_id"], h) in injected for h in range(begin - 3, begin + length + 3)):
            continue  # keep episodes of one agent apart, so each is one thing to find
        kind = rng.choice(KINDS)
        factor = {"latency": rng.uniform(2, 4), "error_rate": rng.uniform(0.15, 0.4)}.get(kind, 3.0)
        for h in range(begin, begin + length):
            injected[(profile["agent_id"], h)] = (kind, factor)
        truth.append(
            TrueEpisode(
                profile["agent_id"],
                start + timedelta(hours=begin),
                start + timedelta(hours=begin + length),
            )
        )
    rows = []
    for h in range(hours):
        at = start + timedelta(hours=h)
        daily = 0.35 + 0.65 * math.sin(math.pi * ((at.hour - 6) % 24) / 24) ** 2
        weekly = 0.6 if at.weekday() >= 5 else 1.0
        for p in profiles:
            calls = max(1, int(rng.gauss(p["traffic"] * daily * weekly, 3)))
            kind, factor = injected.get((p["agent_id"], h), ("", 1.0))
            latency_scale = factor if kind == "latency" else 1.0
            error_rate = factor if kind == "error_rate" else p["error_rate"]
            cost_scale = factor if kind == "cost" else 1.0
            latencies = [
                p["latency_ms"] * latency_scale * rng.lognormvariate(0, p["sigma"])
                for _ in range(calls)
            ]
            failures = sum(rng.random() < error_rate for _ in range(calls))
            rows.append(
                {
                    "agent_id": p["agent_id"],
                    "bucket_start": at,
                    "calls": calls,
                    "failures": failures,
                    "mean_latency_ms": sum(latencies) / calls,
                    "cost_usd": sum(
                        p["cost"] * cost_scale * rng.uniform(0.8, 1.2) for _ in range(calls)
                    ),
                }
            )
    return pl.DataFrame(rows), sorted(truth, key=lambda t: (t.start, t.agent_id))


def fleet_usage(
    days: int = 35,
    *,
    seed: int = 7,
    growth_per_week: float = 0.04,
    start: datetime = datetime(2026, 1, 5),
) -> pl.DataFrame:
    """Hourly fleet totals (calls, tokens, cost, mean concurrency) for forecasting benchmarks.

    Traffic has the same day and week shape as above, grows ``growth_per_week``, is noisier
    than a Poisson count (a gamma-distributed hourly rate), and has a few one-hour bursts
    (a batch job, a retry storm) that no forecast should chase."""
    rng = random.Random(seed)
    rows = []
    for h in range(days * 24):
        at = start + timedelta(hours=h)
        daily = 0.35 + 0.65 * math.sin(math.pi * ((at.hour - 6) % 24) / 24) ** 2
        weekly = 0.6 if at.weekday() >= 5 else 1.0
        growth = (1.0 + growth_per_week) ** (h / 168)
        rate = 900.0 * daily * weekly * growth * rng.gammavariate(25.0, 1 / 25.0)
        if rng.random() < 0.01:
            rate *= rng.uniform(2.0, 4.0)
        calls = max(0, int(rate))
        tokens = int(calls * rng.uniform(1700, 2300))
        latency_s = rng.uniform(1.5, 2.5)
        rows.append(
            {
                "bucket_start": at,
                "calls": calls,
                "tokens": tokens,
                "cost_usd": tokens / 1000 * 0.002,
                "concurrency": calls * latency_s / 3600,
            }
        )
    return pl.DataFrame(rows)
