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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from nofx.domain import Agent
from nofx.routing.bounded import SLACK, BoundIndex
from nofx.routing.prediction import MARGIN_CAP, MARGIN_FLOOR, BinnedTerm, RequestScorer
from nofx.routing.scoring import MIN_SUCCESS, WEIGHTS, Estimate

# the first block fills the k best; later ones grow 8x, cut where no key can reach the guess
FIRST_BLOCK = 64


class Scored(NamedTuple):
    """What the scans keep of a candidate: its order value, its estimate's numbers, its cost
    and latency of success (``Estimate`` objects are built for the reasons only)."""

    value: float
    success: float
    price: float
    latency: float
    p95: float
    load: float
    cost: float  # cost_of_success
    wait: float  # latency_of_success

    def estimate(self) -> Estimate:
        return Estimate(self.success, self.price, self.latency, self.p95, self.load)


# the scan estimates the agents it visits this many at a time (k + CHUNK_EXTRA): it usually
# stops a few agents past the k-th
CHUNK_EXTRA = 8


@dataclass(frozen=True)
class Block:
    """A block of agents estimated at once: each one's order value (None: over a limit),
    its estimate's numbers, cost and latency of success."""

    values: list[float | None]
    success: list[float]
    price: list[float]
    latency: list[float]
    p95: list[float]
    loads: list[float]
    cost: list[float]
    wait: list[float]

    def scored(self, i: int) -> Scored:
        value = self.values[i]
        assert value is not None
        return Scored(
            value,
            self.success[i],
            self.price[i],
            self.latency[i],
            self.p95[i],
            self.loads[i],
            self.cost[i],
            self.wait[i],
        )


def success_terms(p: np.ndarray, objective: str) -> np.ndarray:
    """``bounded.success_term`` over an array."""
    w_s, w_c, w_l, _ = WEIGHTS[objective]
    return w_s * p + (w_c + w_l) * np.log2(np.maximum(MIN_SUCCESS, p))


def moved_successes(p: np.ndarray, shift: float | np.ndarray) -> np.ndarray:
    """``bounded.moved_success`` over an array: success after the failure log-odds move by
    ``shift`` (``anchored_failure``'s clamps included). The clamps are ``np.clip``'s own
    arithmetic (maximum, then minimum) without its per-call overhead."""
    q = np.minimum(np.maximum(1.0 - p, 1e-9), 1.0 - 1e-9)
    z = np.log(q / (1.0 - q))
    z += shift
    np.maximum(z, -700.0, out=z)
    np.minimum(z, 700.0, out=z)
    np.negative(z, out=z)
    e = np.exp(z)
    e += 1.0
    np.divide(1.0, e, out=e)
    return np.subtract(1.0, e, out=e)


def logs2(x: np.ndarray) -> np.ndarray:
    """``math.log2`` of each element: numpy's own log2 may differ from it in the last bit,
    and the scan's values are the full scan's to the bit."""
    return np.array(list(map(math.log2, x.tolist())), dtype=float)


