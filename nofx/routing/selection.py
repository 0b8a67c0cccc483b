"""The seam between the runtime and any router: what is asked, what comes back, what is learned."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from nofx.domain import Agent

Objective = Literal["balanced", "cost", "latency", "success"]
QUALITY_ERRORS = frozenset({"bad_output"})


@dataclass(frozen=True)
class SelectionRequest:
    capability: str
    tenant_id: str = "default"
    min_proficiency: int = 1
    optimize: Objective = "balanced"
    budget_usd: float | None = None
    deadline_s: float | None = None
    # the call's own timeout (the runtime's, capped by the session deadline); None: 60 s
    timeout_s: float | None = None
    input_tokens: int = 800
    complexity: float = 0.5
    exclude: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ScoredAgent:
    agent: Agent
    score: float
    expected_success: float
    expected_cost_usd: float
    expected_latency_ms: float
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """What happened on one call, fed back so estimates learn online."""

    agent_id: str
    capability: str
    success: bool
    latency_ms: float
    cost_usd: float
    error_class: str | None = None
    extra: dict[str, float] = field(default_factory=dict)
    error_type: str | None = None
    # "<session>/<step>/<attempt>", so an outcome shared through the store is counted once
    call_id: str | None = None

    @property
    def availability_failure(self) -> bool:
        """Did the agent fail to answer properly (down, slow, throttled, broken), as opposed to
        answering badly? Only these trip circuit breakers; quality is the estimates' job."""
        return (
            not self.success
            and self.error_class != "permanent"
            and self.error_type not in QUALITY_ERRORS
        )


class Selector(Protocol):
    def rank(self, request: SelectionRequest, candidates: list[Agent]) -> list[ScoredAgent]:
        """Qualified candidates, best first, each with its score and reasons."""
        ...

    def record(self, outcome: Outcome) -> None: ...

    def acquire(self, agent_id: str) -> None:
        """A call to the agent starts (for load awareness)."""
        ...

    def release(self, agent_id: str) -> None: ...


def estimated_cost(agent: Agent, input_tokens: int, output_ratio: float = 0.6) -> float:
    return agent.pricing.cost(input_tokens, int(input_tokens * output_ratio))


class ProficiencySelector:
    """The simplest honest router: most proficient first, cheapest among equals.

    Used where no learned statistics exist yet and as a baseline in benchmarks.
    """

    def __init__(self) -> None:
        self.in_flight: dict[str, int] = {}

    def rank(self, request: SelectionRequest, candidates: list[Agent]) -> list[ScoredAgent]:
        ranked = []
        for agent in candidates:
            level = agent.proficiency(request.capability)
            if agent.agent_id in request.exclude or level < request.min_proficiency:
                continue
            cost = estimated_cost(agent, request.input_tokens)
            if request.budget_usd is not None and cost > request.budget_usd:
                continue
            ranked.append(
                ScoredAgent(
                    agent=agent,
                    score=level - cost,
                    expected_success=0.55 + 0.08 * level,
                    expected_cost_usd=cost,
                    expected_latency_ms=float("nan"),
                    reasons=(f"proficiency {level}/5", f"estimated cost ${cost:.4f}"),
                )
            )
        ranked.sort(key=lambda s: (-s.score, s.agent.agent_id))
        return ranked

    def record(self, outcome: Outcome) -> None:
        return None

    def acquire(self, agent_id: str) -> None:
        self.in_flight[agent_id] = self.in_flight.get(agent_id, 0) + 1

    def release(self, agent_id: str) -> None:
        self.in_flight[agent_id] = max(0, self.in_flight.get(agent_id, 0) - 1)
