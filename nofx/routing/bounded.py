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
can enter the top k: the result is the full ranking's first k (ties aside). The scan itself
is ``nofx.routing.sampled.sampled_top`` (a block of levels per numpy call, ADR 0025).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from nofx.domain import Agent
from nofx.routing.prediction import (
    MARGIN_CAP,
    MARGIN_FLOOR,
    BinnedTerm,
    RequestScorer,
    anchored_failure,
)
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


def _min_difference(
    term: BinnedTerm,
    request_x: float,
    typical_x: float,
    y_lo: float = -math.inf,
    y_hi: float = math.inf,
) -> float:
    """min over y in [y_lo, y_hi] of term(clip(request_x - y)) - term(clip(typical_x - y)):
    the margin term's smallest push for any agent latency in the range (y = log p50)."""
    delta = request_x - typical_x

    def diff(y: float) -> float:
        def w(x: float) -> float:
            return term.weight(min(MARGIN_CAP, max(MARGIN_FLOOR, x)))

        return w(request_x - y) - w(typical_x - y)

    # piecewise linear in y with breaks where either argument crosses an edge or a clip
    breaks = {*term.edges, MARGIN_CAP, MARGIN_FLOOR}
    points = [typical_x - b for b in breaks] + [typical_x - b + delta for b in breaks]
    big = 1e3 + abs(typical_x) + abs(request_x)
    lo, hi = max(y_lo, -big), min(y_hi, big)
    best = min(diff(lo), diff(hi))
    for y in points:
        if lo <= y <= hi:
            for probe in (y - 1e-9 * (1 + abs(y)), y, y + 1e-9 * (1 + abs(y))):
                if lo <= probe <= hi:
                    best = min(best, diff(probe))
    return best


def easiest_shift(
    request: RequestScorer,
    typical: RequestScorer,
    windows: Iterable[int | None],
    log_p50: tuple[float, float] = (-math.inf, math.inf),
) -> float:
    """A lower bound of ``request.shift_from(typical, window, history)`` over every agent
    whose context window is in ``windows`` and whose log latency median is in ``log_p50``."""
    fill = min(
        request.fill.weight(request.input_tokens / w if w else 0.0)
        - typical.fill.weight(typical.input_tokens / w if w else 0.0)
        for w in windows
    )
    request_x = math.log(request.timeout_ms / (1.0 + request.complexity))
    typical_x = math.log(typical.timeout_ms / (1.0 + typical.complexity))
    margin = _min_difference(request.margin, request_x, typical_x, *log_p50)
    return request.base - typical.base + fill + margin


def success_headroom(shift: float, objective: str) -> float:
    """How much ``success_term`` can grow when the failure log-odds move by ``shift``: p moves
    by at most |shift| / 4 (the sigmoid's slope), log p by at most |shift| (its log-odds)."""
    if shift >= 0.0:
        return 0.0
    w_s, w_c, w_l, _ = WEIGHTS[objective]
    return -shift * (w_s / 4.0 + (w_c + w_l) / math.log(2.0))


def moved_success(p: float, shift: float) -> float:
    """Success p after the failure log-odds move by ``shift`` (as ``anchored_failure``)."""
    return 1.0 - anchored_failure(1.0 - p, shift, 0.0)


