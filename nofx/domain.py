"""Shared domain models. Pydantic at the edges (API, files, event payloads)."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nofx import simclock

CAPABILITY_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")


def utcnow() -> datetime:
    return datetime.now(UTC) + simclock.offset()  # zero unless a demo simulates history


def new_id(prefix: str) -> str:
    """``<prefix>_`` and 80 random bits in hex (20 characters, the length ids always had).
    Straight from ``os.urandom``: building a ``uuid.UUID`` to keep part of its hex cost 7 us
    an id, paid for every message, session and key."""
    return f"{prefix}_{os.urandom(10).hex()}"


class Strict(BaseModel):
    """Rejects unknown fields so a typo in a spec is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid")


class Capability(Strict):
    """A skill an agent offers, with a declared proficiency from 1 (novice) to 5 (expert)."""

    name: str = Field(examples=["code.generate"])
    proficiency: int = Field(default=3, ge=1, le=5)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not CAPABILITY_NAME.match(value):
            raise ValueError(
                f"capability name {value!r} is not valid: use lower-case dotted words such as "
                "'code.generate' or 'text.summarize'"
            )
        return value


class Pricing(Strict):
    """What a call costs, in USD."""

    input_per_1k_tokens: float = Field(default=0.0, ge=0)
    output_per_1k_tokens: float = Field(default=0.0, ge=0)
    per_call: float = Field(default=0.0, ge=0)

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (
            self.per_call
            + input_tokens / 1000 * self.input_per_1k_tokens
            + output_tokens / 1000 * self.output_per_1k_tokens
        )


class ProviderKind(StrEnum):
    SIMULATED = "simulated"
    OPENAI = "openai"
    COMMAND = "command"
    PYTHON = "python"


class ProviderSpec(Strict):
    """How an agent is called. ``config`` is provider-specific (see nofx.agents)."""

    kind: ProviderKind = ProviderKind.SIMULATED
    config: dict[str, Any] = Field(default_factory=dict)


class AgentSpec(Strict):
    """What a user registers."""

    name: str = Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    capabilities: list[Capability] = Field(min_length=1)
    provider: ProviderSpec = Field(default_factory=ProviderSpec)
    pricing: Pricing = Field(default_factory=Pricing)
    max_concurrency: int = Field(default=4, ge=1, le=10_000)
    tenant_id: str = Field(default="default", min_length=1, max_length=64)
    labels: dict[str, str] = Field(default_factory=dict)
    context_window_tokens: int | None = Field(
        default=None,
        ge=1,
        le=100_000_000,
        description="the most input tokens the agent accepts; the router predicts a longer "
        "prompt fails (unknown when absent)",
    )

    @model_validator(mode="after")
    def _unique_capabilities(self) -> AgentSpec:
        seen: set[str] = set()
        repeated: set[str] = set()
        for cap in self.capabilities:  # linear: a long list must not cost quadratic time
            (repeated if cap.name in seen else seen).add(cap.name)
        dupes = sorted(repeated)
        if dupes:
            raise ValueError(f"capability listed twice: {', '.join(dupes)}; list each once")
        return self

    def proficiency(self, capability: str) -> int:
        for cap in self.capabilities:
            if cap.name == capability:
                return cap.proficiency
        return 0


class AgentStatus(StrEnum):
    ACTIVE = "active"
    DEREGISTERED = "deregistered"


class Agent(AgentSpec):
    """A registered agent: the spec plus identity and version."""

    model_config = ConfigDict(extra="ignore")

    agent_id: str
    version: int = 1
    status: AgentStatus = AgentStatus.ACTIVE
    created_at: datetime
    updated_at: datetime


class PatternName(StrEnum):
    SOLO = "solo"
    PAIR = "pair"
    HIERARCHICAL = "hierarchical"
    SWARM = "swarm"
    AUTO = "auto"
    WORKFLOW = "workflow"


class Task(Strict):
    """The work a session does."""

    prompt: str = Field(min_length=1, max_length=100_000)
    capability: str = Field(examples=["code.generate"])
    complexity: float = Field(default=0.5, ge=0.0, le=1.0, description="0 trivial .. 1 very hard")
    input_tokens: int = Field(default=800, ge=1, le=2_000_000)

    @field_validator("capability")
    @classmethod
    def _valid_capability(cls, value: str) -> str:
        return Capability(name=value).name


