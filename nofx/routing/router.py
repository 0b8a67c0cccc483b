"""SmartRouter: capability match, predicted failure, expected cost of success, load and breakers.

It implements the runtime's Selector protocol. For each qualified candidate it estimates the
probability that this call succeeds: from the request-time failure model when one is loaded
(``nofx.routing.prediction``: the prompt against the agent's context window, the timeout
against its recent latency, its recent failures...), else from a Thompson sample of the
agent's success posterior. It then ranks on what the session will pay for a success: price
times the expected attempts (1 / p), and latency including retries. The statistics live in
:class:`~nofx.routing.learned.LearnedStats`, shared through the store by every worker and
the API when it is given the store.

Large fleets: when a capability has many agents the router does not score all of them on
each call. It keeps them ordered by an upper bound of their score that does not depend on the
request (posterior mean, price of a typical prompt, latency; ``nofx.routing.bounded``), moving
only the agents whose statistics changed, and scores them best bound first until no agent
left can enter the first ``shortlist``: the same first ``shortlist`` the full scan ranks
(ADR 0020). Reasons (words for people) are spelled out for the first ``EXPLAINED`` only.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from math import log2

import numpy as np

from nofx.domain import Agent
from nofx.routing.bounded import (
    TYPICAL_TOKENS,
    BoundIndex,
    BoundKey,
    easiest_shift,
    price_scale,
    static_term,
    success_headroom,
    success_term,
)
from nofx.routing.breaker import BreakerBoard, BreakerPolicy, BreakerState, Transition
from nofx.routing.estimates import AgentEstimate, prior_success
from nofx.routing.learned import LearnedStats
from nofx.routing.prediction import DEFAULT_LATENCY_MS as MODEL_DEFAULT_LATENCY_MS
from nofx.routing.prediction import (
    DEFAULT_TIMEOUT_S,
    CompactFailureModel,
    HistoryNumbers,
    RequestScorer,
    anchored_failure,
    request_features,
)
from nofx.routing.sampled import (
    Block,
    Scored,
    ShiftBound,
    anchored_successes,
    logs2,
    moved_successes,
    rejecting_windows,
    sampled_top,
    success_terms,
)
from nofx.routing.scoring import (
    MIN_SUCCESS,
    WEIGHTS,
    Estimate,
    cost_of_success,
    latency_of_success,
)
from nofx.routing.selection import (
    Outcome,
    Reasons,
    ScoredAgent,
    SelectionRequest,
    estimated_cost,
)

DEFAULT_LATENCY_MS = 1000.0
# the typical request the model's per-request shift is measured from (a prompt of ~1.8k
# tokens, median complexity of the task mix, the default timeout)
TYPICAL_COMPLEXITY = 0.4
TYPICAL_INPUT_TOKENS = 1800
EXPLAINED = 3
SHORTLIST = 24
# candidate lists whose index is kept (least recently used dropped): a long-lived worker has
# one per tenant, capability and objective; a caller that builds a new list per call would
# otherwise add an index per call
MAX_INDEXES = 64
CLOSED = BreakerState.CLOSED

Predictor = Callable[[], CompactFailureModel | None]


class SmartRouter:
    def __init__(
        self,
        seed: int = 7,
        *,
        explore: bool = True,
        breaker_policy: BreakerPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        stats: LearnedStats | None = None,
        predictor: Predictor | None = None,
        shortlist: int | None = SHORTLIST,
        explained: int = EXPLAINED,
        max_indexes: int = MAX_INDEXES,
    ) -> None:
        self.rng = random.Random(seed)
        # Thompson draws of the bounded scan, a block at a time (ADR 0025)
        self.np_rng = np.random.default_rng(seed)
        self.explore = explore
        self.stats = stats or LearnedStats()
        self.predictor = predictor
        self.in_flight: dict[str, int] = {}
        self.breakers = BreakerBoard(breaker_policy)
        self.clock = clock
        self.shortlist = shortlist
        self.explained = explained
        self.max_indexes = max_indexes
        self._indexes: OrderedDict[tuple[str, str, int], BoundIndex] = OrderedDict()
        self._pending: dict[tuple[str, str, int], set[str]] = {}
        self._typical: dict[tuple[str, str], RequestScorer] = {}

    @property
    def estimates(self) -> dict[tuple[str, str], AgentEstimate]:
        return self.stats.estimates

    def estimate_for(self, agent: Agent, capability: str) -> AgentEstimate:
        found = self.stats.estimates.get((agent.agent_id, capability))
        if found is not None:  # the hot path: no prior to work out
            return found
        return self.stats.estimate(
            agent.agent_id, capability, prior_success(agent.proficiency(capability))
        )

    def _seen(self, candidates: list[Agent], capability: str) -> None:
        """Tell the statistics each candidate's prior, so its first outcome starts from it
        whether or not a ranking has looked at the agent (the bounded scan skips most)."""
        priors = self.stats.priors
        for agent in candidates:
            key = (agent.agent_id, capability)
            if key not in priors:
                priors[key] = prior_success(agent.proficiency(capability))

    def predicted_failure(
        self, agent: Agent, request: SelectionRequest, model: CompactFailureModel
    ) -> tuple[float, dict[str, float]]:
        """p(this call fails) from the model, and the features it read (as of now)."""
        features = request_features(
            complexity=request.complexity,
            input_tokens=request.input_tokens,
            proficiency=agent.proficiency(request.capability),
            context_window_tokens=agent.context_window_tokens,
            timeout_s=request.timeout_s or DEFAULT_TIMEOUT_S,
            history=self.stats.history(agent.agent_id),
        )
        return model.probability(features, {"capability": request.capability}), features

    def _estimate(
        self,
        agent: Agent,
        request: SelectionRequest,
        scorer: RequestScorer | None,
        level: float | None = None,
    ) -> Estimate:
        est = self.estimate_for(agent, request.capability)
        latency = est.latency_mean() or float(
            agent.provider.config.get("latency_median_ms", DEFAULT_LATENCY_MS)
        )
        if level is None:
            level = self._level(agent, est)
        if scorer is not None:
            typical = self._typical_scorer(scorer.model, request.capability)
            shift = scorer.shift_from(
                typical, agent.context_window_tokens, self.stats.history(agent.agent_id)
            )
            success = 1.0 - anchored_failure(1.0 - level, shift, 0.0)
        else:
            success = level
        window = agent.context_window_tokens
        if window is not None and request.input_tokens > window:
            success = 0.0  # the agent rejects the prompt: known before the call, not a guess
        price = estimated_cost(agent, request.input_tokens)
        return Estimate(
            success=success,
            # price x the prompt: what *this* call costs, not the average of past ones
            cost_usd=price,
            latency_ms=latency,
            latency_p95_ms=est.latency_p95() or latency * 2.0,
            load=self.in_flight.get(agent.agent_id, 0) / max(1, agent.max_concurrency),
            # every failure charged the full price: a per-agent average of what failures
            # cost (timeouts and rate limits are free, bad answers billed) mixes failure
            # modes the request decides, and measured worse on the development seeds
            failed_cost_usd=None,
        )

    def _evaluator(
        self, request: SelectionRequest, scorer: RequestScorer | None, now: float
    ) -> Callable[[Agent, float | None], Scored | None]:
        """What both scans ask of each candidate, for one request: None when it does not
        qualify (``_qualifies``) or breaks a limit (``within_limits``), else its ``order_value``,
        its estimate (``_estimate``), cost and latency of success. The same arithmetic in the
        same order as those functions (a test holds them equal to the bit), with what the
        request fixes read once and the failure model's shift worked out once per context
        window and latency median. ``level`` None: the agent's own (``_level``)."""
        capability = request.capability
        tokens = request.input_tokens
        out_tokens = int(tokens * 0.6)  # estimated_cost's output
        exclude = request.exclude
        least = max(1, request.min_proficiency)
        allows = self.breakers.allows
        estimates, histories = self.stats.estimates, self.stats.histories
        in_flight = self.in_flight
        budget = request.budget_usd
        deadline_ms = None if request.deadline_s is None else request.deadline_s * 1000
        w_s, w_c, w_l, w_load = WEIGHTS[request.optimize]
        typical = None if scorer is None else self._typical_scorer(scorer.model, capability)
        shifts: dict[tuple[int | None, float], float] = {}

        def evaluate(agent: Agent, level: float | None) -> Scored | None:
            agent_id = agent.agent_id
            if (
                agent_id in exclude
                or agent.proficiency(capability) < least
                or not allows(agent_id, now)
            ):
                return None
            est = estimates.get((agent_id, capability))
            if est is None:
                est = self.estimate_for(agent, capability)
            latency = est.latency_mean() or float(
                agent.provider.config.get("latency_median_ms", DEFAULT_LATENCY_MS)
            )
            if level is None:
                level = self._level(agent, est)
            window = agent.context_window_tokens
            if scorer is not None:
                assert typical is not None
                history = histories.get(agent_id)
                p50 = (
                    MODEL_DEFAULT_LATENCY_MS
                    if history is None
                    else history.latency_p50_ms or MODEL_DEFAULT_LATENCY_MS
                )
                shift = shifts.get((window, p50))
                if shift is None:
                    shift = shifts[(window, p50)] = scorer.shift_from(typical, window, history)
                success = 1.0 - anchored_failure(1.0 - level, shift, 0.0)
            else:
                success = level
            if window is not None and tokens > window:
                success = 0.0
            price = agent.pricing.cost(tokens, out_tokens)
            p95 = est.latency_p95() or latency * 2.0
            if budget is not None and price > budget:
                return None
            if deadline_ms is not None and p95 > deadline_ms:
                return None
            load = in_flight.get(agent_id, 0) / max(1, agent.max_concurrency)
            # cost_of_success, latency_of_success and order_value of the estimate
            p = max(MIN_SUCCESS, success)
            cost = price / MIN_SUCCESS if p <= MIN_SUCCESS else price + price * (1.0 - p) / p
            wait = latency / p
            value = (
                w_s * success
                - w_c * log2(max(cost, 1e-9))
                - w_l * log2(max(wait, 1e-3))
                - w_load * min(load, 2.0)
            )
            return Scored(value, success, price, latency, p95, load, cost, wait)

        return evaluate

    def _level(self, agent: Agent, est: AgentEstimate) -> float:
        """The agent's success level for this call: a Thompson sample, or the posterior mean."""
        return est.sample(self.rng) if self.explore else est.mean

    def _levels(self, index: BoundIndex, slots: np.ndarray) -> np.ndarray:
        """Thompson samples for a block of the index's agents (slots), one numpy call: the
        same Beta posteriors ``_level`` draws from."""
        return self.np_rng.beta(index.alpha[slots], index.beta[slots])

    def _qualifies(self, agent: Agent, request: SelectionRequest, now: float) -> bool:
        return (
            agent.agent_id not in request.exclude
            and agent.proficiency(request.capability) >= max(1, request.min_proficiency)
            and self.breakers.allows(agent.agent_id, now)
        )

    def _bound_key(self, agent: Agent, capability: str, objective: str) -> BoundKey:
        """The request-independent part of the agent's score bound (higher is better): its
        price on a typical prompt and latency, plus its posterior mean unless the level is
        sampled (a draw is added per block of agents, ``_scan``); and what ``_estimate``
        reads of its statistics, for the index to estimate a block at a time."""
        est = self.estimate_for(agent, capability)
        declared = float(agent.provider.config.get("latency_median_ms", DEFAULT_LATENCY_MS))
        latency = est.latency_mean() or declared
        static = static_term(estimated_cost(agent, TYPICAL_TOKENS), latency, objective)
        history = self.stats.history(agent.agent_id)
        p50 = (history.latency_p50_ms if history else None) or MODEL_DEFAULT_LATENCY_MS
        key = static if self.explore else success_term(est.mean, objective) + static
        return BoundKey(
            key,
            static,
            math.log(p50),
            est.alpha,
            est.beta,
            p50=p50,
            latency=latency,
            p95=est.latency_p95() or latency * 2.0,
            mean=est.mean,
            proficiency=agent.proficiency(capability),
        )

    @staticmethod
    def _price_offset(request: SelectionRequest, index: BoundIndex) -> float:
        """How much more the request's prompt can make an agent's value than the typical
        prompt its key was priced with (+inf: no bound)."""
        m = price_scale(request.input_tokens, index.any_per_call)
        return -WEIGHTS[request.optimize][1] * math.log2(m) if m > 0.0 else math.inf

    def _scan(
        self,
        request: SelectionRequest,
        index: BoundIndex,
        scorer: RequestScorer | None,
        now: float,
    ) -> list[tuple[Agent, Scored]]:
        """The first ``shortlist``, levels read a block of the index at a time (ADR 0025).

        Thompson sampling: the key is the agent's price and latency; a block's levels are
        drawn in one numpy call, so a key can reach the k-th value with a draw of 1 (``top``).
        Posterior mean: the key holds the mean's success term too (ADR 0020), so a key can
        only gain the request's price headroom and what the failure model's easiest shift
        adds. Either way each agent's bound is its key plus what its level gives this request
        (its own window and latency median) and only those that reach the k-th value are
        estimated, best bound first."""
        assert self.shortlist is not None
        objective = request.optimize
        explore = self.explore
        # the request's prompt can raise a value by at most ``price`` over its key's pricing
        price = self._price_offset(request, index)
        shift_bound, top = None, success_term(1.0, objective) + price
        if scorer is not None:
            typical = self._typical_scorer(scorer.model, request.capability)
            shift_bound = ShiftBound(scorer, typical, index)
            if not explore:
                # a hair below the computed bound: it is found by probing the model's bin edges
                easiest = easiest_shift(scorer, typical, index.windows, index.log_p50) - 1e-6
                top = price + success_headroom(easiest, objective)
        elif not explore:
            top = price
        alpha, beta = index.alpha, index.beta
        # the windows the prompt is over (None: none is), by window code
        over = rejecting_windows(index, request.input_tokens)

        def levels(slots: np.ndarray) -> np.ndarray:
            if explore:
                return self._levels(index, slots)
            return alpha[slots] / (alpha[slots] + beta[slots])

        def reach(slots: np.ndarray, level: np.ndarray) -> np.ndarray:
            """The most each agent's value can be over its key, given its level: the success
            the failure model gives this request (its own window and latency), 0 when the
            prompt is over its window (``_estimate``'s success); no load."""
            success = level
            if shift_bound is not None:
                success = moved_successes(level, shift_bound.shifts(slots))
            if over is not None:
                success = np.where(over[index.window_codes[slots]], 0.0, success)
            gain = success_terms(success, objective) + price
            return gain if explore else gain - success_terms(level, objective)

        qualifies, evaluate = self._block_evaluator(request, scorer, index, over, now)
        return sampled_top(index, self.shortlist, top, levels, reach, qualifies, evaluate)

    def _block_evaluator(
        self,
        request: SelectionRequest,
        scorer: RequestScorer | None,
        index: BoundIndex,
        over: np.ndarray | None,
        now: float,
    ) -> tuple[Callable[[int], bool], Callable[[np.ndarray, np.ndarray], Block]]:
        """``_evaluator`` for the bounded scan, split in two: ``qualifies(slot)``, asked one
        agent at a time in the scan's order (a breaker may move to half-open when asked), and
        ``evaluate(slots, levels)``, which estimates a block of the index's agents at once
        from its arrays (ADR 0028): the same arithmetic in the same order, numpy for
        + - * / and Python's math for logarithms and exponentials (numpy's may differ in the
        last bit), so each value is the one the full scan computes."""
        capability = request.capability
        tokens = request.input_tokens
        input_k, output_k = tokens / 1000, int(tokens * 0.6) / 1000  # Pricing.cost's
        exclude = request.exclude
        least = max(1, request.min_proficiency)
        board, breakers = self.breakers, self.breakers.breakers
        in_flight = self.in_flight
        ids, proficiencies, concurrency = index.ids, index.proficiencies, index.concurrency
        windows, codes = index.window_list, index.window_codes
        budget = request.budget_usd
        deadline_ms = None if request.deadline_s is None else request.deadline_s * 1000
        w_s, w_c, w_l, w_load = WEIGHTS[request.optimize]
        explore = self.explore
        typical = None if scorer is None else self._typical_scorer(scorer.model, capability)
        shifts: dict[tuple[int, float], float] = {}

        def qualifies(slot: int) -> bool:
            agent_id = ids[slot]
            if agent_id in exclude or proficiencies[slot] < least:
                return False
            # no breaker yet, or a closed one: ``allows`` says yes and moves nothing (it would
            # create the missing one, closed)
            breaker = breakers.get(agent_id)
            return breaker is None or breaker.state is CLOSED or board.allows(agent_id, now)

        def evaluate(slots: np.ndarray, levels: np.ndarray) -> Block:
            level = levels if explore else index.means[slots]
            if scorer is not None:
                assert typical is not None
                moved = []
                for code, p50 in zip(
                    codes[slots].tolist(), index.p50s[slots].tolist(), strict=True
                ):
                    shift = shifts.get((code, p50))
                    if shift is None:
                        shift = shifts[(code, p50)] = scorer.shift_at(typical, windows[code], p50)
                    moved.append(shift)
                success = anchored_successes(level, np.array(moved))
            else:
                success = level
            if over is not None:
                success = np.where(over[codes[slots]], 0.0, success)
            price = index.per_call[slots] + input_k * index.per_input[slots]
            price += output_k * index.per_output[slots]
            latency, p95 = index.latencies[slots], index.p95s[slots]
            p = np.maximum(MIN_SUCCESS, success)
            cost = np.where(p <= MIN_SUCCESS, price / MIN_SUCCESS, price + price * (1.0 - p) / p)
            wait = latency / p
            if in_flight:
                loads = [
                    count / max(1, concurrency[s]) if (count := in_flight.get(ids[s], 0)) else 0.0
                    for s in slots.tolist()
                ]
            else:
                loads = [0.0] * len(slots)
            # order_value: w_s p - w_c log2(cost) - w_l log2(wait) - w_load min(load, 2)
            value = w_s * success - w_c * logs2(np.maximum(cost, 1e-9))
            value -= w_l * logs2(np.maximum(wait, 1e-3))
            value -= w_load * np.minimum(loads, 2.0)
            values: list[float | None] = value.tolist()
            if budget is not None or deadline_ms is not None:
                within = np.ones(len(slots), dtype=bool)
                if budget is not None:
                    within &= price <= budget
                if deadline_ms is not None:
                    within &= p95 <= deadline_ms
                for i in np.flatnonzero(~within).tolist():
                    values[i] = None
            return Block(
                values,
                success.tolist(),
                price.tolist(),
                latency.tolist(),
                p95.tolist(),
                loads,
                cost.tolist(),
                wait.tolist(),
            )

        return qualifies, evaluate

    def _typical_scorer(self, model: CompactFailureModel, capability: str) -> RequestScorer:
        """The model's view of a typical request for ``capability`` (the anchor of
        ``anchored_failure``), built once per model version."""
        scorer = self._typical.get((model.version, capability))
        if scorer is None or scorer.model is not model:
            scorer = self._typical[(model.version, capability)] = RequestScorer(
                model,
                capability=capability,
                complexity=TYPICAL_COMPLEXITY,
                input_tokens=TYPICAL_INPUT_TOKENS,
                timeout_s=DEFAULT_TIMEOUT_S,
            )
        return scorer

    def _index(self, request: SelectionRequest, candidates: list[Agent]) -> BoundIndex:
        # one index per candidate list (the runtime caches one per tenant and capability),
        # the least recently used dropped past ``max_indexes``
        key = (request.capability, request.optimize, id(candidates))
        index = self._indexes.get(key)
        if index is None or index.agents is not candidates:
            self._seen(candidates, request.capability)
            index = BoundIndex.build(
                candidates,
                lambda a: self._bound_key(a, request.capability, request.optimize),
            )
            self._indexes.pop(key, None)  # a list that reused a dropped one's id
            self._indexes[key] = index  # the most recently used
            self._pending.pop(key, None)
            while len(self._indexes) > self.max_indexes:
                dropped, _ = self._indexes.popitem(last=False)
                self._pending.pop(dropped, None)
        else:
            try:
                self._indexes.move_to_end(key)
            except KeyError:  # dropped meanwhile by a call on another thread
                self._indexes[key] = index
        for agent_id in self._pending.pop(key, set()) & index.keys.keys():
            index.move(
                agent_id,
                self._bound_key(index.by_id[agent_id], request.capability, request.optimize),
            )
        return index

    def _note_changes(self) -> None:
        """Hand the agents whose statistics changed to every index (moved on next use)."""
        if self.stats.touched:
            for key in tuple(self._indexes):  # a copy: another thread may use the cache
                self._pending.setdefault(key, set()).update(self.stats.touched)
            self.stats.touched.clear()

    def rank(self, request: SelectionRequest, candidates: list[Agent]) -> list[ScoredAgent]:
        if _on_event_loop():
            self.stats.poll()  # the store is read on a background thread, never on the loop
        else:
            self.stats.sync()
        self._note_changes()
        model = self.predictor() if self.predictor is not None else None
        scorer = (
            None
            if model is None
            else RequestScorer(
                model,
                capability=request.capability,
                complexity=request.complexity,
                input_tokens=request.input_tokens,
                timeout_s=request.timeout_s or DEFAULT_TIMEOUT_S,
            )
        )
        now = self.clock()

        qualified: list[tuple[Agent, Scored]]
        if self.shortlist is None or len(candidates) <= 2 * self.shortlist:
            self._seen(candidates, request.capability)
            evaluate = self._evaluator(request, scorer, now)
            qualified = [(a, found) for a in candidates if (found := evaluate(a, None)) is not None]
        else:
            index = self._index(request, candidates)
            qualified = self._scan(request, index, scorer, now)
        if not qualified:
            return []
        # scoring.score of each, from the cost and latency of success the scan worked out
        cheapest = min(found.cost for _, found in qualified)
        fastest = min(found.wait for _, found in qualified)
        least_cost, least_wait = max(cheapest, 1e-9), max(fastest, 1e-3)
        w_s, w_c, w_l, w_load = WEIGHTS[request.optimize]
        # best first, ties by agent id: sorted on (-score, agent id, place)
        order = sorted(
            (
                -(
                    w_s * found.success
                    - w_c * log2(max(found.cost, 1e-9) / least_cost)
                    - w_l * log2(max(found.wait, 1e-3) / least_wait)
                    - w_load * min(found.load, 2.0)
                ),
                agent.agent_id,
                i,
            )
            for i, (agent, found) in enumerate(qualified)
        )
        explained = self.explained
        ranked = []
        for rank, (value, _, i) in enumerate(order):
            agent, found = qualified[i]
            ranked.append(
                ScoredAgent(
                    agent,
                    -value,
                    found.success,
                    found.price,
                    found.latency,
                    # words for people: for the leaders only, spelled out when read
                    self._explain(agent, found.estimate(), request, cheapest, fastest, model)
                    if rank < explained
                    else (),
                )
            )
        return ranked

    def _explain(
        self,
        agent: Agent,
        e: Estimate,
        request: SelectionRequest,
        cheapest: float,
        fastest: float,
        model: CompactFailureModel | None,
    ) -> Reasons:
        """The agent's reasons, from the numbers known now (read later, they say the same)."""
        agent_id = agent.agent_id
        est = self.estimate_for(agent, request.capability)
        history = self.stats.history(agent_id) if model is not None else None
        return Reasons(
            partial(
                _reasons,
                agent,
                e,
                request,
                cheapest,
                fastest,
                model,
                None if history is None else HistoryNumbers.of(history),
                est.mean,
                est.observations,
                self.explore,
                self.in_flight.get(agent_id, 0),
                self.breakers.state(agent_id).value,
            )
        )

    def record(self, outcome: Outcome) -> None:
        self.stats.record(outcome)
        self.breakers.record(outcome.agent_id, not outcome.availability_failure, self.clock())

    def acquire(self, agent_id: str) -> None:
        self.in_flight[agent_id] = self.in_flight.get(agent_id, 0) + 1
        self.breakers.get(agent_id).on_call()

    def release(self, agent_id: str) -> None:
        self.in_flight[agent_id] = max(0, self.in_flight.get(agent_id, 0) - 1)

    def drain_transitions(self) -> list[Transition]:
        return self.breakers.drain()


