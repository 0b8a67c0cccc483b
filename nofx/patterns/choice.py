"""Auto's decision, pure: each pattern's predicted success on a task, and the choice.

``predicted_success`` is a Beta prior (from the task's complexity and whether a reviewer
exists) worth ``PRIOR_SESSIONS`` sessions, updated by the recorded outcomes of similar
sessions (same capability, same complexity band). ``choose_pattern`` ranks on it under the
budget and deadline. Reading the record is I/O and lives elsewhere (``nofx.patterns.history``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nofx.domain import PatternName, Task

CHOOSABLE = (PatternName.SOLO, PatternName.PAIR, PatternName.HIERARCHICAL, PatternName.SWARM)
BANDS = {"low": (0.0, 0.35), "medium": (0.35, 0.7), "high": (0.7, 1.01)}


@dataclass(frozen=True)
class PatternStats:
    sessions: int
    succeeded: int

    @property
    def success_rate(self) -> float:
        return self.succeeded / self.sessions if self.sessions else 0.0


def complexity_band(complexity: float) -> str:
    return "low" if complexity < 0.35 else "medium" if complexity < 0.7 else "high"


MIN_HISTORY = 10  # kept for callers: the prior's weight, in sessions
PRIOR_SESSIONS = MIN_HISTORY
COST_FACTOR = {
    PatternName.SOLO: 1.0,
    PatternName.PAIR: 2.5,
    PatternName.HIERARCHICAL: 4.0,
    PatternName.SWARM: 4.5,
}


@dataclass(frozen=True)
class PatternChoice:
    pattern: PatternName
    reasons: tuple[str, ...]
    scores: dict[str, float] = field(default_factory=dict)
    predicted: dict[str, float] = field(default_factory=dict)


def prior_success(pattern: PatternName, complexity: float, can_review: bool) -> float:
    """What a pattern is expected to achieve before any record: solo suits easy tasks,
    review and decomposition pay off as tasks get harder. Kept inside (0.02, 0.98)."""
    c = min(1.0, max(0.0, complexity))
    prior = {
        PatternName.SOLO: 0.9 - 0.5 * c,
        PatternName.PAIR: 0.55 + 0.3 * c + (0.1 if can_review else -0.2),
        PatternName.HIERARCHICAL: 0.3 + 0.6 * c,
        PatternName.SWARM: 0.25 + 0.55 * c,
    }[pattern]
    return min(0.98, max(0.02, prior))


def predicted_success(prior: float, stats: PatternStats | None) -> float:
    """Posterior mean of a Beta prior worth ``PRIOR_SESSIONS`` sessions at ``prior``, after
    the recorded sessions: always between the prior and the record's success rate."""
    if stats is None or stats.sessions <= 0:
        return prior
    succeeded = min(max(stats.succeeded, 0), stats.sessions)
    return (PRIOR_SESSIONS * prior + succeeded) / (PRIOR_SESSIONS + stats.sessions)


def choose_pattern(
    task: Task,
    *,
    budget_usd: float | None = None,
    deadline_s: float | None = None,
    available_capabilities: frozenset[str] = frozenset(),
    history: dict[PatternName, PatternStats] | None = None,
    solo_cost_usd: float = 0.01,
) -> PatternChoice:
    """The pattern with the highest predicted success that fits the budget (cheaper wins ties)."""
    history = history or {}
    c = task.complexity
    domain = task.capability.split(".")[0]
    can_review = f"{domain}.review" in available_capabilities
    reasons = [f"complexity {c:.2f} ({complexity_band(c)})"]
    if can_review:
        reasons.append(f"{domain}.review is available for a reviewer")
    scores: dict[str, float] = {}
    predicted: dict[str, float] = {}
    for pattern in CHOOSABLE:
        prior = prior_success(pattern, c, can_review)
        stats = history.get(pattern)
        p = predicted_success(prior, stats)
        predicted[pattern.value] = round(p, 4)
        score = p
        if stats is not None and stats.sessions > 0:
            reasons.append(
                f"{pattern.value}: predicted success {p:.0%} (prior {prior:.0%}, "
                f"{stats.success_rate:.0%} on {stats.sessions} similar sessions)"
            )
        expected_cost = solo_cost_usd * COST_FACTOR[pattern]
        if budget_usd is not None and expected_cost > budget_usd:
            score -= 10
            reasons.append(f"{pattern.value} would likely exceed the budget (${expected_cost:.4f})")
        if deadline_s is not None and pattern is PatternName.PAIR and deadline_s < 10:
            score -= 0.3  # review rounds are sequential
        scores[pattern.value] = round(score, 4)
    best = max(CHOOSABLE, key=lambda p: (scores[p.value], -COST_FACTOR[p]))
    reasons.insert(
        0,
        f"chose {best.value} (predicted success {predicted[best.value]:.0%}, "
        f"score {scores[best.value]:.2f})",
    )
    return PatternChoice(best, tuple(reasons), scores, predicted)
