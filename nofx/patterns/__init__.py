"""Orchestration patterns: plain async code over the runtime's durable ``call_step``."""

from __future__ import annotations

from nofx.domain import PatternName
from nofx.patterns.auto import choose_pattern, make_auto
from nofx.patterns.hierarchical import run_hierarchical
from nofx.patterns.pair import run_pair
from nofx.patterns.swarm import run_swarm
from nofx.runtime import PatternRunner, run_solo

__all__ = [
    "choose_pattern",
    "default_patterns",
    "run_hierarchical",
    "run_pair",
    "run_solo",
    "run_swarm",
]


def default_patterns() -> dict[PatternName, PatternRunner]:
    runners: dict[PatternName, PatternRunner] = {
        PatternName.SOLO: run_solo,
        PatternName.PAIR: run_pair,
        PatternName.HIERARCHICAL: run_hierarchical,
        PatternName.SWARM: run_swarm,
    }
    runners[PatternName.AUTO] = make_auto(dict(runners))
    from nofx.workflows.executor import run_workflow  # workflows build on patterns' helpers

    runners[PatternName.WORKFLOW] = run_workflow
    return runners
