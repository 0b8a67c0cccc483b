"""Orchestration patterns: plain async code over ``nofx.execution.Execution``'s durable
``call_step``. They import the contract, never the runtime (ADR 0019)."""

from __future__ import annotations

from nofx.patterns.builtin import default_patterns
from nofx.patterns.choice import choose_pattern
from nofx.patterns.hierarchical import run_hierarchical
from nofx.patterns.pair import run_pair
from nofx.patterns.solo import run_solo
from nofx.patterns.swarm import run_swarm
from nofx.patterns.workflow import run_workflow

__all__ = [
    "choose_pattern",
    "default_patterns",
    "run_hierarchical",
    "run_pair",
    "run_solo",
    "run_swarm",
    "run_workflow",
]
