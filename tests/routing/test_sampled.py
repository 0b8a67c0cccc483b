"""Thompson sampling a block at a time (ADR 0025): the vector bounds hold for every agent, the
index's arrays follow its order, and the policy is still Thompson sampling over the same
posteriors (the same choice frequencies as drawing one agent at a time over the whole list).
That the block scan returns the full scan's head for the same draws is
``test_bounded.test_thompson_sampling_picks_the_best_draw_without_drawing_for_everyone``."""

from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nofx.domain import Agent, utcnow
from nofx.routing.bounded import (
    BoundIndex,
    BoundKey,
    moved_success,
    order_value,
    success_term,
)
from nofx.routing.prediction import (
    DEFAULT_TIMEOUT_S,
    CompactFailureModel,
    RequestScorer,
    anchored_failure,
)
from nofx.routing.router import SmartRouter
from nofx.routing.sampled import (
    _best_first,
    anchored_successes,
    logs2,
    moved_successes,
    rejected,
    rejecting_windows,
    request_shifts,
    success_terms,
)
from nofx.routing.scoring import cost_of_success, latency_of_success, within_limits
from nofx.routing.selection import Outcome, SelectionRequest
from tests.routing.test_bounded import (
    CAP,
    OBJECTIVES,
    disturb,
    random_fleet,
    random_model,
    random_request,
)


@settings(max_examples=200, deadline=None)
@given(
    p=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=20),
    shift=st.floats(-30.0, 30.0),
    objective=st.sampled_from(OBJECTIVES),
)
def test_the_vector_terms_are_the_scalar_ones(p: list[float], shift: float, objective: str) -> None:
    levels = np.array(p)
    for got, want in zip(success_terms(levels, objective).tolist(), p, strict=True):
        assert math.isclose(got, success_term(want, objective), rel_tol=1e-12, abs_tol=1e-12)
    for got, want in zip(moved_successes(levels, shift).tolist(), p, strict=True):
        assert math.isclose(got, moved_success(want, shift), rel_tol=1e-9, abs_tol=1e-12)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_the_vector_shift_is_below_each_agents_shift_and_close_to_it(seed: int) -> None:
    """The bound of a drawn agent uses its own window and latency median: never above the
    shift ``_estimate`` applies (else the scan could skip the winner), and within rounding."""
    rng = random.Random(seed)
    fleet = random_fleet(rng, 40)
    model = random_model(rng)
    router = SmartRouter(explore=True, shortlist=5, predictor=lambda: model)
    disturb(rng, [router], fleet)
    request = random_request(rng, fleet)
    router.rank(request, fleet)  # builds the index, moves the agents the outcomes touched
    index = router._index(request, fleet)
    scorer = RequestScorer(
        model,
        capability=CAP,
        complexity=request.complexity,
        input_tokens=request.input_tokens,
        timeout_s=request.timeout_s or DEFAULT_TIMEOUT_S,
    )
    typical = router._typical_scorer(model, CAP)
    slots = np.arange(len(fleet))
    shifts = request_shifts(scorer, typical, index, slots)
    over = rejected(index, request.input_tokens, slots)
    for slot, agent in enumerate(fleet):
        exact = scorer.shift_from(
            typical, agent.context_window_tokens, router.stats.history(agent.agent_id)
        )
        assert shifts[slot] <= exact
        assert shifts[slot] >= exact - 1e-6 - 2e-9 * abs(exact)
        window = agent.context_window_tokens
        assert over[slot] == (window is not None and request.input_tokens > window)


def fake_key(rng: random.Random) -> BoundKey:
    return BoundKey(
        rng.choice((1.0, 2.0, rng.uniform(-5.0, 5.0), math.inf)),
        0.0,
        rng.uniform(4.0, 9.0),
        rng.uniform(0.1, 50.0),
        rng.uniform(0.1, 50.0),
    )


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 40), moves=st.integers(0, 60))
def test_moves_keep_the_arrays_in_the_orders_order(seed: int, n: int, moves: int) -> None:
    rng = random.Random(seed)
    fleet = random_fleet(rng, n)
    keys = {a.agent_id: fake_key(rng) for a in fleet}
    index = BoundIndex.build(fleet, lambda a: keys[a.agent_id])
    for _ in range(moves):
        agent = rng.choice(fleet)
        keys[agent.agent_id] = fake_key(rng) if rng.random() < 0.8 else keys[agent.agent_id]
        index.move(agent.agent_id, keys[agent.agent_id])
    assert index.order == sorted((-k.key, a) for a, k in keys.items())
    assert index.ranked_slots.tolist() == [index.slot[a] for _, a in index.order]
    assert index.ranked_negkeys.tolist() == [k for k, _ in index.order]
    for a in fleet:
        slot = index.slot[a.agent_id]
        assert index.agents[slot] is a
        found = keys[a.agent_id]
        assert (index.alpha[slot], index.beta[slot]) == (found.alpha, found.beta)
        assert index.log_p50s[slot] == found.log_p50


