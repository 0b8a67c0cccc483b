"""Auto: choose the pattern from the task and from how each pattern did on similar tasks.

``choose_pattern`` is pure: the heuristics give every pattern a prior score,
recorded success on similar tasks (same capability, same complexity band)
adjusts it once there is enough history, and the reasons say why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select

from nofx.domain import PatternName, Task
from nofx.runtime import PatternResult, PatternRunner, SessionExecution
from nofx.store import EventStore
from nofx.store.schema import sessions

CHOOSABLE = (PatternName.SOLO, PatternName.PAIR, PatternName.HIERARCHICAL, PatternName.SWARM)
MIN_HISTORY = 10
COST_FACTOR = {
    PatternName.SOLO: 1.0,
    PatternName.PAIR: 2.5,
    PatternName.HIERARCHICAL: 4.0,
    PatternName.SWARM: 4.5,
}


@dataclass(frozen=True)
class PatternStats:
    sessions: int
    succeeded: int

    @property
    def success_rate(self) -> float:
        return self.succeeded / self.sessions if self.sessions else 0.0


@dataclass(frozen=True)
class PatternChoice:
    pattern: PatternName
    reasons: tuple[str, ...]
    scores: dict[str, float] = field(default_factory=dict)


def complexity_band(complexity: float) -> str:
    return "low" if complexity < 0.35 else "medium" if complexity < 0.7 else "high"


def choose_pattern(
    task: Task,
    *,
    budget_usd: float | None = None,
    deadline_s: float | None = None,
    available_capabilities: frozenset[str] = frozenset(),
    history: dict[PatternName, PatternStats] | None = None,
    solo_cost_usd: float = 0.01,
) -> PatternChoice:
    history = history or {}
    c = task.complexity
    domain = task.capability.split(".")[0]
    can_review = f"{domain}.review" in available_capabilities
    prior = {
        PatternName.SOLO: 0.9 - 0.5 * c,
        PatternName.PAIR: 0.55 + 0.3 * c + (0.1 if can_review else -0.2),
        PatternName.HIERARCHICAL: 0.3 + 0.6 * c,
        PatternName.SWARM: 0.25 + 0.55 * c,
    }
    reasons = [f"complexity {c:.2f} ({complexity_band(c)})"]
    if can_review:
        reasons.append(f"{domain}.review is available for a reviewer")
    scores: dict[str, float] = {}
    for pattern in CHOOSABLE:
        score = prior[pattern]
        stats = history.get(pattern)
        if stats is not None and stats.sessions >= MIN_HISTORY:
            score = 0.5 * score + 0.5 * stats.success_rate * 1.2
            reasons.append(
                f"{pattern.value}: {stats.success_rate:.0%} success on {stats.sessions} similar sessions"
            )
        expected_cost = solo_cost_usd * COST_FACTOR[pattern]
        if budget_usd is not None and expected_cost > budget_usd:
            score -= 10
            reasons.append(f"{pattern.value} would likely exceed the budget (${expected_cost:.4f})")
        if deadline_s is not None and pattern is PatternName.PAIR and deadline_s < 10:
            score -= 0.3  # review rounds are sequential
        scores[pattern.value] = round(score, 4)
    best = max(CHOOSABLE, key=lambda p: (scores[p.value], -COST_FACTOR[p]))
    reasons.insert(0, f"chose {best.value} (score {scores[best.value]:.2f})")
    return PatternChoice(best, tuple(reasons), scores)


def pattern_history(
    store: EventStore, tenant_id: str, capability: str, complexity: float
) -> dict[PatternName, PatternStats]:
    """Per pattern: finished sessions and successes on the same capability and complexity band."""
    low, high = {"low": (0.0, 0.35), "medium": (0.35, 0.7), "high": (0.7, 1.01)}[
        complexity_band(complexity)
    ]
    complexity_col = func.json_extract(sessions.c.request, "$.task.complexity")
    capability_col = func.json_extract(sessions.c.request, "$.task.capability")
    if store.dialect == "postgresql":
        complexity_col = sessions.c.request["task"]["complexity"].as_float()
        capability_col = sessions.c.request["task"]["capability"].as_string()
    query = (
        select(sessions.c.pattern, sessions.c.status, func.count())
        .where(
            sessions.c.tenant_id == tenant_id,
            sessions.c.status.in_(["succeeded", "failed"]),
            capability_col == capability,
            complexity_col >= low,
            complexity_col < high,
        )
        .group_by(sessions.c.pattern, sessions.c.status)
    )
    totals: dict[PatternName, list[int]] = {}
    with store.engine.connect() as conn:
        for row in conn.execute(query):
            pattern, status, n = str(row[0]), str(row[1]), int(row[2])
            if pattern not in {p.value for p in CHOOSABLE}:
                continue
            entry = totals.setdefault(PatternName(pattern), [0, 0])
            entry[0] += n
            entry[1] += n if status == "succeeded" else 0
    return {p: PatternStats(n, ok) for p, (n, ok) in totals.items()}


def make_auto(runners: dict[PatternName, PatternRunner]) -> PatternRunner:
    async def run_auto(execution: SessionExecution) -> PatternResult:
        session = execution.session
        chosen = next((e for e in execution.history if e.type == "PatternChosen"), None)
        if chosen is None:
            runtime = execution.runtime
            candidates = runtime.candidates(session.tenant_id, session.task.capability)
            cheapest = min(
                (
                    a.pricing.cost(session.task.input_tokens, session.task.input_tokens // 2)
                    for a in candidates
                ),
                default=0.01,
            )
            choice = choose_pattern(
                session.task,
                budget_usd=session.budget_usd,
                deadline_s=session.deadline_s,
                available_capabilities=frozenset(runtime.registry.capabilities(session.tenant_id)),
                history=pattern_history(
                    runtime.store,
                    session.tenant_id,
                    session.task.capability,
                    session.task.complexity,
                ),
                solo_cost_usd=cheapest,
            )
            execution.emit(
                "PatternChosen",
                {
                    "pattern": choice.pattern.value,
                    "reasons": list(choice.reasons),
                    "scores": choice.scores,
                },
                key=f"{session.session_id}/auto/chosen",
            )
            pattern = choice.pattern
        else:
            pattern = PatternName(chosen.payload["pattern"])
        result = await runners[pattern](execution)
        return PatternResult(
            result.output, result.agent_id, {**result.details, "chosen_pattern": pattern.value}
        )

    return run_auto
