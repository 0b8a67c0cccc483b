"""Multi-objective scoring of one candidate: a pure function, so it can be reasoned about and tested.

score = w_success * p - w_cost * log2(cost_of_success / cheapest)
        - w_latency * log2(latency_of_success / fastest) - w_load * load

where p is the probability this call succeeds and cost_of_success is what the session expects
to pay until an attempt succeeds: the successful attempt's price plus (1 - p) / p failed
attempts, each charged what a failure of this agent actually costs (a rejected prompt or a
rate limit is free, a bad answer is billed in full). Charging failures the full price (plain
price / p) over-penalises agents whose failures are free. latency_of_success = latency / p
(the wait including retries). Logs make "twice as expensive" cost the same whatever the price level;
the reference is the best qualified candidate of the same request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

WEIGHTS: dict[str, tuple[float, float, float, float]] = {
    # objective: (success, cost, latency, load)
    "balanced": (6.0, 0.25, 0.10, 0.5),
    "cost": (2.0, 0.60, 0.05, 0.3),
    "success": (8.0, 0.05, 0.05, 0.5),
    "latency": (2.0, 0.05, 0.60, 1.0),
}
MIN_SUCCESS = 1e-6  # keeps "nearly hopeless" distinguishable from "hopeless"


@dataclass(frozen=True)
class Estimate:
    success: float
    cost_usd: float
    latency_ms: float
    latency_p95_ms: float
    load: float  # in flight / capacity, 0..1+
    # what one failed attempt costs; None: the full price (every failure billed)
    failed_cost_usd: float | None = None


def cost_of_success(e: Estimate) -> float:
    """Expected spend until an attempt succeeds: one success plus (1 - p) / p failures
    (geometric), each failure charged ``failed_cost_usd``. A hopeless agent (p at the floor)
    stays hopeless even when its failures are free: it never delivers a success."""
    p = max(MIN_SUCCESS, e.success)
    failed = e.cost_usd if e.failed_cost_usd is None else min(e.failed_cost_usd, e.cost_usd)
    if p <= MIN_SUCCESS:
        return e.cost_usd / MIN_SUCCESS
    return e.cost_usd + failed * (1.0 - p) / p


def latency_of_success(e: Estimate) -> float:
    """Latency including the retries a failure-prone agent makes the session wait for."""
    return e.latency_ms / max(MIN_SUCCESS, e.success)


def score(e: Estimate, objective: str, cheapest: float, fastest: float) -> float:
    """``cheapest`` and ``fastest`` are the best cost and latency *of success* among the
    request's qualified candidates."""
    w_s, w_c, w_l, w_load = WEIGHTS[objective]
    cost_term = math.log2(max(cost_of_success(e), 1e-9) / max(cheapest, 1e-9))
    latency_term = math.log2(max(latency_of_success(e), 1e-3) / max(fastest, 1e-3))
    return w_s * e.success - w_c * cost_term - w_l * latency_term - w_load * min(e.load, 2.0)


def within_limits(e: Estimate, budget_usd: float | None, deadline_s: float | None) -> str | None:
    """None when the candidate respects the hard limits, else the reason it does not."""
    if budget_usd is not None and e.cost_usd > budget_usd:
        return f"expected cost ${e.cost_usd:.4f} is over the budget ${budget_usd:.4f}"
    if deadline_s is not None and e.latency_p95_ms > deadline_s * 1000:
        return f"p95 latency {e.latency_p95_ms:.0f} ms is over the deadline {deadline_s:.1f} s"
    return None