def _reasons(
    agent: Agent,
    e: Estimate,
    request: SelectionRequest,
    cheapest: float,
    fastest: float,
    model: CompactFailureModel | None,
    history: HistoryNumbers | None,
    level: float,
    observations: int,
    explore: bool,
    load: int,
    breaker: str,
) -> tuple[str, ...]:
    """Why an agent scored as it did, in words (``SmartRouter._explain`` keeps the numbers)."""
    if model is not None:
        features = request_features(
            complexity=request.complexity,
            input_tokens=request.input_tokens,
            proficiency=agent.proficiency(request.capability),
            context_window_tokens=agent.context_window_tokens,
            timeout_s=request.timeout_s or DEFAULT_TIMEOUT_S,
            history=history,
        )
        pushes = ", ".join(
            f"{name} {features.get(name, float('nan')):.3g} ({weight:+.2f})"
            for name, weight in model.contributions(features, {"capability": request.capability})
        )
        success = (
            f"p(fail) {1.0 - e.success:.3f} predicted by failure model v{model.version} "
            f"from the agent's posterior level {1.0 - level:.3f} ({observations} outcomes seen) "
            f"and this request against a typical one (largest terms: {pushes})"
        )
    else:
        success = (
            f"success {e.success:.2f} ({'sampled' if explore else 'mean'} of the "
            f"posterior, {observations} outcomes seen; no failure model loaded)"
        )
    attempts = 1.0 / max(MIN_SUCCESS, e.success)
    return (
        success,
        f"cost of success ${cost_of_success(e):.5f} over {attempts:.2f} expected attempts "
        f"at ${e.cost_usd:.5f}, a failure billed "
        f"${e.cost_usd if e.failed_cost_usd is None else e.failed_cost_usd:.5f} "
        f"({cost_of_success(e) / max(cheapest, 1e-12):.1f}x the cheapest)",
        f"latency with retries {latency_of_success(e):.0f} ms "
        f"({latency_of_success(e) / max(fastest, 1e-9):.1f}x the fastest)",
        f"load {load}/{agent.max_concurrency}",
        f"breaker {breaker}",
        f"objective {request.optimize}",
    )


def default_router(
    store: object | None = None, *, seed: int = 7, explore: bool = True, explained: int = EXPLAINED
) -> SmartRouter:
    """The product's router: statistics shared through ``store`` (when given) and, when
    ``NOFX_ROUTING_MODEL`` names a registered model, its MLflow champion as the predictor
    (polled every ``NOFX_ROUTING_MODEL_POLL_S`` seconds, 60 by default)."""

    from nofx.routing.prediction import ChampionWatcher, mlflow_champion_loader

    stats = LearnedStats(feed=store) if store is not None and hasattr(store, "read_all") else None
    predictor: Predictor | None = None
    from nofx.settings import Settings

    settings = Settings.from_env()
    name = settings.routing_model
    if name:
        uri, interval = settings.mlflow_tracking_uri, settings.routing_model_poll_s
        predictor = ChampionWatcher(mlflow_champion_loader(name, uri), interval).start()
    return SmartRouter(
        seed=seed, explore=explore, stats=stats, predictor=predictor, explained=explained
    )


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
