"""The built-in patterns by name: what a composition root (``nofx.runtime.Runtime``) hands
the engine."""

from __future__ import annotations

from nofx.domain import PatternName
from nofx.execution import PatternRunner
from nofx.patterns.auto import make_auto
from nofx.patterns.hierarchical import run_hierarchical
from nofx.patterns.pair import run_pair
from nofx.patterns.solo import run_solo
from nofx.patterns.swarm import run_swarm
from nofx.patterns.workflow import run_workflow


def default_patterns() -> dict[PatternName, PatternRunner]:
    runners: dict[PatternName, PatternRunner] = {
        PatternName.SOLO: run_solo,
        PatternName.PAIR: run_pair,
        PatternName.HIERARCHICAL: run_hierarchical,
        PatternName.SWARM: run_swarm,
    }
    runners[PatternName.AUTO] = make_auto(dict(runners))
    runners[PatternName.WORKFLOW] = run_workflow
    return runners
