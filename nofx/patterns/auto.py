"""Auto: choose the pattern with the highest predicted success on this task, and say why.

The decision is pure and lives in ``nofx.patterns.choice`` (re-exported here); this module is
the runner: it reads the record of similar sessions off the event loop
(``nofx.patterns.history``), chooses, records the choice and runs the chosen pattern.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from nofx.domain import PatternName
from nofx.execution import Execution, PatternResult, PatternRunner
from nofx.patterns.choice import (
    CHOOSABLE,
    COST_FACTOR,
    MIN_HISTORY,
    PRIOR_SESSIONS,
    PatternChoice,
    PatternStats,
    choose_pattern,
    complexity_band,
    predicted_success,
    prior_success,
)
from nofx.patterns.history import pattern_history
from nofx.store import EventStore

__all__ = [
    "CHOOSABLE",
    "COST_FACTOR",
    "MIN_HISTORY",
    "PRIOR_SESSIONS",
    "PatternChoice",
    "PatternStats",
    "choose_pattern",
    "complexity_band",
    "make_auto",
    "pattern_history",
    "predicted_success",
    "prior_success",
]

HistoryReader = Callable[[EventStore, str, str, float], dict[PatternName, PatternStats]]


def make_auto(
    runners: dict[PatternName, PatternRunner], history_reader: HistoryReader = pattern_history
) -> PatternRunner:
    """The auto runner: reads the record (off the loop), chooses, records the choice durably
    (a resumed session replays it rather than choosing again), runs the chosen pattern."""

    async def run_auto(execution: Execution) -> PatternResult:
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
            history = await asyncio.to_thread(
                history_reader,
                runtime.store,
                session.tenant_id,
                session.task.capability,
                session.task.complexity,
            )
            choice = choose_pattern(
                session.task,
                budget_usd=session.budget_usd,
                deadline_s=session.deadline_s,
                available_capabilities=frozenset(runtime.registry.capabilities(session.tenant_id)),
                history=history,
                solo_cost_usd=cheapest,
            )
            execution.emit(
                "PatternChosen",
                {
                    "pattern": choice.pattern.value,
                    "reasons": list(choice.reasons),
                    "scores": choice.scores,
                    "predicted_success": choice.predicted,
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
