"""Request dependencies: the services on app.state, and who is calling with what rights.

Callers authenticate with ``Authorization: Bearer nofx_<id>_<secret>``; the key
decides the tenant and the scopes, and carries its rate limit. With
``NOFX_API_AUTH=off`` (local experiments only) the tenant comes from
``X-Tenant-ID`` and every scope is granted.

The dependencies here, and the hot read endpoints, are ``async def`` although their store
calls are synchronous: each call takes well under a millisecond, and skipping FastAPI's
thread-pool hop per dependency cut the CPU per read request by about 30% (bench.api).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Depends, Header, Request

from nofx.errors import NofxError
from nofx.registry import AgentRegistry
from nofx.security import ApiKeyService, Limiter, Principal, Scope
from nofx.security.keys import expand
from nofx.sessions import SessionService
from nofx.store import EventStore


@dataclass(frozen=True)
class Services:
    store: EventStore
    registry: AgentRegistry
    sessions: SessionService
    keys: ApiKeyService
    limiter: Limiter
    auth_required: bool


async def services(request: Request) -> Services:
    return request.app.state.services


class RateLimited(NofxError):
    code = "rate-limited"
    http_status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"this API key is over its rate limit; retry after {retry_after} s",
            hint="slow down, or ask an admin for a key with a higher limit",
        )
        self.headers = {"Retry-After": str(retry_after)}


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


async def current_principal(
    request: Request,
    authorization: str | None = Header(default=None, description="Bearer nofx_<id>_<secret>"),
    x_tenant_id: str = Header(default="default", max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$"),
    svc: Services = Depends(services),
) -> Principal:
    if not svc.auth_required:
        principal = Principal(tenant_id=x_tenant_id, scopes=expand({Scope.ADMIN}))
    else:
        principal = svc.keys.authenticate(_bearer(authorization))
        allowed, retry_after = svc.limiter.check(
            principal.key_id or "", principal.rate_per_s, principal.burst, time.time()
        )
        if not allowed:
            raise RateLimited(retry_after)
    request.state.principal = principal
    return principal


def requires(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency that lets the call through only with ``scope``."""

    async def check(principal: Principal = Depends(current_principal)) -> Principal:
        principal.require(scope)
        return principal

    check.__name__ = f"requires_{scope.value}"
    return check


reader = requires(Scope.READ)
writer = requires(Scope.WRITE)
admin = requires(Scope.ADMIN)
