"""SmartRouter: capability match, Thompson-sampled success, windowed cost and latency, load and breakers.

It implements the runtime's Selector protocol. Estimates start from the agent's
declared proficiency and price and learn from every outcome, so a cheap agent
that proves as reliable as an expensive one wins the work, and an agent that
degrades loses it. Breaker transitions are collected for the runtime to record.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from nofx.domain import Agent
from nofx.routing.breaker import BreakerBoard, BreakerPolicy, Transition
from nofx.routing.estimates import AgentEstimate, prior_success
from nofx.routing.scoring import Estimate, score, within_limits
from nofx.routing.selection import Outcome, ScoredAgent, SelectionRequest, estimated_cost

DEFAULT_LATENCY_MS = 1000.0
EXPLAINED = 10


class SmartRouter:
    def __init__(
        self,
        seed: int = 7,
        *,
        explore: bool = True,
        breaker_policy: BreakerPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rng = random.Random(seed)
        self.explore = explore
        self.estimates: dict[tuple[str, str], AgentEstimate] = {}
        self.in_flight: dict[str, int] = {}
        self.capacity: dict[str, int] = {}
        self.breakers = BreakerBoard(breaker_policy)
        self.clock = clock

    def estimate_for(self, agent: Agent, capability: str) -> AgentEstimate:
        key = (agent.agent_id, capability)
        if key not in self.estimates:
            self.estimates[key] = AgentEstimate.from_prior(
                prior_success(agent.proficiency(capability))
            )
        return self.estimates[key]

    def _estimate(self, agent: Agent, request: SelectionRequest, sample: bool) -> Estimate:
        est = self.estimate_for(agent, request.capability)
        declared = float(agent.provider.config.get("latency_median_ms", DEFAULT_LATENCY_MS))
        latency = est.latency_mean() or declared
        self.capacity[agent.agent_id] = agent.max_concurrency
        return Estimate(
            success=est.sample(self.rng) if sample else est.mean,
            cost_usd=est.cost_mean() or estimated_cost(agent, request.input_tokens),
            latency_ms=latency,
            latency_p95_ms=est.latency_p95() or latency * 2.0,
            load=self.in_flight.get(agent.agent_id, 0) / max(1, agent.max_concurrency),
        )

    def rank(self, request: SelectionRequest, candidates: list[Agent]) -> list[ScoredAgent]:
        now = self.clock()
        qualified: list[tuple[Agent, Estimate]] = []
        for agent in candidates:
            if agent.agent_id in request.exclude:
                continue
            if agent.proficiency(request.capability) < max(1, request.min_proficiency):
                continue
            if not self.breakers.allows(agent.agent_id, now):
                continue
            estimate = self._estimate(agent, request, sample=self.explore)
            if within_limits(estimate, request.budget_usd, request.deadline_s) is None:
                qualified.append((agent, estimate))
        if not qualified:
            return []
        cheapest = min(e.cost_usd for _, e in qualified)
        fastest = min(e.latency_ms for _, e in qualified)
        values = [
            (score(e, request.optimize, cheapest, fastest), agent, e) for agent, e in qualified
        ]
        values.sort(key=lambda v: (-v[0], v[1].agent_id))
        scored = []
        for rank, (value, agent, e) in enumerate(values):
            # reasons are words for people: spelled out for the leaders, not for every candidate
            reasons = (
                self._reasons(agent, e, request, cheapest, fastest) if rank < EXPLAINED else ()
            )
            scored.append(ScoredAgent(agent, value, e.success, e.cost_usd, e.latency_ms, reasons))
        return scored

    def _reasons(
        self, agent: Agent, e: Estimate, request: SelectionRequest, cheapest: float, fastest: float
    ) -> tuple[str, ...]:
        obs = self.estimate_for(agent, request.capability).observations
        return (
            f"success {e.success:.2f} ({'sampled' if self.explore else 'mean'}, {obs} outcomes seen)",
            f"cost ${e.cost_usd:.5f} ({e.cost_usd / max(cheapest, 1e-12):.1f}x the cheapest)",
            f"latency {e.latency_ms:.0f} ms ({e.latency_ms / max(fastest, 1e-9):.1f}x the fastest)",
            f"load {self.in_flight.get(agent.agent_id, 0)}/{agent.max_concurrency}",
            f"breaker {self.breakers.state(agent.agent_id).value}",
            f"objective {request.optimize}",
        )

    def record(self, outcome: Outcome) -> None:
        now = self.clock()
        est = self.estimates.get((outcome.agent_id, outcome.capability))
        if est is None:
            est = self.estimates[(outcome.agent_id, outcome.capability)] = AgentEstimate.from_prior(
                0.7
            )
        # a permanent error says nothing about the agent's skill; don't punish it
        if outcome.error_class != "permanent":
            est.update(outcome.success, outcome.latency_ms, outcome.cost_usd)
        self.breakers.record(outcome.agent_id, not outcome.availability_failure, now)

    def acquire(self, agent_id: str) -> None:
        self.in_flight[agent_id] = self.in_flight.get(agent_id, 0) + 1
        self.breakers.get(agent_id).on_call()

    def release(self, agent_id: str) -> None:
        self.in_flight[agent_id] = max(0, self.in_flight.get(agent_id, 0) - 1)

    def drain_transitions(self) -> list[Transition]:
        return self.breakers.drain()
