"""Exact top-k selection without scoring every candidate (ADR 0020).

``scoring.score`` compares each candidate with the request's cheapest and fastest, but those
references shift every candidate's score by the same amount, so the *order* is fixed by a
per-candidate value (``order_value``):

    v = f(p) - w_cost * log2(price) - w_latency * log2(latency) - w_load * load
    f(p) = w_success * p + (w_cost + w_latency) * log2(p)

(cost of success = price / p, latency of success = latency / p). f is increasing in p, the
load term is never positive, and the request's price is at least ``price_scale`` times the
price of the typical prompt the index was built with. So ``f(p_max) + static_term`` bounds
``v`` from above, where p_max is the agent's posterior mean moved by the easiest shift the
failure model can give this request (or 1 under Thompson sampling). Candidates are visited
best bound first; once the next bound is below the k-th best exact value, no candidate left
can enter the top k: the result is the full ranking's first k (ties aside).
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from nofx.domain import Agent
from nofx.routing.prediction import MARGIN_CAP, MARGIN_FLOOR, BinnedTerm, RequestScorer
from nofx.routing.scoring import (
    MIN_SUCCESS,
    WEIGHTS,
    Estimate,
    cost_of_success,
    latency_of_success,
)

# the prompt the index prices (``estimated_cost(agent, TYPICAL_TOKENS)``)
TYPICAL_TOKENS = 1000
OUTPUT_RATIO = 0.6
# a bound must beat the k-th value by more than rounding before the scan stops
SLACK = 1e-9


def success_term(p: float, objective: str) -> float:
    """The part of ``order_value`` that depends on p (increasing in p)."""
    w_s, w_c, w_l, _ = WEIGHTS[objective]
    return w_s * p + (w_c + w_l) * math.log2(max(MIN_SUCCESS, p))


def static_term(price: float, latency_ms: float, objective: str) -> float:
    """The request-independent price and latency part of the bound (+inf when free/instant,
    so such agents are always visited)."""
    _, w_c, w_l, _ = WEIGHTS[objective]
    if price <= 0.0 or latency_ms <= 0.0:
        return math.inf
    return -w_c * math.log2(price) - w_l * math.log2(latency_ms)


def order_value(e: Estimate, objective: str) -> float:
    """``score(e, objective, cheapest, fastest)`` minus the part shared by every candidate
    of the request: ranking on it is ranking on the score."""
    w_s, w_c, w_l, w_load = WEIGHTS[objective]
    return (
        w_s * e.success
        - w_c * math.log2(max(cost_of_success(e), 1e-9))
        - w_l * math.log2(max(latency_of_success(e), 1e-3))
        - w_load * min(e.load, 2.0)
    )


def price_scale(input_tokens: int, any_per_call: bool) -> float:
    """m with price(request) >= m * price(typical prompt) for every agent: each part of the
    price (per 1k input, per 1k output, per call) grows at least by m."""
    output_tokens = int(input_tokens * OUTPUT_RATIO)
    m = min(input_tokens / TYPICAL_TOKENS, output_tokens / int(TYPICAL_TOKENS * OUTPUT_RATIO))
    return min(m, 1.0) if any_per_call else m


def _min_difference(term: BinnedTerm, request_x: float, typical_x: float) -> float:
    """min over a shared unknown y of term(clip(request_x - y)) - term(clip(typical_x - y)):
    the margin term's smallest possible push for any agent latency (y = log p50)."""
    delta = request_x - typical_x

    def diff(y: float) -> float:
        def w(x: float) -> float:
            return term.weight(min(MARGIN_CAP, max(MARGIN_FLOOR, x)))

        return w(request_x - y) - w(typical_x - y)

    # piecewise linear in y with breaks where either argument crosses an edge or a clip
    breaks = {*term.edges, MARGIN_CAP, MARGIN_FLOOR}
    points = [typical_x - b for b in breaks] + [typical_x - b + delta for b in breaks]
    best = math.inf
    for y in points:
        if math.isfinite(y):
            for probe in (y - 1e-9 * (1 + abs(y)), y, y + 1e-9 * (1 + abs(y))):
                best = min(best, diff(probe))
    big = 1e3 + abs(typical_x) + abs(request_x)
    return min(best, diff(-big), diff(big))


