"""The router's objective: what a success is expected to cost, counting what failures cost.

Regression (issue 11): without a failure model the router scored a prompt over an agent's
context window with the agent's success posterior, as if it might succeed; it is a certain
failure known before the call. The cost of success can charge a failed attempt what it
costs (``failed_cost_usd``); the router charges the full price (see ADR 0011)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from nofx.domain import Agent, utcnow
from nofx.routing.router import SHORTLIST, SmartRouter
from nofx.routing.scoring import MIN_SUCCESS, Estimate, cost_of_success
from nofx.routing.selection import SelectionRequest

prices = st.floats(1e-6, 10.0)
probabilities = st.floats(0.001, 1.0)


def estimate(p: float, price: float, failed: float | None) -> Estimate:
    return Estimate(p, price, 100.0, 200.0, 0.0, failed_cost_usd=failed)


@settings(max_examples=200, deadline=None)
@given(p=probabilities, price=prices, share=st.floats(0.0, 1.0))
def test_cost_of_success_is_one_success_plus_the_expected_failures_at_their_cost(
    p: float, price: float, share: float
) -> None:
    failed = price * share
    expected = price + failed * (1 - p) / p
    assert math.isclose(cost_of_success(estimate(p, price, failed)), expected, rel_tol=1e-9)
    # every failure billed in full: the geometric price / p
    assert math.isclose(cost_of_success(estimate(p, price, None)), price / p, rel_tol=1e-9)
    # never below one success, never above every failure billed
    assert price * (1 - 1e-12) <= cost_of_success(estimate(p, price, failed))
    assert cost_of_success(estimate(p, price, failed)) <= price / p * (1 + 1e-12)


@settings(max_examples=200, deadline=None)
@given(p1=probabilities, p2=probabilities, price=prices, s1=st.floats(0, 1), s2=st.floats(0, 1))
def test_cost_of_success_falls_with_reliability_and_rises_with_the_failure_bill(
    p1: float, p2: float, price: float, s1: float, s2: float
) -> None:
    lo_p, hi_p = sorted((p1, p2))
    lo_s, hi_s = sorted((s1, s2))
    assert cost_of_success(estimate(hi_p, price, price * lo_s)) <= cost_of_success(
        estimate(lo_p, price, price * lo_s)
    ) * (1 + 1e-12)
    assert cost_of_success(estimate(lo_p, price, price * lo_s)) <= cost_of_success(
        estimate(lo_p, price, price * hi_s)
    ) * (1 + 1e-12)


def test_a_hopeless_agent_stays_hopeless_even_when_its_failures_are_free() -> None:
    hopeless = estimate(0.0, 0.001, 0.0)
    assert cost_of_success(hopeless) == 0.001 / MIN_SUCCESS


def agent(name: str, price: float, window: int | None = None, level: int = 4) -> Agent:
    now = utcnow()
    return Agent(
        agent_id=f"agt_{name}",
        name=name,
        created_at=now,
        updated_at=now,
        capabilities=[{"name": "code.generate", "proficiency": level}],
        pricing={"input_per_1k_tokens": price, "output_per_1k_tokens": price},
        provider={"kind": "simulated", "config": {"latency_median_ms": 800.0}},
        context_window_tokens=window,
    )


def test_a_prompt_over_the_window_is_a_certain_failure_without_a_model() -> None:
    small, large = agent("small", 0.0001, window=4_000), agent("large", 0.003, window=128_000)
    router = SmartRouter(explore=False)
    ranked = router.rank(SelectionRequest("code.generate", input_tokens=20_000), [small, large])
    assert ranked[0].agent is large
    assert ranked[-1].agent is small and ranked[-1].expected_success == 0.0


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 2 * SHORTLIST), tokens=st.integers(1, 50_000), seed=st.integers(0, 99))
def test_a_small_fleet_is_scanned_whole_so_the_shortlist_never_changes_its_choice(
    n: int, tokens: int, seed: int
) -> None:
    fleet = [
        agent(f"a{i}", (0.0001, 0.001, 0.003)[i % 3], (8_000, 32_000, None)[i % 3], 1 + i % 5)
        for i in range(n)
    ]
    request = SelectionRequest("code.generate", input_tokens=tokens)
    short = SmartRouter(seed=seed, explore=False).rank(request, fleet)
    full = SmartRouter(seed=seed, explore=False, shortlist=None).rank(request, fleet)
    assert [s.agent.agent_id for s in short] == [s.agent.agent_id for s in full]
