"""The contract between the runtime and the patterns (ADR 0019).

A pattern is ``async def run_x(execution: Execution) -> PatternResult``: plain code over a
durable ``call_step``. The runtime (``nofx.runtime``) implements ``Execution``; the patterns
(``nofx.patterns``) use it; neither imports the other. The composition roots
(``nofx.runtime.Runtime``, the CLI, the API) hand the patterns to the runtime.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from nofx.domain import Agent, Event, Message, Session
from nofx.errors import NofxError
from nofx.registry import AgentRegistry
from nofx.routing.selection import Selector
from nofx.store import EventStore

__all__ = [
    "Execution",
    "ExecutionConfig",
    "ExecutionRuntime",
    "PatternResult",
    "PatternRunner",
    "StepError",
    "StepResult",
]


class StepError(NofxError):
    """A step ran out of options; the session fails with this error type (and the store
    records a ``StepFailed`` event: this is the exception, that is the fact)."""

    code = "step-failed"
    http_status = 422

    def __init__(self, step_id: str, error_type: str, message: str) -> None:
        super().__init__(message)
        self.step_id = step_id
        self.error_type = error_type


@dataclass(frozen=True)
class StepResult:
    step_id: str
    agent_id: str
    agent_name: str
    output: str
    cost_usd: float
    latency_ms: float
    input_tokens: int
    output_tokens: int
    replayed: bool = False
    quality: float | None = None


@dataclass(frozen=True)
class PatternResult:
    output: str
    agent_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class ExecutionConfig(Protocol):
    """The runtime settings a pattern may read."""

    @property
    def time_scale(self) -> float: ...


class ExecutionRuntime(Protocol):
    """What a pattern may ask the runtime running it: the store (for its own facts), the
    agents on offer and how the selector ranks them."""

    @property
    def store(self) -> EventStore: ...

    @property
    def registry(self) -> AgentRegistry: ...

    @property
    def selector(self) -> Selector: ...

    @property
    def config(self) -> ExecutionConfig: ...

    def candidates(self, tenant_id: str, capability: str) -> list[Agent]: ...


class Execution(Protocol):
    """What a pattern sees: the session, its events so far, and durable steps and writes
    (implemented by ``nofx.runtime.SessionExecution``)."""

    @property
    def runtime(self) -> ExecutionRuntime: ...

    @property
    def session(self) -> Session: ...

    @property
    def history(self) -> list[Event]: ...

    @property
    def state(self) -> dict[str, Any] | None: ...

    @property
    def rng(self) -> random.Random: ...

    async def call_step(
        self,
        step_id: str,
        capability: str,
        prompt: str,
        *,
        input_tokens: int | None = None,
        complexity: float | None = None,
        min_proficiency: int = 1,
        exclude: frozenset[str] = frozenset(),
        max_attempts: int | None = None,
        write_with_next: bool = False,
        context: dict[str, Any] | None = None,
    ) -> StepResult: ...

    def defer(self, event_type: str, payload: dict[str, Any], key: str | None = None) -> None: ...

    def emit(self, event_type: str, payload: dict[str, Any], key: str | None = None) -> None: ...

    async def write(
        self,
        event_type: str,
        payload: dict[str, Any],
        key: str | None = None,
        *,
        release_lease: bool = False,
    ) -> list[Event]: ...

    def publish(self, message: Message) -> None: ...

    async def flush(self) -> None: ...

    def spent_usd(self) -> float: ...


PatternRunner = Callable[[Execution], Awaitable[PatternResult]]