def choice_counts(router: SmartRouter, fleet: list[Agent], calls: int) -> Counter[str]:
    request = SelectionRequest(CAP, input_tokens=1000)
    return Counter(router.rank(request, fleet)[0].agent.agent_id for _ in range(calls))


def even_fleet(rng: random.Random, n: int) -> list[Agent]:
    """Agents of a few prices and one latency: the draw decides the choice, not the price."""
    now = utcnow()
    return [
        Agent(
            agent_id=f"agt_{i:04d}",
            name=f"a{i}",
            created_at=now,
            updated_at=now,
            capabilities=[{"name": CAP, "proficiency": rng.randint(1, 5)}],
            pricing={"input_per_1k_tokens": rng.choice((0.001, 0.0012, 0.0015))},
            provider={"kind": "simulated", "config": {"latency_median_ms": 800.0}},
        )
        for i in range(n)
    ]


def test_thompson_sampling_keeps_its_policy() -> None:
    """Numpy's Beta draws a block at a time against Python's one at a time over every
    candidate: each agent is chosen as often, within five standard errors. A router that
    ranked on the posterior mean (no exploration) fails this by far."""
    rng = random.Random(4)
    fleet = even_fleet(rng, 30)
    calls = 1500
    routers = [
        SmartRouter(seed=1, shortlist=5, explained=0),  # the bounded, vectorised scan
        SmartRouter(seed=2, shortlist=None, explained=0),  # every candidate, one by one
        SmartRouter(seed=3, explore=False, shortlist=5, explained=0),  # control: no sampling
    ]
    for _ in range(200):  # posteriors apart from the priors, the same for every router
        outcome = Outcome(rng.choice(fleet).agent_id, CAP, rng.random() < 0.8, 0.0, 0.001)
        for router in routers:
            router.record(outcome)
    block, full, mean = (choice_counts(r, fleet, calls) for r in routers)
    assert len(full) > 5  # exploration spreads the choice: the comparison means something

    def apart(a: Counter[str], b: Counter[str]) -> float:
        """The largest difference of an agent's frequency, in standard errors."""
        worst = 0.0
        for agent_id in set(a) | set(b):
            p = (a[agent_id] + b[agent_id]) / (2 * calls)
            se = math.sqrt(2 * p * (1 - p) / calls) + 1 / calls
            worst = max(worst, abs(a[agent_id] - b[agent_id]) / calls / se)
        return worst

    assert apart(block, full) < 5.0
    assert apart(mean, full) > 5.0


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), with_model=st.booleans(), explore=st.booleans())
def test_an_agent_is_estimated_as_the_reference_does_it(
    seed: int, with_model: bool, explore: bool
) -> None:
    """The scans' evaluator is ``_qualifies``, ``_estimate``, ``within_limits`` and
    ``order_value`` in one closure: the same answer, to the bit, for every agent."""
    rng = random.Random(seed)
    fleet = random_fleet(rng, 30)
    model = random_model(rng) if with_model else None
    router = SmartRouter(explore=explore, predictor=(lambda: model) if with_model else None)
    disturb(rng, [router], fleet)
    request = random_request(rng, fleet)
    scorer = None if model is None else request_scorer(model, request)
    now = router.clock()
    evaluate = router._evaluator(request, scorer, now)
    for agent in fleet:
        level = rng.random() if explore else None  # None: the posterior mean
        found = evaluate(agent, level)
        if not router._qualifies(agent, request, now):
            assert found is None
            continue
        e = router._estimate(agent, request, scorer, level)
        if within_limits(e, request.budget_usd, request.deadline_s) is not None:
            assert found is None
            continue
        assert found is not None and found.estimate() == e
        assert (found.value, found.cost, found.wait) == (
            order_value(e, request.optimize),
            cost_of_success(e),
            latency_of_success(e),
        )


