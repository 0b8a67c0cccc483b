"""The provider interface every agent kind implements, and the errors it may raise.

Errors are classified because the retry policy differs: a transient error is
retried on the same agent after a back-off, an agent fault moves the work to
another agent, a permanent error fails fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from nofx.domain import Agent
from nofx.errors import NofxError
from nofx.failures import ErrorClass
from nofx.security.policy import (
    ExecutableNotFoundError,
    InlineSecretError,
    OperatorPolicy,
    PolicyDeniedError,
    PolicyFileError,
    policy_from_settings,
)


class AgentCallError(NofxError):
    """Raised by a provider. ``error_type`` follows OpenTelemetry's ``error.type``."""

    code = "agent-call-failed"
    http_status = 502
    error_class = ErrorClass.AGENT_FAULT

    def __init__(
        self,
        message: str,
        *,
        error_type: str,
        latency_ms: float = 0.0,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: float = 0.0,
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.latency_ms = latency_ms
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.cost_usd = cost_usd


class TransientAgentError(AgentCallError):
    error_class = ErrorClass.TRANSIENT


class AgentFaultError(AgentCallError):
    error_class = ErrorClass.AGENT_FAULT


class PermanentAgentError(AgentCallError):
    error_class = ErrorClass.PERMANENT


@dataclass(frozen=True)
class AgentCall:
    """One request to one agent. ``call_id`` makes simulated outcomes reproducible."""

    call_id: str
    capability: str
    prompt: str
    input_tokens: int
    complexity: float = 0.5
    timeout_s: float = 60.0
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentResult:
    output: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_ms: float
    quality: float | None = None
    simulated: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)


class AgentProvider(Protocol):
    """Anything that can run a call for an agent."""

    async def invoke(self, agent: Agent, call: AgentCall) -> AgentResult: ...


def refused(agent: Agent, exc: NofxError) -> PermanentAgentError:
    """A policy or configuration refusal at call time, as a permanent (never retried) error.

    ``policy_denied`` means the operator policy no longer allows this stored agent;
    ``policy_invalid`` that the policy cannot be read, so nothing runs (fail closed).
    """
    if isinstance(exc, PolicyDeniedError | InlineSecretError):
        error_type = "policy_denied"
    elif isinstance(exc, PolicyFileError):
        error_type = "policy_invalid"
    elif isinstance(exc, ExecutableNotFoundError):
        error_type = "executable_not_found"
    else:
        error_type = "configuration_error"
    return PermanentAgentError(f"agent {agent.name}: {exc}", error_type=error_type)


class PolicyBound:
    """A provider that checks every call against the operator policy.

    Given none, it reads this process's policy (settings) once, on first use.
    """

    def __init__(self, policy: OperatorPolicy | None = None) -> None:
        self._policy = policy

    @property
    def policy(self) -> OperatorPolicy:
        if self._policy is None:
            self._policy = policy_from_settings()
        return self._policy

    def policy_for(self, agent: Agent) -> OperatorPolicy:
        """The policy, or a permanent error for this call when it cannot be read (fail closed)."""
        try:
            return self.policy
        except NofxError as exc:
            raise refused(agent, exc) from None
