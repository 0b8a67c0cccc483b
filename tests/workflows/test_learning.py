"""Learning step estimates from what ran, and forecasting a workflow from them."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from nofx.api.app import create_app
from nofx.domain import SessionRequest, Task
from nofx.runtime import Runtime, RuntimeConfig
from nofx.store import EventStore
from nofx.workflows.learning import MIN_SAMPLES, forecast, learn
from nofx.workflows.model import WorkflowSpec


def outcome(capability: str, seconds: float, ok: bool = True, agent: str = "a", cost=0.01):
    return {
        "capability": capability,
        "agent_id": agent,
        "latency_ms": seconds * 1000,
        "cost_usd": cost,
        "succeeded": ok,
    }


def test_statistics_per_capability_and_per_agent() -> None:
    rows = [outcome("code.generate", s) for s in range(1, 11)]
    rows += [outcome("code.generate", 100, ok=False, agent="b")]
    stats = {(s.capability, s.agent_id): s for s in learn(rows)}
    fleet = stats[("code.generate", None)]
    assert fleet.attempts == 11 and fleet.success_rate == pytest.approx(10 / 11)
    assert (fleet.p50_s, fleet.p90_s) == (6.0, 10.0)
    assert stats[("code.generate", "b")].success_rate == 0.0
    assert learn([{"agent_id": "x", "succeeded": True}]) == []  # no capability: ignored


def test_a_forecast_counts_retries_and_keeps_estimates_without_history() -> None:
    spec = WorkflowSpec.model_validate(
        {
            "name": "w",
            "steps": [
                {"id": "a", "capability": "code.generate", "estimates": {"duration_s": 1}},
                {
                    "id": "b",
                    "capability": "sql.write",
                    "needs": ["a"],
                    "estimates": {"duration_s": 7, "cost_usd": 0.5},
                },
            ],
        }
    )
    flaky = learn(
        [outcome("code.generate", 10, ok=i % 2 == 0, cost=0.02) for i in range(2 * MIN_SAMPLES)]
    )
    result = forecast(spec, flaky)
    # half the attempts fail: two tries of 10 s, then b's own 7 s estimate
    assert result["p50_makespan_s"] == pytest.approx(2 * 10 + 7)
    assert result["expected_cost_usd"] == pytest.approx(2 * 0.02 + 0.5)
    assert result["capabilities_without_history"] == ["sql.write"]
    thin = learn([outcome("code.generate", 10)] * (MIN_SAMPLES - 1))
    assert forecast(spec, thin)["p50_makespan_s"] == pytest.approx(1 + 7)


@given(st.lists(st.floats(0, 1e4, allow_nan=False), min_size=1, max_size=200))
def test_p50_never_exceeds_p90(seconds: list[float]) -> None:
    (stats,) = [s for s in learn([outcome("c", x) for x in seconds]) if s.agent_id is None]
    measured = [x * 1000 / 1000 for x in seconds]  # as it round-trips through milliseconds
    assert min(measured) <= stats.p50_s <= stats.p90_s <= max(measured)


def test_learn_then_analyze_over_http(store: EventStore, fleet) -> None:
    runtime = Runtime(store, config=RuntimeConfig(time_scale=0.0, seed=4))
    for i in range(30):
        runtime.sessions.submit(
            SessionRequest(task=Task(prompt=f"t{i}", capability="code.generate"))
        )
    asyncio.run(runtime.run_pending())
    flow = {
        "name": "two",
        "steps": [
            {"id": "write", "capability": "code.generate", "estimates": {"duration_s": 60}},
            {"id": "check", "capability": "code.review", "needs": ["write"]},
        ],
    }
    with TestClient(create_app(store=store, auth_required=False)) as client:
        before = client.post("/api/v1/workflows/analyze", json=flow).json()
        assert before["history"] is None
        learned = client.post("/api/v1/workflows/learn").json()
        assert learned["outcomes"] >= 30
        caps = {s["capability"] for s in learned["stats"] if s["agent_id"] is None}
        assert caps == {"code.generate"}
        after = client.post("/api/v1/workflows/analyze", json=flow).json()["history"]
        assert 0 < after["p50_makespan_s"] <= after["p90_makespan_s"]
        assert after["capabilities_without_history"] == ["code.review"]
        other = client.post("/api/v1/workflows/learn", headers={"X-Tenant-ID": "acme"}).json()
        assert other["outcomes"] == 0  # another tenant learns nothing from these sessions
