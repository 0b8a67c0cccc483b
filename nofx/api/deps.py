"""Request dependencies: the services on app.state, and who is calling with what rights.

Callers authenticate with ``Authorization: Bearer nofx_<id>_<secret>``; the key
decides the tenant and the scopes, and carries its rate limit. With
``NOFX_API_AUTH=off`` (local experiments only) the tenant comes from
``X-Tenant-ID`` and every scope is granted.

The event loop never waits on the database (issue 10: one slow read stalled every tenant's
requests): ``current_principal`` answers on the loop only from memory (a key verified within
the last second, tokens this process leased from the key's and the tenant's buckets) and
awaits a thread for anything that reads or writes the store (issue 12: a thread hand-off
and two store round trips per request were most of a request's cost). Routes follow the same
rule: a handler that touches the store is ``def``, or awaits its store calls through
``anyio.to_thread``.

Besides the key's own rate limit, every request takes a token from its tenant's bucket
(the operator's ceiling, ``NOFX_API_TENANT_RATE_PER_S``), so minting keys does not multiply
a tenant's rate; failed authentication is throttled per client address (FailureGuard).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio.to_thread
from fastapi import Depends, Header, Request, Response
from pydantic import BaseModel

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


def json_response(
    model: BaseModel, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """The model as JSON, serialised where the handler runs (in the thread pool for a
    ``def`` route). Returned as a Response, FastAPI neither validates the model against the
    route's ``response_model`` again nor encodes it on the event loop: the model is that type
    already (the route's declared ``response_model`` still documents it)."""
    return Response(
        model.model_dump_json(),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


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


async def current_principal(
    request: Request,
    authorization: str | None = Header(default=None, description="Bearer nofx_<id>_<secret>"),
    x_tenant_id: str = Header(default="default", max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$"),
    svc: Services = Depends(services),
) -> Principal:
    """On the event loop when memory answers (a key verified within the last second, tokens
    leased from both buckets); in a thread when the store must be read or written."""
    if not svc.auth_required:
        principal = Principal(tenant_id=x_tenant_id, scopes=expand({Scope.ADMIN, Scope.METRICS}))
    else:
        now = time.time()
        client = request.client.host if request.client else "unknown"
        if wait := svc.auth_guard.blocked_for(client, now):
            raise TooManyFailures(wait)
        token = _bearer(authorization)
        principal = svc.keys.cached(token)  # type: ignore[assignment]
        if principal is None:
            principal = await anyio.to_thread.run_sync(_authenticate, svc, token, client, now)
        await _within_limits(svc, principal, now)
    request.state.principal = principal
    return principal


def _authenticate(svc: Services, token: str | None, client: str, now: float) -> Principal:
    try:
        return svc.keys.authenticate(token)
    except AuthenticationError:
        if token:  # a key was presented and was wrong: a guess, which costs
            svc.auth_guard.failed(client, now)
        raise


async def _within_limits(svc: Services, principal: Principal, now: float) -> None:
    """The key's own bucket, then its tenant's: each answered from leased tokens when it can,
    from the store (in a thread) when it cannot."""
    limits = svc.limits
    for bucket, rate, burst in (
        (principal.key_id or "", principal.rate_per_s, principal.burst),
        (f"tenant:{principal.tenant_id}", limits.tenant_rate_per_s, limits.tenant_burst),
    ):
        verdict = svc.limiter.check_nowait(bucket, rate, burst, now)
        if verdict is None:
            verdict = await anyio.to_thread.run_sync(svc.limiter.check, bucket, rate, burst, now)
        allowed, retry_after = verdict
        if allowed:
            continue
        if bucket.startswith("tenant:"):
            raise RateLimited(
                retry_after,
                "this tenant",
                hint="every key of a tenant shares the operator's ceiling "
                "(NOFX_API_TENANT_RATE_PER_S); slow down",
            )
        raise RateLimited(retry_after)


def requires(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency that lets the call through only with ``scope``."""

    async def check(
        request: Request,
        authorization: str | None = Header(default=None, description="Bearer nofx_<id>_<secret>"),
        x_tenant_id: str = Header(default="default", max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$"),
    ) -> Principal:
        # current_principal called, not depended on, and the services read from the app,
        # not depended on: each level of FastAPI's dependency solving costs CPU per request
        # (the parameters, and so the spec, are the same)
        svc: Services = request.app.state.services
        principal = await current_principal(request, authorization, x_tenant_id, svc)
        principal.require(scope)
        return principal

    check.__name__ = f"requires_{scope.value}"
    return check


reader = requires(Scope.READ)
writer = requires(Scope.WRITE)
admin = requires(Scope.ADMIN)
metrics_reader = requires(Scope.METRICS)
