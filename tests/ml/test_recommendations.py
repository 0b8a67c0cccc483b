"""Recommendations on fleets with a known answer: the cheaper equal agent, the flaky step,
the idle pool, with the savings the observed calls imply."""

from __future__ import annotations

import json
import random

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ml.recommendations import (
    cheaper_agent,
    flaky_steps,
    recommendations_frame,
    underused_pools,
    wilson_interval,
)


def calls(spec: list[tuple[str, str, int, float, float, float]], seed: int = 3) -> pl.DataFrame:
    """(capability, agent, n, success rate, cost per call, latency ms) -> call rows."""
    rng = random.Random(seed)
    rows = []
    for capability, agent, n, rate, cost, latency in spec:
        successes = round(n * rate)
        outcomes = [True] * successes + [False] * (n - successes)
        rng.shuffle(outcomes)
        for ok in outcomes:
            rows.append(
                {
                    "capability": capability,
                    "agent_id": f"agt_{agent}",
                    "agent_name": agent,
                    "succeeded": ok,
                    "cost_usd": cost,
                    "latency_ms": latency,
                }
            )
    return pl.DataFrame(rows)


def test_work_moves_to_the_cheaper_agent_that_succeeds_as_often() -> None:
    fleet = calls(
        [
            ("code.generate", "premium", 200, 0.90, 0.010, 2000),
            ("code.generate", "budget", 200, 0.895, 0.002, 1500),
            ("code.generate", "cheap-but-bad", 200, 0.60, 0.0005, 800),
        ]
    )
    (found,) = cheaper_agent(fleet)
    assert found["title"] == "Route code.generate from premium to budget"
    assert found["estimated_savings_usd"] == pytest.approx(200 * (0.010 - 0.002))
    assert found["estimated_savings_s"] == pytest.approx(200 * 0.5)
    assert 0 < found["confidence"] <= 1


def test_no_recommendation_on_thin_evidence_or_a_real_quality_gap() -> None:
    thin = calls([("x", "premium", 10, 0.9, 0.01, 100), ("x", "budget", 10, 0.9, 0.001, 100)])
    assert cheaper_agent(thin) == []
    gap = calls([("x", "premium", 100, 0.95, 0.01, 100), ("x", "budget", 100, 0.85, 0.001, 100)])
    assert cheaper_agent(gap) == []


def test_flaky_capabilities_are_found_with_the_time_their_failures_cost() -> None:
    fleet = calls(
        [
            ("research.search", "a", 100, 0.6, 0.001, 1000),
            ("code.review", "a", 100, 0.97, 0.001, 1000),
        ]
    )
    (found,) = flaky_steps(fleet)
    assert found["subject"] == "research.search"
    assert found["estimated_savings_s"] == pytest.approx(40 * 1.0)
    assert found["estimated_savings_usd"] == pytest.approx(40 * 0.001)


def test_idle_pools_are_flagged_from_their_last_decision() -> None:
    decisions = pl.DataFrame(
        {
            "decision_id": [1, 2, 3],
            "event_type": ["PoolScaled"] * 3,
            "agent_id": ["busy", "idle", "idle"],
            "replicas_before": [2, 8, 4],
            "replicas_after": [4, 4, 2],
            "utilisation": [1.5, 0.3, 0.1],
            "reason": ["queue", "quiet", "quiet"],
        }
    )
    (found,) = underused_pools(decisions)
    assert found["subject"] == "idle" and "20%" in found["title"]
    assert underused_pools(decisions.clear()) == []


def test_the_frame_ranks_by_money_then_time_and_keeps_the_evidence() -> None:
    fleet = calls(
        [
            ("code.generate", "premium", 200, 0.90, 0.010, 2000),
            ("code.generate", "budget", 200, 0.90, 0.002, 1500),
            ("research.search", "a", 100, 0.5, 0.0001, 1000),
        ]
    )
    frame = recommendations_frame(cheaper_agent(fleet) + flaky_steps(fleet))
    assert frame["kind"].to_list() == ["cheaper_agent", "flaky_step"]
    assert frame["recommendation_id"][0] == "cheaper_agent/code.generate:premium"
    assert json.loads(frame["evidence"][0])["to"]["agent_name"] == "budget"
    assert recommendations_frame([]).is_empty()


@given(successes=st.integers(0, 500), extra=st.integers(0, 500))
def test_the_interval_holds_the_observed_rate_and_narrows_with_data(
    successes: int, extra: int
) -> None:
    n = successes + extra
    low, high = wilson_interval(successes, n)
    assert 0 <= low <= high <= 1
    if n:
        assert low - 1e-9 <= successes / n <= high + 1e-9
        low2, high2 = wilson_interval(successes * 4, n * 4)
        assert high2 - low2 <= high - low + 1e-9
