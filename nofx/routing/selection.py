"""The seam between the runtime and any router: what is asked, what comes back, what is learned."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, overload

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


class Reasons(Sequence[str]):
    """Words for people, spelled out on first read from numbers taken when the agent was
    ranked (``spell`` holds a snapshot, never live state): a ranking explains its leaders, and
    most callers read the reasons of the one they pick, if any. Reads as a tuple of strings."""

    __slots__ = ("_spell", "_words")

    def __init__(self, spell: Callable[[], tuple[str, ...]]) -> None:
        self._spell: Callable[[], tuple[str, ...]] | None = spell
        self._words: tuple[str, ...] = ()

    def _get(self) -> tuple[str, ...]:
        if self._spell is not None:
            self._words, self._spell = self._spell(), None
        return self._words

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[str, ...]: ...
    def __getitem__(self, i: int | slice) -> str | tuple[str, ...]:
        return self._get()[i]

    def __len__(self) -> int:
        return len(self._get())

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Reasons):
            other = other._get()
        return isinstance(other, tuple) and self._get() == other

    def __hash__(self) -> int:
        return hash(self._get())

    def __repr__(self) -> str:
        return repr(self._get())


@dataclass(frozen=True)
class ScoredAgent:
    agent: Agent
    score: float
    expected_success: float
    expected_cost_usd: float
    expected_latency_ms: float
    # a tuple, or ``Reasons`` spelled out when first read
    reasons: Sequence[str] = ()


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