def request_scorer(model: CompactFailureModel, request: SelectionRequest) -> RequestScorer:
    return RequestScorer(
        model,
        capability=request.capability,
        complexity=request.complexity,
        input_tokens=request.input_tokens,
        timeout_s=request.timeout_s or DEFAULT_TIMEOUT_S,
    )


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), with_model=st.booleans(), explore=st.booleans())
def test_a_block_is_estimated_as_one_agent_at_a_time(
    seed: int, with_model: bool, explore: bool
) -> None:
    """The bounded scan estimates a block of the index's agents from its arrays (numpy for
    + - * /, Python's math for the rest): each agent's value and estimate are the ones the
    full scan's evaluator gives it, to the bit, after outcomes have moved the index; and an
    agent qualifies when the evaluator says it does."""
    rng = random.Random(seed)
    fleet = random_fleet(rng, 40)
    model = random_model(rng) if with_model else None
    router = SmartRouter(
        explore=explore, shortlist=5, predictor=(lambda: model) if with_model else None
    )
    for _ in range(3):
        disturb(rng, [router], fleet)
        request = random_request(rng, fleet)
        router.rank(request, fleet)  # builds the index, moves the agents outcomes touched
    disturb(rng, [router], fleet)
    router._note_changes()
    index = router._index(request, fleet)
    scorer = None if model is None else request_scorer(model, request)
    now = router.clock()
    evaluate = router._evaluator(request, scorer, now)
    over = rejecting_windows(index, request.input_tokens)
    qualifies, estimate = router._block_evaluator(request, scorer, index, over, now)
    slots = np.array(rng.sample(range(len(fleet)), 25), dtype=np.intp)
    levels = np.array([rng.random() for _ in slots])
    block = estimate(slots, levels)
    for i, slot in enumerate(slots.tolist()):
        agent = fleet[slot]
        one = evaluate(agent, levels[i].item() if explore else None)
        if not qualifies(slot):
            assert one is None
        elif one is None:
            assert block.values[i] is None
        else:
            assert block.scored(i) == one


def test_reasons_read_later_say_what_they_said_when_ranked() -> None:
    """Reasons are spelled out when read, from numbers kept at ranking time: a caller that
    acquires the agent and records its outcome first still reads the ranking's reasons."""
    rng = random.Random(3)
    fleet = random_fleet(rng, 60)
    model = random_model(rng)
    routers = [SmartRouter(seed=5, predictor=lambda: model, explained=3) for _ in range(2)]
    request = SelectionRequest(CAP, input_tokens=2000)
    eager, lazy = (r.rank(request, fleet) for r in routers)
    now = [tuple(s.reasons) for s in eager]
    leader = lazy[0].agent.agent_id
    routers[1].acquire(leader)
    routers[1].record(Outcome(leader, CAP, False, 30_000.0, 0.01, error_class="transient"))
    assert [tuple(s.reasons) for s in lazy] == now
    assert now[0] and now[2] and not now[3]
    assert any(r.startswith("load 0/") for r in now[0])
    # while the agent's own state moved on
    assert routers[1].rank(request, fleet) != lazy


@settings(max_examples=200, deadline=None)
@given(
    bounds=st.lists(
        st.sampled_from((-1.0, 0.0, 0.5, 2.0, -math.inf)) | st.floats(-5, 5), max_size=90
    ),
    size=st.integers(1, 12),
    floor=st.floats(-6.0, 1.0),
)
def test_the_visit_order_is_a_stable_sort_by_bound(
    bounds: list[float], size: int, floor: float
) -> None:
    """The drawn agents are visited in the order of a stable sort by bound, best first (ties
    in draw order), as sorting them all would give, a group at a time."""
    array = np.array(bounds, dtype=float)
    live = np.flatnonzero(array >= floor)
    chunks = list(_best_first(array, live, size))
    assert all(0 < len(c) <= size for c in chunks)
    visited = np.concatenate(chunks).tolist() if chunks else []
    assert visited == live[np.argsort(-array[live], kind="stable")].tolist()


@settings(max_examples=200, deadline=None)
@given(
    levels=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=20),
    shifts=st.lists(st.floats(-800.0, 800.0) | st.floats(-30.0, 30.0), min_size=20, max_size=20),
)
def test_the_vector_anchored_success_is_the_scalar_one_to_the_bit(
    levels: list[float], shifts: list[float]
) -> None:
    got = anchored_successes(np.array(levels), np.array(shifts[: len(levels)])).tolist()
    want = [1.0 - anchored_failure(1.0 - p, s, 0.0) for p, s in zip(levels, shifts, strict=False)]
    assert got == want
    x = np.array([p + 1e-9 for p in levels])
    assert logs2(x).tolist() == [math.log2(v) for v in x.tolist()]
