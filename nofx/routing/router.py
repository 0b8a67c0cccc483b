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
each call; it keeps them sorted by a request-independent key (price over the posterior mean,
refreshed at most every ``reindex_s``) and scores the first ``shortlist`` that qualify.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from nofx.domain import Agent
from nofx.routing.breaker import BreakerBoard, BreakerPolicy, Transition
from nofx.routing.estimates import AgentEstimate, prior_success
from nofx.routing.learned import LearnedStats
from nofx.routing.prediction import DEFAULT_TIMEOUT_S, CompactFailureModel, request_features
from nofx.routing.scoring import (
    MIN_SUCCESS,
    Estimate,
    cost_of_success,
    latency_of_success,
    score,
    within_limits,
)
from nofx.routing.selection import Outcome, ScoredAgent, SelectionRequest, estimated_cost

DEFAULT_LATENCY_MS = 1000.0
EXPLAINED = 10
SHORTLIST = 64
REINDEX_S = 5.0

Predictor = Callable[[], CompactFailureModel | None]


@dataclass
class _Index:
    """One capability's candidates in a request-independent order (cheapest success first)."""

    agents: list[Agent]  # the caller's list, held so its id() stays unique while cached
    order: list[Agent]
    built_at: float


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
        reindex_s: float = REINDEX_S,
    ) -> None:
        self.rng = random.Random(seed)
        self.explore = explore
        self.stats = stats or LearnedStats()
        self.predictor = predictor
        self.in_flight: dict[str, int] = {}
        self.breakers = BreakerBoard(breaker_policy)
        self.clock = clock
        self.shortlist = shortlist
        self.reindex_s = reindex_s
        self._indexes: dict[tuple[str, int], _Index] = {}

    @property
    def estimates(self) -> dict[tuple[str, str], AgentEstimate]:
        return self.stats.estimates

    def estimate_for(self, agent: Agent, capability: str) -> AgentEstimate:
        return self.stats.estimate(
            agent.agent_id, capability, prior_success(agent.proficiency(capability))
        )

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
        model: CompactFailureModel | None,
    ) -> Estimate:
        est = self.estimate_for(agent, request.capability)
        declared = float(agent.provider.config.get("latency_median_ms", DEFAULT_LATENCY_MS))
        latency = est.latency_mean() or declared
        if model is not None:
            success = 1.0 - self.predicted_failure(agent, request, model)[0]
        else:
            success = est.sample(self.rng) if self.explore else est.mean
        return Estimate(
            success=success,
            # price x the prompt: what *this* call costs, not the average of past ones
            cost_usd=estimated_cost(agent, request.input_tokens),
            latency_ms=latency,
            latency_p95_ms=est.latency_p95() or latency * 2.0,
            load=self.in_flight.get(agent.agent_id, 0) / max(1, agent.max_concurrency),
        )

    def _qualifies(self, agent: Agent, request: SelectionRequest, now: float) -> bool:
        return (
            agent.agent_id not in request.exclude
            and agent.proficiency(request.capability) >= max(1, request.min_proficiency)
            and self.breakers.allows(agent.agent_id, now)
        )

    def _base_key(self, agent: Agent, capability: str) -> float:
        """Request-independent: price per token over the success posterior's mean."""
        per_1k = agent.pricing.input_per_1k_tokens + 0.6 * agent.pricing.output_per_1k_tokens
        return (per_1k + agent.pricing.per_call * 1e-3) / max(
            MIN_SUCCESS, self.estimate_for(agent, capability).mean
        )

    def _shortlisted(
        self, request: SelectionRequest, candidates: list[Agent], now: float
    ) -> list[Agent]:
        if self.shortlist is None or len(candidates) <= 2 * self.shortlist:
            return [a for a in candidates if self._qualifies(a, request, now)]
        key = (request.capability, id(candidates))
        index = self._indexes.get(key)
        if index is None or index.agents is not candidates or now - index.built_at > self.reindex_s:
            order = sorted(candidates, key=lambda a: self._base_key(a, request.capability))
            index = self._indexes[key] = _Index(candidates, order, now)
        chosen: list[Agent] = []
        for agent in index.order:
            window = agent.context_window_tokens
            if window is not None and request.input_tokens > window:
                continue  # certain to fail: not worth a place on the shortlist
            if self._qualifies(agent, request, now):
                chosen.append(agent)
                if len(chosen) >= self.shortlist:
                    break
        return chosen

    def rank(self, request: SelectionRequest, candidates: list[Agent]) -> list[ScoredAgent]:
        self.stats.sync()
        now = self.clock()
        model = self.predictor() if self.predictor is not None else None
        qualified: list[tuple[Agent, Estimate]] = []
        for agent in self._shortlisted(request, candidates, now):
            estimate = self._estimate(agent, request, model)
            if within_limits(estimate, request.budget_usd, request.deadline_s) is None:
                qualified.append((agent, estimate))
        if not qualified:
            return []
        cheapest = min(cost_of_success(e) for _, e in qualified)
        fastest = min(latency_of_success(e) for _, e in qualified)
        values = [
            (score(e, request.optimize, cheapest, fastest), agent, e) for agent, e in qualified
        ]
        values.sort(key=lambda v: (-v[0], v[1].agent_id))
        scored = []
        for rank, (value, agent, e) in enumerate(values):
            # reasons are words for people: spelled out for the leaders, not for every candidate
            reasons = (
                self._reasons(agent, e, request, cheapest, fastest, model)
                if rank < EXPLAINED
                else ()
            )
            scored.append(ScoredAgent(agent, value, e.success, e.cost_usd, e.latency_ms, reasons))
        return scored

    def _reasons(
        self,
        agent: Agent,
        e: Estimate,
        request: SelectionRequest,
        cheapest: float,
        fastest: float,
        model: CompactFailureModel | None,
    ) -> tuple[str, ...]:
        obs = self.estimate_for(agent, request.capability).observations
        if model is not None:
            p_fail, features = self.predicted_failure(agent, request, model)
            pushes = ", ".join(
                f"{name} {features.get(name, float('nan')):.3g} ({weight:+.2f})"
                for name, weight in model.contributions(
                    features, {"capability": request.capability}
                )
            )
            success = (
                f"p(fail) {p_fail:.3f} predicted by failure model v{model.version} "
                f"(largest terms: {pushes}); {obs} outcomes seen"
            )
        else:
            success = (
                f"success {e.success:.2f} ({'sampled' if self.explore else 'mean'} of the "
                f"posterior, {obs} outcomes seen; no failure model loaded)"
            )
        attempts = 1.0 / max(MIN_SUCCESS, e.success)
        return (
            success,
            f"cost of success ${cost_of_success(e):.5f} = ${e.cost_usd:.5f} x {attempts:.2f} "
            f"expected attempts ({cost_of_success(e) / max(cheapest, 1e-12):.1f}x the cheapest)",
            f"latency with retries {latency_of_success(e):.0f} ms "
            f"({latency_of_success(e) / max(fastest, 1e-9):.1f}x the fastest)",
            f"load {self.in_flight.get(agent.agent_id, 0)}/{agent.max_concurrency}",
            f"breaker {self.breakers.state(agent.agent_id).value}",
            f"objective {request.optimize}",
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


def default_router(
    store: object | None = None, *, seed: int = 7, explore: bool = True
) -> SmartRouter:
    """The product's router: statistics shared through ``store`` (when given) and, when
    ``NOFX_ROUTING_MODEL`` names a registered model, its MLflow champion as the predictor
    (polled every ``NOFX_ROUTING_MODEL_POLL_S`` seconds, 60 by default)."""
    import os

    from nofx.routing.prediction import ChampionWatcher, mlflow_champion_loader

    stats = LearnedStats(feed=store) if store is not None and hasattr(store, "read_all") else None
    predictor: Predictor | None = None
    name = os.environ.get("NOFX_ROUTING_MODEL", "").strip()
    if name:
        from nofx.settings import Settings

        uri = Settings.from_env().mlflow_tracking_uri
        interval = float(os.environ.get("NOFX_ROUTING_MODEL_POLL_S", "60"))
        predictor = ChampionWatcher(mlflow_champion_loader(name, uri), interval).start()
    return SmartRouter(seed=seed, explore=explore, stats=stats, predictor=predictor)
