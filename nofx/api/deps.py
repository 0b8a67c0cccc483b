"""Request dependencies: the services on app.state, and who is calling with what rights.

Callers authenticate with ``Authorization: Bearer nofx_<id>_<secret>``; the key
decides the tenant and the scopes, and carries its rate limit. With
``NOFX_API_AUTH=off`` (local experiments only) the tenant comes from
``X-Tenant-ID`` and every scope is granted.

Authentication reads the store, so ``current_principal`` is a plain ``def``: FastAPI runs it
in its thread pool and the event loop never waits on the database (issue 10: one slow read
stalled every tenant's requests). Routes follow the same rule: a handler that touches the
store is ``def``, or awaits its store calls through ``anyio.to_thread``.

Besides the key's own rate limit, every request takes a token from its tenant's bucket
(the operator's ceiling, ``NOFX_API_TENANT_RATE_PER_S``), so minting keys does not multiply
a tenant's rate; failed authentication is throttled per client address (FailureGuard).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import Depends, Header, Request

from nofx.api.limits import ApiLimits
from nofx.errors import NofxError
from nofx.registry import AgentRegistry
from nofx.security import ApiKeyService, FailureGuard, Limiter, Principal, Scope
from nofx.security.keys import AuthenticationError, expand
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
    limits: ApiLimits = field(default_factory=ApiLimits)
    auth_guard: FailureGuard = field(default_factory=lambda: FailureGuard(20.0, 30.0))


async def services(request: Request) -> Services:
    return request.app.state.services


class RateLimited(NofxError):
    code = "rate-limited"
    http_status = 429

    def __init__(
        self,
        retry_after: int,
        what: str = "this API key",
        hint: str = "slow down, or ask an admin for a key with a higher limit",
    ) -> None:
        super().__init__(f"{what} is over its rate limit; retry after {retry_after} s", hint=hint)
        self.headers = {"Retry-After": str(retry_after)}


class TooManyFailures(NofxError):
    code = "too-many-failed-logins"
    http_status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"too many failed authentications from this address; retry after {retry_after} s",
            hint="check the API key you send (Authorization: Bearer nofx_<id>_<secret>)",
        )
        self.headers = {"Retry-After": str(retry_after)}


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def current_principal(
    request: Request,
    authorization: str | None = Header(default=None, description="Bearer nofx_<id>_<secret>"),
    x_tenant_id: str = Header(default="default", max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$"),
    svc: Services = Depends(services),
) -> Principal:
    if not svc.auth_required:
        principal = Principal(tenant_id=x_tenant_id, scopes=expand({Scope.ADMIN, Scope.METRICS}))
    else:
        now = time.time()
        client = request.client.host if request.client else "unknown"
        if wait := svc.auth_guard.blocked_for(client, now):
            raise TooManyFailures(wait)
        token = _bearer(authorization)
        try:
            principal = svc.keys.authenticate(token)
        except AuthenticationError:
            if token:  # a key was presented and was wrong: a guess, which costs
                svc.auth_guard.failed(client, now)
            raise
        allowed, retry_after = svc.limiter.check(
            principal.key_id or "", principal.rate_per_s, principal.burst, now
        )
        if not allowed:
            raise RateLimited(retry_after)
        limits = svc.limits
        allowed, retry_after = svc.limiter.check(
            f"tenant:{principal.tenant_id}", limits.tenant_rate_per_s, limits.tenant_burst, now
        )
        if not allowed:
            raise RateLimited(
                retry_after,
                "this tenant",
                hint="every key of a tenant shares the operator's ceiling "
                "(NOFX_API_TENANT_RATE_PER_S); slow down",
            )
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
metrics_reader = requires(Scope.METRICS)
