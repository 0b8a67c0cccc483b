"""Request dependencies: the services on app.state, and who is calling."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Header, Request

from nofx.registry import AgentRegistry
from nofx.sessions import SessionService
from nofx.store import EventStore


@dataclass(frozen=True)
class Services:
    store: EventStore
    registry: AgentRegistry
    sessions: SessionService


def services(request: Request) -> Services:
    return request.app.state.services


@dataclass(frozen=True)
class Principal:
    """The caller's tenant. API keys with scopes replace the header in one place: here."""

    tenant_id: str


def current_principal(
    x_tenant_id: str = Header(default="default", max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$"),
) -> Principal:
    return Principal(tenant_id=x_tenant_id)