def easiest_shift(
    request: RequestScorer, typical: RequestScorer, windows: Iterable[int | None]
) -> float:
    """A lower bound of ``request.shift_from(typical, window, history)`` over every agent
    whose context window is in ``windows``, whatever its latency history."""
    fill = min(
        request.fill.weight(request.input_tokens / w if w else 0.0)
        - typical.fill.weight(typical.input_tokens / w if w else 0.0)
        for w in windows
    )
    request_x = math.log(request.timeout_ms / (1.0 + request.complexity))
    typical_x = math.log(typical.timeout_ms / (1.0 + typical.complexity))
    return (
        request.base - typical.base + fill + _min_difference(request.margin, request_x, typical_x)
    )


def success_headroom(shift: float, objective: str) -> float:
    """How much ``success_term`` can grow when the failure log-odds move by ``shift``: p moves
    by at most |shift| / 4 (the sigmoid's slope), log p by at most |shift| (its log-odds)."""
    if shift >= 0.0:
        return 0.0
    w_s, w_c, w_l, _ = WEIGHTS[objective]
    return -shift * (w_s / 4.0 + (w_c + w_l) / math.log(2.0))


@dataclass
class BoundIndex:
    """One candidate list's agents ordered by the request-independent bound, best first.
    Agents whose statistics changed are moved in place (bisect), a few microseconds each."""

    agents: list[Agent]  # the caller's list, held so its id() stays unique while cached
    order: list[tuple[float, str]] = field(default_factory=list)  # (-key, agent_id)
    keys: dict[str, float] = field(default_factory=dict)
    by_id: dict[str, Agent] = field(default_factory=dict)
    windows: frozenset[int | None] = frozenset()
    any_per_call: bool = False

    @classmethod
    def build(cls, agents: list[Agent], key: Callable[[Agent], float]) -> BoundIndex:
        keys = {a.agent_id: key(a) for a in agents}
        return cls(
            agents=agents,
            order=sorted((-k, agent_id) for agent_id, k in keys.items()),
            keys=keys,
            by_id={a.agent_id: a for a in agents},
            windows=frozenset(a.context_window_tokens for a in agents),
            any_per_call=any(a.pricing.per_call > 0 for a in agents),
        )

    def move(self, agent_id: str, key: float) -> None:
        old = self.keys.get(agent_id)
        if old is None or old == key:
            return
        at = bisect_left(self.order, (-old, agent_id))
        del self.order[at]
        insort(self.order, (-key, agent_id))
        self.keys[agent_id] = key


def bounded_top(
    index: BoundIndex,
    offset: float,
    k: int,
    evaluate: Callable[[Agent], tuple[float, Estimate] | None],
) -> list[tuple[Agent, Estimate]]:
    """The k candidates with the highest exact value (ties: smaller agent id first), visiting
    the index best bound first (bound = key + ``offset``) and stopping once no candidate
    left can enter. ``evaluate`` returns (value, estimate), or None when the agent does not
    qualify."""
    heap: list[tuple[float, _Reversed, Agent, Estimate]] = []  # the k best, worst on top
    for negkey, agent_id in index.order:
        if len(heap) >= k and -negkey + offset < heap[0][0] - SLACK * (1.0 + abs(heap[0][0])):
            break
        agent = index.by_id[agent_id]
        found = evaluate(agent)
        if found is None:
            continue
        value, estimate = found
        item = (value, _Reversed(agent_id), agent, estimate)
        if len(heap) < k:
            heapq.heappush(heap, item)
        elif item[:2] > heap[0][:2]:
            heapq.heapreplace(heap, item)
    return [(agent, e) for _, _, agent, e in heap]


class _Reversed:
    """Orders agent ids backwards, so the heap's smallest is the one the ranking puts last."""

    __slots__ = ("agent_id",)

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id

    def __lt__(self, other: _Reversed) -> bool:
        return self.agent_id > other.agent_id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and self.agent_id == other.agent_id

    def __hash__(self) -> int:
        return hash(self.agent_id)
