"""Thompson sampling's top k without a Python call per candidate drawn (ADR 0025).

Under Thompson sampling an agent's value is capped by its *draw*, not its posterior mean, and
a draw can be anything up to 1: the bounded scan (ADR 0020) has to draw for
every agent whose price and latency alone leave it within ``success_term(1)`` of the k-th
value, ~100 agents of bench.orchestration's ~1,500 per capability and whole tied groups
(~400) of a fleet with few distinct prices. Drawing them one by one in Python cost ~10 us
each. Here the index is walked in blocks: one numpy call draws the block's levels from the
same Beta posteriors, one more turns them into each agent's bound (the success term of the
highest success the level can give this request, plus the agent's key and the request's
price headroom), and only the agents whose bound reaches the k-th value are estimated
exactly, best bound first. The stop rule is ADR 0020's: a key below the k-th value less
``top`` (a draw of 1) cannot reach it, so the result is the full scan's first k for the
same draws, and the draws are Thompson sampling's (numpy's Beta sampler instead of Python's:
the same distribution, other numbers for one seed). The posterior-mean ranking runs the same
scan with each agent's mean for its level and the mean in its key (``SmartRouter._scan``).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable

import numpy as np

from nofx.domain import Agent
from nofx.routing.bounded import SLACK, BoundIndex
from nofx.routing.prediction import MARGIN_CAP, MARGIN_FLOOR, RequestScorer
from nofx.routing.scoring import MIN_SUCCESS, WEIGHTS, Estimate

# the first block fills the k best; later ones grow 8x, cut where no key can reach the guess
FIRST_BLOCK = 64


def success_terms(p: np.ndarray, objective: str) -> np.ndarray:
    """``bounded.success_term`` over an array."""
    w_s, w_c, w_l, _ = WEIGHTS[objective]
    return w_s * p + (w_c + w_l) * np.log2(np.maximum(MIN_SUCCESS, p))


def moved_successes(p: np.ndarray, shift: float | np.ndarray) -> np.ndarray:
    """``bounded.moved_success`` over an array: success after the failure log-odds move by
    ``shift`` (``anchored_failure``'s clamps included)."""
    q = np.clip(1.0 - p, 1e-9, 1.0 - 1e-9)
    z = np.clip(np.log(q / (1.0 - q)) + shift, -700.0, 700.0)
    return 1.0 - 1.0 / (1.0 + np.exp(-z))


def _weights(edges: np.ndarray, weights: np.ndarray, slope: float, x: np.ndarray) -> np.ndarray:
    """``BinnedTerm.weight`` of the clipped margin over an array."""
    clipped = np.clip(x, MARGIN_FLOOR, MARGIN_CAP)
    return weights[np.searchsorted(edges, clipped, side="left")] + slope * clipped


class ShiftBound:
    """A lower bound (by rounding only) of ``request.shift_from(typical, window, history)``
    per agent: the context fill per distinct window, the timeout margin from each agent's log
    latency median. A margin a rounding away from a bin edge may land in either bin, so each
    side of it is read and the lower request weight (higher typical weight) kept. Built once
    per request; ``shifts`` is a few numpy calls per block of agents."""

    def __init__(self, request: RequestScorer, typical: RequestScorer, index: BoundIndex):
        self.index = index
        fill = [
            request.fill.weight(request.input_tokens / w if w else 0.0)
            - typical.fill.weight(typical.input_tokens / w if w else 0.0)
            for w in index.window_list
        ]
        self.fill = request.base - typical.base + np.array(fill) - 1e-9
        self.request_x = math.log(request.timeout_ms / (1.0 + request.complexity))
        self.typical_x = math.log(typical.timeout_ms / (1.0 + typical.complexity))
        self.terms = [
            (np.asarray(t.edges, dtype=float), np.asarray(t.weights, dtype=float), t.slope)
            for t in (request.margin, typical.margin)
        ]

    def shifts(self, slots: np.ndarray) -> np.ndarray:
        log_p50 = self.index.log_p50s[slots]
        (r_edges, r_weights, r_slope), (t_edges, t_weights, t_slope) = self.terms
        x = self.request_x - log_p50
        y = self.typical_x - log_p50
        dx = 1e-9 * (1.0 + np.abs(x))
        dy = 1e-9 * (1.0 + np.abs(y))
        request = np.minimum(
            _weights(r_edges, r_weights, r_slope, x - dx),
            _weights(r_edges, r_weights, r_slope, x + dx),
        )
        typical = np.maximum(
            _weights(t_edges, t_weights, t_slope, y - dy),
            _weights(t_edges, t_weights, t_slope, y + dy),
        )
        return self.fill[self.index.window_codes[slots]] + request - typical


def request_shifts(
    request: RequestScorer, typical: RequestScorer, index: BoundIndex, slots: np.ndarray
) -> np.ndarray:
    """``ShiftBound(request, typical, index).shifts(slots)``."""
    return ShiftBound(request, typical, index).shifts(slots)


def rejected(index: BoundIndex, input_tokens: int, slots: np.ndarray) -> np.ndarray:
    """Which agents of ``slots`` reject a prompt of ``input_tokens`` (over their window)."""
    over = np.array([w is not None and input_tokens > w for w in index.window_list])
    return over[index.window_codes[slots]]


def sampled_top(
    index: BoundIndex,
    k: int,
    top: float,
    draw: Callable[[np.ndarray], np.ndarray],
    reach: Callable[[np.ndarray, np.ndarray], np.ndarray],
    evaluate: Callable[[Agent, float], tuple[float, Estimate] | None],
) -> list[tuple[Agent, Estimate]]:
    """The k candidates with the highest exact value (ties: smaller agent id first) under
    Thompson sampling. ``draw(slots)`` gives the levels of a block of agents;
    ``reach(slots, levels)`` bounds each one's value less its key (so ``top`` >= the reach of
    a level of 1); ``evaluate(agent, level)`` returns (value, estimate), or None when the
    agent does not qualify.

    Agents are drawn best key first while their key + ``top`` can reach a guess of the k-th
    value (the k-th best bound drawn so far), then estimated best bound first while their
    bound can reach the k-th exact value. Estimating in bound order over everything drawn,
    not block by block, keeps the estimates near k: an agent far down the keys with a lucky
    draw is compared with the best of the whole draw. When the exact k-th value is below the
    guess, the keys it still lets in are drawn too: an agent never drawn has key + ``top``
    below the k-th value, one drawn and not estimated has a bound below it."""
    heap: list[tuple[float, int, Agent, Estimate]] = []  # the k best, worst on top
    floor = -math.inf
    negkeys, ranked = index.ranked_negkeys, index.ranked_slots
    agents, tie = index.agents, index.tie
    n, at, block = len(ranked), 0, max(FIRST_BLOCK, 2 * k)
    while True:
        drawn: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (slots, levels, bounds)
        count = 0
        while at < n:
            guess = floor
            if count >= k:
                bounds = np.concatenate([b for _, _, b in drawn])
                guess = max(guess, float(np.partition(bounds, count - k)[count - k]))
            end = min(n, at + block)
            if guess > -math.inf:
                # the first agent whose key + top is below the guess, and every one after it
                end = min(end, int(np.searchsorted(negkeys, top - guess, side="right")))
            if end <= at:
                break
            slots = ranked[at:end]
            levels = draw(slots)
            drawn.append((slots, levels, reach(slots, levels) - negkeys[at:end]))
            count += end - at
            at, block = end, 8 * block  # later blocks stop at the guess's cut anyway
        if drawn:
            slots = np.concatenate([s for s, _, _ in drawn])
            levels = np.concatenate([lv for _, lv, _ in drawn])
            bounds = np.concatenate([b for _, _, b in drawn])
            live = np.flatnonzero(bounds >= floor)
            for i in live[np.argsort(-bounds[live], kind="stable")].tolist():
                if len(heap) >= k and bounds[i] < floor:
                    break  # every bound left is below the floor too
                agent = agents[slots[i]]
                found = evaluate(agent, float(levels[i]))
                if found is None:
                    continue
                item = (found[0], tie[agent.agent_id], agent, found[1])
                if len(heap) < k:
                    heapq.heappush(heap, item)
                elif item[:2] > heap[0][:2]:
                    heapq.heapreplace(heap, item)
                else:
                    continue
                if len(heap) >= k:
                    value = heap[0][0]
                    floor = value - SLACK * (1.0 + abs(value))
        if at >= n or (len(heap) >= k and -negkeys[at] + top < floor):
            return [(agent, e) for _, _, agent, e in heap]
