"""The simulator is realistic where a control plane cares, reproducible, and says so."""

from __future__ import annotations

import statistics

import pytest

from nofx.agents import (
    AgentCall,
    AgentCallError,
    AgentFaultError,
    SimulatedProvider,
    TransientAgentError,
)
from nofx.agents.simulated import success_probability
from nofx.domain import Agent, AgentSpec, utcnow


def agent(name: str = "sim", **config) -> Agent:
    spec = AgentSpec(
        name=name,
        capabilities=[{"name": "code.generate", "proficiency": 4}],
        pricing={"input_per_1k_tokens": 0.001, "output_per_1k_tokens": 0.002},
        provider={"kind": "simulated", "config": config},
    )
    now = utcnow()
    return Agent(**spec.model_dump(), agent_id=f"agt_{name}", created_at=now, updated_at=now)


def call(i: int, **kw) -> AgentCall:
    return AgentCall(
        call_id=f"c{i}",
        capability=kw.pop("capability", "code.generate"),
        prompt="p",
        input_tokens=1000,
        **kw,
    )


def test_outcomes_depend_only_on_seed_agent_and_call() -> None:
    a = agent()
    one = [SimulatedProvider(seed=3).outcome(a, call(i)) for i in range(50)]
    two = [SimulatedProvider(seed=3).outcome(a, call(i)) for i in reversed(range(50))][::-1]
    assert [repr(x) for x in one] == [repr(x) for x in two]
    other = [SimulatedProvider(seed=4).outcome(a, call(i)) for i in range(50)]
    assert [repr(x) for x in one] != [repr(x) for x in other]


def test_latency_has_a_heavy_tail_and_cost_follows_tokens() -> None:
    provider = SimulatedProvider(seed=1)
    a = agent(
        error_rate=0.0, rate_limit_rate=0.0, skill={"code.generate": 1.0}, latency_median_ms=500
    )
    results = [provider.outcome(a, call(i, complexity=0.0)) for i in range(2000)]
    latencies = sorted(r.latency_ms for r in results)
    p50, p95 = latencies[1000], latencies[1900]
    assert 400 < p50 < 600
    assert p95 > 1.8 * p50
    for r in results[:50]:
        assert r.simulated is True
        assert r.cost_usd == pytest.approx(
            r.input_tokens / 1000 * 0.001 + r.output_tokens / 1000 * 0.002
        )


def test_failure_modes_show_up_at_their_configured_rates() -> None:
    provider = SimulatedProvider(seed=2)
    a = agent(error_rate=0.1, rate_limit_rate=0.05, skill={"code.generate": 1.0})
    outcomes = [provider.outcome(a, call(i, complexity=0.0)) for i in range(4000)]
    rate_limited = sum(
        isinstance(o, TransientAgentError) and o.error_type == "rate_limited" for o in outcomes
    )
    errors = sum(isinstance(o, AgentFaultError) and o.error_type == "agent_error" for o in outcomes)
    assert rate_limited / 4000 == pytest.approx(0.05, abs=0.015)
    assert errors / 4000 == pytest.approx(0.10, abs=0.02)


def test_harder_tasks_fail_more_and_skill_matters() -> None:
    assert success_probability(0.9, 1.0) < success_probability(0.9, 0.0)
    assert success_probability(0.6, 0.5) < success_probability(0.9, 0.5)
    provider = SimulatedProvider(seed=5)
    strong = agent("strong", error_rate=0, rate_limit_rate=0, skill={"code.generate": 0.95})
    weak = agent("weak", error_rate=0, rate_limit_rate=0, skill={"code.generate": 0.6})
    ok = {
        a.name: statistics.mean(
            not isinstance(provider.outcome(a, call(i, complexity=0.8)), Exception)
            for i in range(1000)
        )
        for a in (strong, weak)
    }
    assert ok["strong"] > ok["weak"] + 0.3


def test_degradation_and_going_dark() -> None:
    provider = SimulatedProvider(seed=6)
    tiring = agent(
        "tiring",
        error_rate=0,
        rate_limit_rate=0,
        skill={"code.generate": 0.95},
        degradation_per_call=0.001,
    )
    early = sum(not isinstance(provider.outcome(tiring, call(i)), Exception) for i in range(300))
    late = sum(
        not isinstance(provider.outcome(tiring, call(i + 300)), Exception) for i in range(300)
    )
    assert late < early
    dark = agent("dark", dark_after_calls=2)
    outcomes = [provider.outcome(dark, call(i)) for i in range(5)]
    assert all(
        isinstance(o, TransientAgentError) and o.error_type == "timeout" for o in outcomes[2:]
    )


async def test_invoke_sleeps_scaled_latency_and_raises_classified_errors() -> None:
    provider = SimulatedProvider(seed=1, time_scale=0.0)
    result = await provider.invoke(
        agent(error_rate=0, rate_limit_rate=0, skill={"code.generate": 1.0}), call(1)
    )
    assert "simulated" in result.output
    with pytest.raises(AgentCallError) as info:
        await provider.invoke(agent(), call(2, capability="text.summarize"))
    assert info.value.error_class.value == "permanent"
    with pytest.raises(TransientAgentError):
        await provider.invoke(
            agent(latency_median_ms=10_000, latency_sigma=0.01), call(3, timeout_s=1.0)
        )
