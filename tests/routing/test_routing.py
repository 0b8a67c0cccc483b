"""Routing decisions: scoring, hard limits, breakers and online learning (property-based where it matters)."""

from __future__ import annotations

import asyncio
import random

from hypothesis import given
from hypothesis import strategies as st

from nofx.domain import Agent, AgentSpec, utcnow
from nofx.routing.breaker import Breaker, BreakerPolicy, BreakerState
from nofx.routing.estimates import AgentEstimate
from nofx.routing.router import EXPLAINED, SmartRouter
from nofx.routing.scoring import WEIGHTS, Estimate, score, within_limits
from nofx.routing.selection import Outcome, SelectionRequest

objectives = st.sampled_from(sorted(WEIGHTS))
estimates = st.builds(
    Estimate,
    success=st.floats(0, 1),
    cost_usd=st.floats(1e-6, 10),
    latency_ms=st.floats(1, 60_000),
    latency_p95_ms=st.floats(1, 120_000),
    load=st.floats(0, 2),
)


@given(e=estimates, objective=objectives, bump=st.floats(0.01, 0.5))
def test_score_rises_with_success_and_falls_with_cost_latency_and_load(e, objective, bump) -> None:
    base = score(e, objective, cheapest=1e-6, fastest=1.0)
    better = Estimate(
        min(1.0, e.success + bump), e.cost_usd, e.latency_ms, e.latency_p95_ms, e.load
    )
    pricier = Estimate(e.success, e.cost_usd * (1 + bump), e.latency_ms, e.latency_p95_ms, e.load)
    slower = Estimate(e.success, e.cost_usd, e.latency_ms * (1 + bump), e.latency_p95_ms, e.load)
    busier = Estimate(
        e.success, e.cost_usd, e.latency_ms, e.latency_p95_ms, min(2.0, e.load + bump)
    )
    assert score(better, objective, 1e-6, 1.0) >= base
    assert score(pricier, objective, 1e-6, 1.0) < base
    assert score(slower, objective, 1e-6, 1.0) < base
    assert score(busier, objective, 1e-6, 1.0) <= base


def agent(
    name: str, level: int, price: float, latency: float = 500.0, caps=("code.generate",)
) -> Agent:
    spec = AgentSpec(
        name=name,
        capabilities=[{"name": c, "proficiency": level} for c in caps],
        pricing={"input_per_1k_tokens": price, "output_per_1k_tokens": price},
        provider={"config": {"latency_median_ms": latency}},
    )
    now = utcnow()
    return Agent(**spec.model_dump(), agent_id=f"agt_{name}", created_at=now, updated_at=now)


fleet_strategy = st.lists(
    st.tuples(st.integers(1, 5), st.floats(0.0001, 0.05), st.floats(50, 5000)),
    min_size=1,
    max_size=12,
)


@given(
    fleet=fleet_strategy,
    objective=objectives,
    min_level=st.integers(1, 5),
    budget=st.one_of(st.none(), st.floats(0.0001, 0.1)),
    deadline=st.one_of(st.none(), st.floats(0.05, 10)),
    seed=st.integers(0, 1000),
)
def test_ranking_never_breaks_requirements_or_hard_limits(
    fleet, objective, min_level, budget, deadline, seed
) -> None:
    agents = [agent(f"a{i}", lvl, price, lat) for i, (lvl, price, lat) in enumerate(fleet)]
    agents.append(agent("other", 5, 0.00001, caps=("text.summarize",)))
    router = SmartRouter(seed=seed)
    request = SelectionRequest(
        capability="code.generate",
        optimize=objective,
        min_proficiency=min_level,
        budget_usd=budget,
        deadline_s=deadline,
    )
    ranked = router.rank(request, agents)
    for s in ranked:
        assert s.agent.proficiency("code.generate") >= min_level
        e = router._estimate(s.agent, request, None)
        assert within_limits(e, budget, deadline) is None
        assert s.reasons or ranked.index(s) >= EXPLAINED
    assert [s.score for s in ranked] == sorted((s.score for s in ranked), reverse=True)


@given(
    outcomes=st.lists(st.tuples(st.booleans(), st.floats(0, 100)), max_size=80),
    probes=st.integers(1, 3),
)
def test_breaker_invariants(outcomes, probes) -> None:
    policy = BreakerPolicy(
        window=10,
        min_calls=4,
        failure_rate=0.5,
        consecutive_failures=3,
        cooldown_s=5,
        probes=probes,
    )
    breaker = Breaker("a", policy)
    now = 0.0
    for success, gap in outcomes:
        now += gap
        allowed, _ = breaker.allows(now)
        if breaker.state is BreakerState.OPEN:
            assert not allowed and now - breaker.opened_at < policy.cooldown_s
            continue
        if breaker.state is BreakerState.HALF_OPEN:
            assert breaker.probes_in_flight <= probes
        if allowed:
            breaker.on_call()
            before = breaker.state
            breaker.record(success, now)
            if before is BreakerState.HALF_OPEN:
                assert breaker.state is (BreakerState.CLOSED if success else BreakerState.OPEN)
        assert len(breaker.outcomes) <= policy.window


