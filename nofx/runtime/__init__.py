"""The asyncio runtime: claims requested sessions, runs their pattern, records every step as events.

Execution is durable: every step outcome is an event with an idempotency key,
and a step that already completed is answered from the event log instead of
calling the agent again. A runtime that dies mid-session leaves a lease that
expires; whichever runtime claims the session next resumes it where it stopped.

This package's ``Runtime`` is a composition root: the engine (``nofx.runtime.engine``),
which imports no pattern, with the built-in patterns (``nofx.patterns``) registered.
Patterns see the runtime only through ``nofx.execution`` (ADR 0019).
"""

from __future__ import annotations

from collections.abc import Mapping

from nofx.agents import ProviderSet
from nofx.domain import PatternName
from nofx.execution import PatternResult, PatternRunner, StepError, StepResult
from nofx.patterns import default_patterns, run_solo
from nofx.registry import AgentRegistry
from nofx.routing.selection import Selector
from nofx.runtime.config import RuntimeConfig, default_worker_id
from nofx.runtime.engine import Engine, RunSummary
from nofx.runtime.session import SessionExecution
from nofx.store import EventStore

__all__ = [
    "Engine",
    "PatternResult",
    "PatternRunner",
    "RunSummary",
    "Runtime",
    "RuntimeConfig",
    "SessionExecution",
    "StepError",
    "StepResult",
    "default_worker_id",
    "run_solo",
]


class Runtime(Engine):
    """The engine with the built-in patterns: every pattern of ``nofx.patterns`` unless
    ``patterns`` is given, and solo always."""

    def __init__(
        self,
        store: EventStore,
        registry: AgentRegistry | None = None,
        providers: ProviderSet | None = None,
        selector: Selector | None = None,
        config: RuntimeConfig | None = None,
        patterns: Mapping[PatternName, PatternRunner] | None = None,
    ) -> None:
        runners = default_patterns() if patterns is None else patterns
        super().__init__(
            store,
            registry,
            providers,
            selector,
            config,
            patterns={PatternName.SOLO: run_solo, **runners},
        )