def anchored_successes(level: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``1 - anchored_failure(1 - level, shift, 0.0)`` per element, to the bit: numpy for the
    clamps and + - * /, Python's math for the log and exp."""
    p = np.minimum(np.maximum(1.0 - level, 1e-9), 1.0 - 1e-9)
    z = np.array(list(map(math.log, (p / (1.0 - p)).tolist())), dtype=float)
    z += shift
    # exp(-z) where -700 < z <= 700 (clamped elsewhere only to stay finite: not used there)
    e = np.array(list(map(math.exp, np.minimum(np.maximum(-z, -700.0), 700.0).tolist())))
    failure = np.where(z > 700.0, 1.0, np.where(z > -700.0, 1.0 / (1.0 + e), 0.0))
    return 1.0 - failure


# the probes' offsets: -d, +d, -d, +d
_SIDES = np.array([[-1e-9], [1e-9], [-1e-9], [1e-9]])
# by id of the term: the term (held, so the id is not reused) and its arrays
_TERMS: dict[int, tuple[BinnedTerm, tuple[np.ndarray, np.ndarray, float | None]]] = {}


def _term_arrays(term: BinnedTerm) -> tuple[np.ndarray, np.ndarray, float | None]:
    """A binned term's edges and weights as arrays, and its slope (None when the slope term
    adds nothing: a zero slope, and no weight a negative zero that adding +0.0 would flip);
    worked out once per term (a model's terms live as long as the model)."""
    found = _TERMS.get(id(term))
    if found is not None and found[0] is term:
        return found[1]
    weights = np.asarray(term.weights, dtype=float)
    inert = term.slope == 0.0 and not np.any((weights == 0.0) & np.signbit(weights))
    arrays = np.asarray(term.edges, dtype=float), weights, None if inert else term.slope
    if len(_TERMS) >= 64:  # models come and go (a new champion): start again
        _TERMS.clear()
    _TERMS[id(term)] = (term, arrays)
    return arrays


def _weights(
    edges: np.ndarray, weights: np.ndarray, slope: float | None, clipped: np.ndarray
) -> np.ndarray:
    """``BinnedTerm.weight`` over an array of margins already clipped."""
    found = weights[np.searchsorted(edges, clipped, side="left")]
    if slope is not None:
        found += slope * clipped
    return found


class ShiftBound:
    """A lower bound (by rounding only) of ``request.shift_from(typical, window, history)``
    per agent: the context fill per distinct window, the timeout margin from each agent's log
    latency median. A margin a rounding away from a bin edge may land in either bin, so each
    side of it is read and the lower request weight (higher typical weight) kept. Built once
    per request; ``shifts`` is a few numpy calls per block of agents (the four probes of each
    agent in one array)."""

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
        self.origins = np.array([self.request_x, self.request_x, self.typical_x, self.typical_x])
        self.request_term = _term_arrays(request.margin)
        self.typical_term = _term_arrays(typical.margin)

    def shifts(self, slots: np.ndarray) -> np.ndarray:
        # rows: x - dx, x + dx, y - dy, y + dy (x: the request's margin, y: the typical one's,
        # d: 1e-9 * (1 + |x|)); x - d computed as x + (-d), the same number
        probes = np.subtract.outer(self.origins, self.index.log_p50s[slots])
        d = np.abs(probes)
        d += 1.0
        d *= _SIDES
        probes += d
        np.maximum(probes, MARGIN_FLOOR, out=probes)
        np.minimum(probes, MARGIN_CAP, out=probes)
        if self.request_term is self.typical_term:  # one model: one lookup for both
            weights = _weights(*self.request_term, probes)
            request, typical = weights[:2], weights[2:]
        else:
            request = _weights(*self.request_term, probes[:2])
            typical = _weights(*self.typical_term, probes[2:])
        least = np.minimum(request[0], request[1])
        found = self.fill[self.index.window_codes[slots]]
        found += least
        found -= np.maximum(typical[0], typical[1], out=least)
        return found


def request_shifts(
    request: RequestScorer, typical: RequestScorer, index: BoundIndex, slots: np.ndarray
) -> np.ndarray:
    """``ShiftBound(request, typical, index).shifts(slots)``."""
    return ShiftBound(request, typical, index).shifts(slots)


def rejecting_windows(index: BoundIndex, input_tokens: int) -> np.ndarray | None:
    """By window code, whether a prompt of ``input_tokens`` is over the window; None when it
    is over none of the index's windows."""
    over = np.array([w is not None and input_tokens > w for w in index.window_list])
    return over if over.any() else None


def rejected(index: BoundIndex, input_tokens: int, slots: np.ndarray) -> np.ndarray:
    """Which agents of ``slots`` reject a prompt of ``input_tokens`` (over their window)."""
    over = np.array([w is not None and input_tokens > w for w in index.window_list])
    return over[index.window_codes[slots]]


def _best_first(bounds: np.ndarray, live: np.ndarray, size: int) -> Iterator[np.ndarray]:
    """``live`` (ascending places in ``bounds``) best bound first, equal bounds in place
    order (a stable sort's order), ``size`` at a time: sorted a group at a time (the
    ``size`` best and any equal to the last of them), as the scan usually stops within the
    first group."""
    negs = -bounds[live]
    while len(live):
        if len(live) > 2 * size:
            cut = np.partition(negs, size - 1)[size - 1]
            first = negs <= cut
            group, group_negs = live[first], negs[first]
            live, negs = live[~first], negs[~first]
        else:
            group, group_negs, live = live, negs, live[:0]
        group = group[np.argsort(group_negs, kind="stable")]
        for start in range(0, len(group), size):
            yield group[start : start + size]


def sampled_top(
    index: BoundIndex,
    k: int,
    top: float,
    draw: Callable[[np.ndarray], np.ndarray],
    reach: Callable[[np.ndarray, np.ndarray], np.ndarray],
    qualifies: Callable[[int], bool],
    evaluate: Callable[[np.ndarray, np.ndarray], Block],
) -> list[tuple[Agent, Scored]]:
    """The k candidates with the highest exact value (ties: smaller agent id first) under
    Thompson sampling. ``draw(slots)`` gives the levels of a block of agents;
    ``reach(slots, levels)`` bounds each one's value less its key (so ``top`` >= the reach of
    a level of 1); ``qualifies(slot)`` is asked of each agent visited, in order;
    ``evaluate(slots, levels)`` estimates a block of agents (values and estimates).

    Agents are drawn best key first while their key + ``top`` can reach a guess of the k-th
    value (the k-th best bound drawn so far), then visited best bound first while their
    bound can reach the k-th exact value (estimated ``k + CHUNK_EXTRA`` at a time, in that
    order). Visiting in bound order over everything drawn, not block by block, keeps the
    estimates near k: an agent far down the keys with a lucky draw is compared with the best
    of the whole draw. When the exact k-th value is below the guess, the keys it still lets
    in are drawn too: an agent never drawn has key + ``top`` below the k-th value, one drawn
    and not visited has a bound below it."""
    # the k best, worst on top: (value, tie rank, slot, block, place in the block)
    heap: list[tuple[float, int, int, Block, int]] = []
    floor = -math.inf
    negkeys, ranked = index.ranked_negkeys, index.ranked_slots
    agents, ties = index.agents, index.ties
    n, at, block = len(ranked), 0, max(FIRST_BLOCK, 2 * k)
    chunk_size = k + CHUNK_EXTRA
    while True:
        drawn: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (slots, levels, bounds)
        count = 0
        while at < n:
            guess = floor
            if count >= k:
                bounds = drawn[0][2] if len(drawn) == 1 else np.concatenate([b for *_, b in drawn])
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
            if len(drawn) == 1:
                slots, levels, bounds = drawn[0]
            else:
                slots = np.concatenate([s for s, _, _ in drawn])
                levels = np.concatenate([lv for _, lv, _ in drawn])
                bounds = np.concatenate([b for _, _, b in drawn])
            stop = False
            for chunk in _best_first(bounds, np.flatnonzero(bounds >= floor), chunk_size):
                chunk_slots = slots[chunk]
                found = evaluate(chunk_slots, levels[chunk])
                for i, (bound, slot) in enumerate(
                    zip(bounds[chunk].tolist(), chunk_slots.tolist(), strict=True)
                ):
                    if len(heap) >= k and bound < floor:
                        stop = True  # every bound left is below the floor too
                        break
                    if not qualifies(slot):
                        continue
                    value = found.values[i]
                    if value is None:
                        continue
                    rank = ties[slot]
                    if len(heap) < k:
                        heapq.heappush(heap, (value, rank, slot, found, i))
                    elif value > heap[0][0] or (value == heap[0][0] and rank > heap[0][1]):
                        heapq.heapreplace(heap, (value, rank, slot, found, i))
                    else:
                        continue
                    if len(heap) >= k:
                        value = heap[0][0]
                        floor = value - SLACK * (1.0 + abs(value))
                if stop:
                    break
        if at >= n or (len(heap) >= k and -negkeys[at] + top < floor):
            return [(agents[slot], found.scored(i)) for _, _, slot, found, i in heap]
