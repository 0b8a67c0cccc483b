"""Baseline routers for comparison: round robin, lowest latency (LiteLLM-style), cheapest."""

from __future__ import annotations

from nofx.domain import Agent
from nofx.routing.estimates import AgentEstimate
from nofx.routing.selection import Outcome, ScoredAgent, SelectionRequest, estimated_cost


def _qualified(request: SelectionRequest, candidates: list[Agent]) -> list[Agent]:
    return [
        a
        for a in candidates
        if a.agent_id not in request.exclude
        and a.proficiency(request.capability) >= max(1, request.min_proficiency)
    ]


class _Base:
    def record(self, outcome: Outcome) -> None:
        return None

    def acquire(self, agent_id: str) -> None:
        return None

    def release(self, agent_id: str) -> None:
        return None

    def _scored(
        self, agents: list[Agent], request: SelectionRequest, why: str
    ) -> list[ScoredAgent]:
        n = len(agents)
        return [
            ScoredAgent(
                a,
                float(n - i),
                float("nan"),
                estimated_cost(a, request.input_tokens),
                float("nan"),
                (why,),
            )
            for i, a in enumerate(agents)
        ]


class RoundRobinSelector(_Base):
    def __init__(self) -> None:
        self.turn = 0

    def rank(self, request: SelectionRequest, candidates: list[Agent]) -> list[ScoredAgent]:
        agents = sorted(_qualified(request, candidates), key=lambda a: a.agent_id)
        if not agents:
            return []
        self.turn += 1
        k = self.turn % len(agents)
        return self._scored(agents[k:] + agents[:k], request, "round robin")


class CheapestSelector(_Base):
    def rank(self, request: SelectionRequest, candidates: list[Agent]) -> list[ScoredAgent]:
        agents = sorted(
            _qualified(request, candidates),
            key=lambda a: (estimated_cost(a, request.input_tokens), a.agent_id),
        )
        return self._scored(agents, request, "cheapest")


class LowestLatencySelector(_Base):
    """Routes to the lowest observed mean latency; untried agents first (like LiteLLM's latency routing)."""

    def __init__(self) -> None:
        self.latency: dict[str, AgentEstimate] = {}

    def rank(self, request: SelectionRequest, candidates: list[Agent]) -> list[ScoredAgent]:
        def key(a: Agent) -> tuple[float, str]:
            est = self.latency.get(a.agent_id)
            return ((est.latency_mean() or 0.0) if est else -1.0, a.agent_id)

        return self._scored(
            sorted(_qualified(request, candidates), key=key), request, "lowest latency"
        )

    def record(self, outcome: Outcome) -> None:
        est = self.latency.setdefault(outcome.agent_id, AgentEstimate.from_prior(0.5))
        est.update(outcome.success, outcome.latency_ms, outcome.cost_usd)