@dataclass
class BoundIndex:
    """One candidate list's agents ordered by the request-independent bound, best first.
    Agents whose statistics changed are moved in place (bisect), a few microseconds each.

    The order is mirrored in arrays (slot = place in ``agents``), with each agent's success
    posterior, so Thompson sampling can draw a block of agents in one numpy call
    (``nofx.routing.sampled``, ADR 0025), and with what the agent's estimate reads (price,
    latency, window...), so the agents a scan estimates are estimated a block at a time
    (ADR 0028)."""

    agents: list[Agent]  # the caller's list, held so its id() stays unique while cached
    order: list[tuple[float, str]] = field(default_factory=list)  # (-key, agent_id)
    keys: dict[str, float] = field(default_factory=dict)
    by_id: dict[str, Agent] = field(default_factory=dict)
    windows: frozenset[int | None] = frozenset()
    any_per_call: bool = False
    # never lowered (widened) as agents move: the largest static term, the log p50 range
    static_max: float = -math.inf
    log_p50: tuple[float, float] = (math.inf, -math.inf)
    # minus the agent's place in id order: the heap's tie-break (smaller id ranks first)
    tie: dict[str, int] = field(default_factory=dict)
    # arrays: per slot, the Beta posterior, the log latency median the failure model reads
    # and the context window (a code into ``window_list``); in ``order``'s order, the slots
    # and -keys
    slot: dict[str, int] = field(default_factory=dict)
    alpha: np.ndarray = field(default_factory=lambda: np.empty(0))
    beta: np.ndarray = field(default_factory=lambda: np.empty(0))
    log_p50s: np.ndarray = field(default_factory=lambda: np.empty(0))
    window_list: tuple[int | None, ...] = ()
    window_codes: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.intp))
    ranked_slots: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.intp))
    ranked_negkeys: np.ndarray = field(default_factory=lambda: np.empty(0))
    # per slot, what an estimate reads: the agent's id, its proficiency in the index's
    # capability, concurrency and tie rank (lists, read one agent at a time), its price per
    # call, per 1k input and output tokens (fixed with the agent); its latency median as the
    # model reads it, latency mean and p95 as the estimate reads them, and posterior mean
    # (updated with the posterior)
    ids: list[str] = field(default_factory=list)
    proficiencies: list[int] = field(default_factory=list)
    concurrency: list[int] = field(default_factory=list)
    ties: list[int] = field(default_factory=list)
    per_call: np.ndarray = field(default_factory=lambda: np.empty(0))
    per_input: np.ndarray = field(default_factory=lambda: np.empty(0))
    per_output: np.ndarray = field(default_factory=lambda: np.empty(0))
    p50s: np.ndarray = field(default_factory=lambda: np.empty(0))
    latencies: np.ndarray = field(default_factory=lambda: np.empty(0))
    p95s: np.ndarray = field(default_factory=lambda: np.empty(0))
    means: np.ndarray = field(default_factory=lambda: np.empty(0))

    @classmethod
    def build(cls, agents: list[Agent], key: Callable[[Agent], BoundKey]) -> BoundIndex:
        index = cls(
            agents=agents,
            by_id={a.agent_id: a for a in agents},
            windows=frozenset(a.context_window_tokens for a in agents),
            any_per_call=any(a.pricing.per_call > 0 for a in agents),
        )
        n = len(agents)
        index.slot = {a.agent_id: i for i, a in enumerate(agents)}
        index.alpha, index.beta = np.ones(n), np.ones(n)
        index.log_p50s, index.p50s = np.zeros(n), np.zeros(n)
        index.latencies, index.p95s, index.means = np.zeros(n), np.zeros(n), np.zeros(n)
        index.window_list = tuple(index.windows)
        code = {w: i for i, w in enumerate(index.window_list)}
        index.window_codes = np.array([code[a.context_window_tokens] for a in agents], np.intp)
        index.ids = [a.agent_id for a in agents]
        index.concurrency = [a.max_concurrency for a in agents]
        index.per_call = np.array([a.pricing.per_call for a in agents], dtype=float)
        index.per_input = np.array([a.pricing.input_per_1k_tokens for a in agents], dtype=float)
        index.per_output = np.array([a.pricing.output_per_1k_tokens for a in agents], dtype=float)
        index.proficiencies = [0] * n
        for a in agents:
            found = key(a)
            index.keys[a.agent_id] = found.key
            index._widen(found)
            index._posterior(a.agent_id, found)
            index.proficiencies[index.slot[a.agent_id]] = found.proficiency
        index.order = sorted((-k, agent_id) for agent_id, k in index.keys.items())
        index.tie = {agent_id: -i for i, agent_id in enumerate(sorted(index.keys))}
        index.ties = [index.tie[a] for a in index.ids]
        index.ranked_slots = np.array([index.slot[a] for _, a in index.order], dtype=np.intp)
        index.ranked_negkeys = np.array([k for k, _ in index.order], dtype=float)
        return index

    def _widen(self, found: BoundKey) -> None:
        self.static_max = max(self.static_max, found.static)
        lo, hi = self.log_p50
        self.log_p50 = (min(lo, found.log_p50), max(hi, found.log_p50))

    def _posterior(self, agent_id: str, found: BoundKey) -> None:
        slot = self.slot[agent_id]
        # numpy's Beta sampler needs positive parameters (beta decays towards 0 on a long
        # run of successes and underflows after ~140,000 of them)
        self.alpha[slot] = max(found.alpha, 1e-300)
        self.beta[slot] = max(found.beta, 1e-300)
        self.log_p50s[slot] = found.log_p50
        self.p50s[slot] = found.p50
        self.latencies[slot] = found.latency
        self.p95s[slot] = found.p95
        self.means[slot] = found.mean

    def move(self, agent_id: str, found: BoundKey) -> None:
        self._widen(found)
        key = found.key
        old = self.keys.get(agent_id)
        if old is None:
            return
        self._posterior(agent_id, found)
        if old == key:
            return
        at = bisect_left(self.order, (-old, agent_id))
        del self.order[at]
        to = bisect_left(self.order, (-key, agent_id))
        self.order.insert(to, (-key, agent_id))
        self.keys[agent_id] = key
        # the arrays' mirror: shift the agents between the two places by one (a memmove)
        slots, negkeys = self.ranked_slots, self.ranked_negkeys
        if to > at:
            slots[at:to] = slots[at + 1 : to + 1]
            negkeys[at:to] = negkeys[at + 1 : to + 1]
        elif to < at:
            slots[to + 1 : at + 1] = slots[to:at].copy()
            negkeys[to + 1 : at + 1] = negkeys[to:at].copy()
        slots[to] = self.slot[agent_id]
        negkeys[to] = -key


@dataclass(frozen=True)
class BoundKey:
    key: float  # the index order (higher first)
    static: float  # its price and latency part
    log_p50: float  # the agent's log latency median, as the failure model reads it
    alpha: float = 1.0  # the agent's success posterior, Beta(alpha, beta)
    beta: float = 1.0
    # what the agent's estimate reads (``SmartRouter._estimate``): the latency median the
    # failure model reads (log_p50 is its log), the latency mean and p95, the posterior mean
    # (alpha / (alpha + beta) before alpha and beta are kept above 0) and the proficiency
    p50: float = 1000.0
    latency: float = 1000.0
    p95: float = 2000.0
    mean: float = 0.5
    proficiency: int = 1
