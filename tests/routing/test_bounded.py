"""The bounded scan (ADR 0020) returns the full ranking's first k on random fleets, requests and
statistics: the fast path may only differ from scoring every candidate where scores tie."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nofx.domain import Agent, utcnow
from nofx.routing.bounded import (
    BoundIndex,
    _min_difference,
    order_value,
    price_scale,
    static_term,
    success_term,
)
from nofx.routing.estimates import AgentEstimate
from nofx.routing.prediction import (
    MARGIN_CAP,
    MARGIN_FLOOR,
    NUMERIC,
    BinnedTerm,
    CompactFailureModel,
)
from nofx.routing.router import SmartRouter
from nofx.routing.sampled import Block
from nofx.routing.scoring import WEIGHTS, Estimate, score
from nofx.routing.selection import Outcome, SelectionRequest, estimated_cost

CAP = "code.generate"
K = 5
OBJECTIVES = ("balanced", "cost", "latency", "success")


def random_fleet(rng: random.Random, n: int) -> list[Agent]:
    now = utcnow()
    per_call = rng.random() < 0.3
    return [
        Agent(
            agent_id=f"agt_{i:04d}",
            name=f"a{i}",
            created_at=now,
            updated_at=now,
            # few distinct values, so ties and equal bounds are common
            capabilities=[{"name": CAP, "proficiency": rng.randint(1, 5)}],
            pricing={
                "input_per_1k_tokens": rng.choice((0.0, 0.0001, 0.001, 0.003, rng.random() / 100)),
                "output_per_1k_tokens": rng.choice((0.0, 0.0004, 0.01)),
                "per_call": rng.choice((0.0, 0.002)) if per_call else 0.0,
            },
            provider={
                "kind": "simulated",
                "config": {"latency_median_ms": rng.choice((300, 1000, rng.uniform(50, 5000)))},
            },
            context_window_tokens=rng.choice((None, 8_192, 32_768, 128_000)),
            max_concurrency=rng.choice((1, 4)),
        )
        for i in range(n)
    ]


def random_model(rng: random.Random) -> CompactFailureModel:
    """A model with random bins and slopes on every feature (the margin and fill terms are
    the ones the bound has to cover)."""

    def term(feature: str) -> BinnedTerm:
        edges = tuple(sorted(rng.uniform(-6.0, 3.0) for _ in range(rng.randint(0, 4))))
        weights = tuple(rng.uniform(-2.0, 2.0) for _ in range(len(edges) + 1))
        return BinnedTerm(feature, edges, weights, slope=rng.uniform(-1.0, 1.0))

    return CompactFailureModel(
        rng.uniform(-4.0, 0.0),
        tuple(term(f) for f in NUMERIC),
        {"capability": {CAP: rng.uniform(-1.0, 1.0)}},
        0.5,
        str(rng.randint(1, 9)),
    )


def random_request(rng: random.Random, fleet: list[Agent]) -> SelectionRequest:
    return SelectionRequest(
        CAP,
        optimize=rng.choice(OBJECTIVES),
        input_tokens=rng.choice((1, 2, 800, 1000, int(rng.lognormvariate(7.5, 1.2)) + 1)),
        complexity=rng.random(),
        timeout_s=rng.choice((None, 0.5, 2.0, 60.0)),
        min_proficiency=rng.choice((1, 1, 3)),
        budget_usd=rng.choice((None, None, 0.01)),
        deadline_s=rng.choice((None, None, 1.5)),
        exclude=frozenset(a.agent_id for a in rng.sample(fleet, rng.randint(0, 3))),
    )


def disturb(rng: random.Random, routers: list[SmartRouter], fleet: list[Agent]) -> None:
    """The same outcomes, loads and breaker trips for every router."""
    for _ in range(rng.randint(0, 30)):
        outcome = Outcome(
            rng.choice(fleet).agent_id,
            CAP,
            rng.random() < 0.7,
            rng.uniform(20.0, 4000.0),
            rng.uniform(0.0, 0.01),
            error_class=rng.choice((None, "transient", "permanent")),
        )
        for router in routers:
            router.record(outcome)
    for _ in range(rng.randint(0, 5)):
        agent_id = rng.choice(fleet).agent_id
        for router in routers:
            router.acquire(agent_id)


def assert_same_top(fast: list, full: list) -> None:
    """The fast path's list is the full ranking's head, up to reordering among tied scores
    (scores are relative to the request's best, so compare them as gaps from the leader),
    and each agent's estimate is the full scan's to the bit (the bounded scan estimates a
    block at a time, the full scan one agent at a time)."""
    head = full[: len(fast)]
    assert len(fast) == min(K, len(full))
    if not fast:
        return
    gaps_fast = [s.score - fast[0].score for s in fast]
    gaps_full = [s.score - head[0].score for s in head]
    for a, b in zip(gaps_fast, gaps_full, strict=True):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    for f, s in zip(fast, head, strict=True):
        if f.agent is not s.agent:  # only where the full ranking has a tie
            tied = [x for x in full if math.isclose(x.score, s.score, rel_tol=1e-9, abs_tol=1e-9)]
            assert f.agent in [x.agent for x in tied]
        assert math.isclose(f.expected_success, s.expected_success, rel_tol=1e-12)
    by_agent = {s.agent.agent_id: s for s in full}
    for f in fast:
        s = by_agent[f.agent.agent_id]
        assert (f.expected_success, f.expected_cost_usd, f.expected_latency_ms) == (
            s.expected_success,
            s.expected_cost_usd,
            s.expected_latency_ms,
        )


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2 * K + 1, 120), with_model=st.booleans())
def test_the_bounded_scan_returns_the_full_rankings_head(
    seed: int, n: int, with_model: bool
) -> None:
    rng = random.Random(seed)
    fleet = random_fleet(rng, n)
    model = random_model(rng) if with_model else None
    predictor = (lambda: model) if with_model else None
    fast = SmartRouter(explore=False, shortlist=K, predictor=predictor)
    full = SmartRouter(explore=False, shortlist=None, predictor=predictor)
    for _ in range(6):
        disturb(rng, [fast, full], fleet)
        request = random_request(rng, fleet)
        assert_same_top(fast.rank(request, fleet), full.rank(request, fleet))


class Drawn(SmartRouter):
    """Thompson sampling with the draws fixed per (agent, round), so the fast path (a block of
    draws at a time) and the full scan (one at a time) see the same samples: the bound must
    hold for any level in [0, 1]."""

    round = 0

    def draw(self, agent_id: str, alpha: float, beta: float) -> float:
        return random.Random(f"{agent_id}/{self.round}").betavariate(alpha, beta)

    def _level(self, agent: Agent, est: AgentEstimate) -> float:
        return self.draw(agent.agent_id, est.alpha, est.beta)

    def _levels(self, index: BoundIndex, slots: np.ndarray) -> np.ndarray:
        return np.array(
            [
                self.draw(index.agents[s].agent_id, index.alpha[s], index.beta[s])
                for s in slots.tolist()
            ]
        )


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2 * K + 1, 120), with_model=st.booleans())
def test_thompson_sampling_picks_the_best_draw_without_drawing_for_everyone(
    seed: int, n: int, with_model: bool
) -> None:
    rng = random.Random(seed)
    fleet = random_fleet(rng, n)
    model = random_model(rng) if with_model else None
    predictor = (lambda: model) if with_model else None
    fast = Drawn(explore=True, shortlist=K, predictor=predictor)
    full = Drawn(explore=True, shortlist=None, predictor=predictor)
    for round_ in range(6):
        fast.round = full.round = round_
        disturb(rng, [fast, full], fleet)
        request = random_request(rng, fleet)
        assert_same_top(fast.rank(request, fleet), full.rank(request, fleet))


def test_a_large_fleet_is_not_scored_whole() -> None:
    """The point of the index: at 2,000 candidates a call draws for a few hundred and
    estimates a few dozen (and every free agent: no price bound), not all."""
    fleet = random_fleet(random.Random(1), 2_000)
    request = SelectionRequest(CAP, input_tokens=1000)
    for explore in (False, True):
        router = CountingRouter(explore=explore, shortlist=24)
        router.rank(request, fleet)  # builds the index
        router.estimated = router.visited = router.drawn = 0
        assert len(router.rank(request, fleet)) == 24
        assert router.visited < (120 if explore else 400), router.visited
        assert router.estimated < (120 if explore else 400), router.estimated
        assert router.drawn < (600 if explore else 1), router.drawn


class CountingRouter(SmartRouter):
    estimated = visited = drawn = 0

    def _block_evaluator(  # type: ignore[no-untyped-def]
        self, *args, **kwargs
    ) -> tuple[Callable[[int], bool], Callable[[np.ndarray, np.ndarray], Block]]:
        qualifies, evaluate = super()._block_evaluator(*args, **kwargs)

        def counted_qualifies(slot: int) -> bool:
            self.visited += 1
            return qualifies(slot)

        def counted_evaluate(slots: np.ndarray, levels: np.ndarray) -> Block:
            self.estimated += len(slots)
            return evaluate(slots, levels)

        return counted_qualifies, counted_evaluate

    def _levels(self, index: BoundIndex, slots: np.ndarray) -> np.ndarray:
        self.drawn += len(slots)
        return super()._levels(index, slots)


@settings(max_examples=200, deadline=None)
@given(
    p=st.floats(0.0, 1.0),
    price=st.floats(1e-7, 1.0),
    latency=st.floats(1.0, 1e5),
    load=st.floats(0.0, 3.0),
    objective=st.sampled_from(OBJECTIVES),
    cheapest=st.floats(1e-8, 1.0),
    fastest=st.floats(1.0, 1e5),
)
def test_the_order_value_is_the_score_less_a_shared_term_and_under_its_bound(
    p: float,
    price: float,
    latency: float,
    load: float,
    objective: str,
    cheapest: float,
    fastest: float,
) -> None:
    e = Estimate(success=p, cost_usd=price, latency_ms=latency, latency_p95_ms=0.0, load=load)
    _, w_c, w_l, _ = WEIGHTS[objective]
    shared = w_c * math.log2(cheapest) + w_l * math.log2(fastest)
    assert math.isclose(
        score(e, objective, cheapest, fastest), order_value(e, objective) + shared, abs_tol=1e-9
    )
    bound = success_term(p, objective) + static_term(price, latency, objective)
    assert order_value(e, objective) <= bound + 1e-9


@settings(max_examples=200, deadline=None)
@given(tokens=st.integers(1, 500_000), seed=st.integers(0, 1000))
def test_a_prompt_costs_at_least_the_price_scale_times_the_typical_prompt(
    tokens: int, seed: int
) -> None:
    rng = random.Random(seed)
    for a in random_fleet(rng, 20):
        m = price_scale(tokens, a.pricing.per_call > 0)
        assert estimated_cost(a, tokens) >= m * estimated_cost(a, 1000) * (1 - 1e-12)


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    request_x=st.floats(-8.0, 8.0),
    typical_x=st.floats(-8.0, 8.0),
    y=st.floats(-20.0, 20.0),
)
def test_the_margin_bound_is_below_every_latency(
    seed: int, request_x: float, typical_x: float, y: float
) -> None:
    term = random_model(random.Random(seed)).terms[NUMERIC.index("log_timeout_margin")]

    def w(x: float) -> float:
        return term.weight(min(MARGIN_CAP, max(MARGIN_FLOOR, x)))

    low = _min_difference(term, request_x, typical_x)
    assert low <= w(request_x - y) - w(typical_x - y) + 1e-6


def test_the_index_cache_is_bounded_and_keeps_the_lists_in_use() -> None:
    """A caller that builds a new candidate list per call (bench.routing's run() does) adds
    an index per call: the router keeps at most ``max_indexes``, the least recently used
    dropped, so a list used on every call keeps its index, and results do not change."""
    rng = random.Random(2)
    fleet = random_fleet(rng, 60)
    router = SmartRouter(explore=False, shortlist=5, max_indexes=3)
    twin = SmartRouter(explore=False, shortlist=5)  # unbounded: every list's index kept
    request = SelectionRequest(CAP, input_tokens=1000)
    kept = list(fleet)
    for r in (router, twin):  # each learns the candidates' priors before any outcome
        r.rank(request, kept)
    first = router._index(request, kept)
    lists = []
    for _ in range(12):
        disturb(rng, [router, twin], fleet)
        lists.append(list(fleet))
        assert router.rank(request, lists[-1]) == twin.rank(request, lists[-1])
        assert router.rank(request, kept) == twin.rank(request, kept)
        assert router._index(request, kept) is first
        assert len(router._indexes) <= 3 and len(router._pending) <= 3
    assert (CAP, "balanced", id(lists[0])) not in router._indexes
    assert len(twin._indexes) == 13
