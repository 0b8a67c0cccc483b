"""Response shapes of the HTTP API (requests reuse nofx.domain's models)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from nofx.domain import Agent, Session

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class Health(BaseModel):
    status: str
    version: str
    store: str
    last_position: int
    worker_pid: int = Field(
        description="the API process that answered (one of the uvicorn workers)"
    )


class EventOut(BaseModel):
    position: int
    seq: int
    type: str
    occurred_at: datetime
    payload: dict[str, Any]


class CandidateOut(BaseModel):
    agent_id: str
    name: str
    score: float
    expected_success: float
    expected_cost_usd: float
    expected_latency_ms: float | None
    reasons: list[str]


class SelectionOut(BaseModel):
    capability: str
    optimize: str
    candidates: list[CandidateOut]


AgentPage = Page[Agent]
SessionPage = Page[Session]