def test_breaker_opens_probes_and_recovers() -> None:
    b = Breaker("a", BreakerPolicy(consecutive_failures=3, cooldown_s=10, probes=1))
    for t in range(3):
        b.record(False, float(t))
    assert b.state is BreakerState.OPEN
    assert b.allows(5.0) == (False, None)
    ok, transition = b.allows(12.0)
    assert ok and transition.after is BreakerState.HALF_OPEN
    b.on_call()
    assert b.allows(12.5)[0] is False  # only one probe at a time
    assert b.record(True, 13.0).after is BreakerState.CLOSED


def test_router_learns_the_cheap_reliable_agent_and_cuts_off_a_dark_one() -> None:
    clock = [0.0]
    router = SmartRouter(
        seed=3,
        clock=lambda: clock[0],
        breaker_policy=BreakerPolicy(consecutive_failures=3, cooldown_s=60),
    )
    cheap, pricey, dark = (
        agent("cheap", 3, 0.0005),
        agent("pricey", 5, 0.02),
        agent("dark", 5, 0.0004),
    )
    truth = {"agt_cheap": 0.9, "agt_pricey": 0.92, "agt_dark": 0.0}
    rng = random.Random(1)
    picks = []
    for _ in range(300):
        clock[0] += 0.1
        best = router.rank(SelectionRequest(capability="code.generate"), [cheap, pricey, dark])[
            0
        ].agent
        picks.append(best.name)
        ok = rng.random() < truth[best.agent_id]
        router.record(
            Outcome(
                best.agent_id,
                "code.generate",
                ok,
                100,
                0.001,
                None if ok else "transient",
                error_type=None if ok else "timeout",
            )
        )
    assert picks[-100:].count("cheap") > 60
    assert "dark" not in picks[-100:]
    assert router.breakers.state("agt_dark") is not BreakerState.CLOSED
    assert any(t.after is BreakerState.OPEN for t in router.drain_transitions())


def test_estimates_forget_so_degradation_shows() -> None:
    e = AgentEstimate.from_prior(0.9)
    for _ in range(200):
        e.update(True, 100, 0.01)
    high = e.mean
    for _ in range(100):
        e.update(False, 100, 0.01)
    assert e.mean < high - 0.3
    assert e.latency_p95() == 100 and abs(e.cost_mean() - 0.01) < 1e-12


def test_smart_router_beats_proficiency_on_cost_in_the_runtime(store, registry) -> None:
    from nofx.domain import SessionRequest, Task
    from nofx.fleet import demo_fleet
    from nofx.routing.selection import ProficiencySelector
    from nofx.runtime import Runtime, RuntimeConfig

    for spec in demo_fleet():
        registry.register(spec)
    results = {}
    for name, selector in (("smart", SmartRouter(seed=2)), ("proficiency", ProficiencySelector())):
        runtime = Runtime(store, registry, selector=selector, config=RuntimeConfig(time_scale=0.0))
        for i in range(150):
            runtime.sessions.submit(
                SessionRequest(
                    task=Task(prompt=f"{name}{i}", capability="text.summarize", complexity=0.3)
                )
            )
        summary = asyncio.run(runtime.run_pending())
        results[name] = (
            summary.succeeded / len(summary.sessions),
            sum(s.cost_usd for s in summary.sessions),
        )
    assert results["smart"][1] < 0.7 * results["proficiency"][1]
    assert results["smart"][0] >= results["proficiency"][0] - 0.08


def test_baselines_rank_only_qualified_agents_in_their_own_order() -> None:
    from nofx.routing.baselines import CheapestSelector, LowestLatencySelector, RoundRobinSelector

    agents = [
        agent("a", 3, 0.01),
        agent("b", 1, 0.001),
        agent("c", 4, 0.005),
        agent("x", 5, 0.0, caps=("text.summarize",)),
    ]
    request = SelectionRequest(capability="code.generate", min_proficiency=2)
    rr = RoundRobinSelector()
    firsts = [rr.rank(request, agents)[0].agent.name for _ in range(4)]
    assert set(firsts) == {"a", "c"} and firsts[0] != firsts[1]
    assert [s.agent.name for s in CheapestSelector().rank(request, agents)] == ["c", "a"]
    fast = LowestLatencySelector()
    fast.record(Outcome("agt_a", "code.generate", True, 50.0, 0.01))
    fast.record(Outcome("agt_c", "code.generate", True, 500.0, 0.01))
    assert [s.agent.name for s in fast.rank(request, agents)] == ["a", "c"]
    assert rr.rank(SelectionRequest(capability="nope"), agents) == []