class SessionRequest(Strict):
    task: Task
    pattern: PatternName = PatternName.SOLO
    tenant_id: str = Field(default="default", min_length=1, max_length=64)
    budget_usd: float | None = Field(default=None, gt=0)
    deadline_s: float | None = Field(default=None, gt=0)
    optimize: Literal["balanced", "cost", "latency", "success"] = "balanced"
    max_attempts: int = Field(default=3, ge=1, le=10)
    idempotency_key: str | None = Field(default=None, max_length=200)
    wait_for_recovery_s: float | None = Field(
        default=None,
        ge=0,
        le=3600,
        description=(
            "when every qualified agent is cut off by its circuit breaker, wait up to this "
            "long for one to recover instead of failing the step"
        ),
    )
    workflow: dict[str, Any] | None = Field(
        default=None,
        description="with pattern 'workflow': the DAG of steps to run (see nofx.workflows)",
    )

    @model_validator(mode="after")
    def _workflow_with_its_pattern(self) -> SessionRequest:
        if (self.pattern is PatternName.WORKFLOW) != (self.workflow is not None):
            raise ValueError(
                "pattern 'workflow' and a 'workflow' spec go together: give both or neither"
            )
        return self


class SessionStatus(StrEnum):
    REQUESTED = "requested"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (SessionStatus.SUCCEEDED, SessionStatus.FAILED, SessionStatus.CANCELLED)


class Session(BaseModel):
    """The projection of a session's events."""

    session_id: str
    tenant_id: str
    pattern: PatternName
    status: SessionStatus
    task: Task
    budget_usd: float | None = None
    deadline_s: float | None = None
    optimize: str = "balanced"
    max_attempts: int = 3
    wait_for_recovery_s: float | None = None
    agent_id: str | None = None
    attempts: int = 0
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    output: str | None = None
    error_type: str | None = None
    created_at: datetime
    updated_at: datetime
    version: int = 0


class Message(Strict):
    """What agents say to each other: on a session topic, or on a direct channel to one agent.

    ``message_id`` makes delivery idempotent: publishing the same id twice stores it once.
    """

    message_id: str = Field(default_factory=lambda: new_id("msg"), min_length=1, max_length=100)
    session_id: str | None = None
    sender: str = Field(min_length=1, max_length=120, description="agent id or role")
    topic: str | None = Field(
        default=None, max_length=200, description="session topic, e.g. session-<id>"
    )
    recipient: str | None = Field(
        default=None, max_length=120, description="direct channel: one agent"
    )
    body: dict[str, Any] = Field(default_factory=dict)
    tenant_id: str = Field(default="default", min_length=1, max_length=64)

    @model_validator(mode="after")
    def _one_destination(self) -> Message:
        if (self.topic is None) == (self.recipient is None):
            raise ValueError("a message goes to exactly one of: a topic, or a recipient")
        return self

    @property
    def channel(self) -> str:
        return f"topic:{self.topic}" if self.topic is not None else f"direct:{self.recipient}"


class Event(BaseModel):
    """An immutable fact. ``position`` is global order; ``seq`` is the order within its stream."""

    position: int
    stream_id: str
    stream_type: str
    seq: int
    type: str
    tenant_id: str
    occurred_at: datetime
    idempotency_key: str | None = None
    payload: dict[str, Any]


class NewEvent(BaseModel):
    type: str
    payload: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = None

    @classmethod
    def trusted(cls, type: str, payload: dict[str, Any], key: str | None = None) -> NewEvent:
        """An event whose values the caller built itself (a str type, a dict payload, a str
        or None key): no validation. The runtime makes ~5 per step; validating each cost
        ~7 us, ``model_construct`` ~4 us, this ~1 us (ADR 0024)."""
        event = cls.__new__(cls)
        _set(event, "__dict__", {"type": type, "payload": payload, "idempotency_key": key})
        _set(event, "__pydantic_fields_set__", {"type", "payload", "idempotency_key"})
        _set(event, "__pydantic_extra__", None)
        _set(event, "__pydantic_private__", None)
        return event


_set = object.__setattr__
