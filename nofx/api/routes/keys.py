"""API keys for a tenant: create (the secret is shown once), list, revoke. Admin scope."""

from __future__ import annotations

import time
from datetime import datetime

from fastapi import APIRouter, Body, Depends, Path, Response, status
from pydantic import BaseModel, Field

from nofx.api.deps import Services, admin, services
from nofx.api.limits import QuotaExceeded, TooBusy
from nofx.api.parsed import ParsedJsonRoute
from nofx.errors import NotFoundError
from nofx.security import ApiKey, Principal, Scope
from nofx.security.keys import TENANT_SCOPES, PermissionDenied

router = APIRouter(prefix="/keys", tags=["keys"], route_class=ParsedJsonRoute)


class KeyRequest(BaseModel):
    model_config = {"extra": "forbid"}

    name: str = Field(min_length=1, max_length=120, examples=["ci-pipeline"])
    scopes: set[Scope] = Field(min_length=1, examples=[["read"]])
    rate_per_s: float = Field(default=50.0, gt=0, le=100_000, allow_inf_nan=False)
    burst: float = Field(default=100.0, ge=1, le=100_000, allow_inf_nan=False)


class KeyOut(BaseModel):
    key_id: str
    tenant_id: str
    name: str
    scopes: list[str]
    rate_per_s: float
    burst: float
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        return cls(
            key_id=key.key_id,
            tenant_id=key.tenant_id,
            name=key.name,
            scopes=sorted(s.value for s in key.scopes),
            rate_per_s=key.rate_per_s,
            burst=key.burst,
            created_at=key.created_at,
            revoked_at=key.revoked_at,
        )


class IssuedKeyOut(KeyOut):
    key: str = Field(description="the secret: shown once, store it now")


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=IssuedKeyOut, summary="Create a key"
)
def create_key(
    body: KeyRequest = Body(
        openapi_examples={
            "ci": {
                "summary": "a read-only key for a CI job, 5 requests/s",
                "value": {"name": "ci", "scopes": ["read"], "rate_per_s": 5, "burst": 10},
            }
        }
    ),
    principal: Principal = Depends(admin),
    svc: Services = Depends(services),
) -> IssuedKeyOut:
    """The secret is in the answer once; only its hash is stored. A tenant holds at most
    NOFX_API_MAX_KEYS_PER_TENANT active keys (409 past it) and mints at most
    NOFX_API_KEY_MINTS_PER_MINUTE (429); whatever the keys' own rates, together they stay
    under the tenant's ceiling (NOFX_API_TENANT_RATE_PER_S)."""
    if extra := body.scopes - TENANT_SCOPES:
        raise PermissionDenied(
            f"a tenant key cannot have the {', '.join(sorted(extra))} scope",
            hint="metrics covers every tenant: the operator grants it with "
            "`nofx keys create --scope metrics`",
        )
    limits = svc.limits
    tenant = principal.tenant_id
    allowed, retry_after = svc.limiter.check(
        f"mint:{tenant}",
        limits.key_mints_per_minute / 60.0,
        limits.key_mints_per_minute,
        time.time(),
    )
    if not allowed:
        raise TooBusy(
            "this tenant is creating API keys too fast",
            hint="the operator sets NOFX_API_KEY_MINTS_PER_MINUTE",
            retry_after=retry_after,
        )
    if svc.keys.count_active(tenant) >= limits.max_keys_per_tenant:
        raise QuotaExceeded(
            f"this tenant has {limits.max_keys_per_tenant} active API keys, the most the "
            "operator allows",
            hint="revoke keys you no longer use (DELETE /api/v1/keys/{key_id}), or ask the "
            "operator to raise NOFX_API_MAX_KEYS_PER_TENANT",
        )
    issued = svc.keys.create(
        principal.tenant_id, body.name, body.scopes, rate_per_s=body.rate_per_s, burst=body.burst
    )
    return IssuedKeyOut(**KeyOut.of(issued.key).model_dump(), key=issued.plaintext)


@router.get("", response_model=list[KeyOut], summary="List the tenant's keys (never their secrets)")
def list_keys(
    principal: Principal = Depends(admin), svc: Services = Depends(services)
) -> list[KeyOut]:
    return [KeyOut.of(k) for k in svc.keys.list(principal.tenant_id)]


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Revoke a key")
def revoke_key(
    key_id: str = Path(max_length=64),
    principal: Principal = Depends(admin),
    svc: Services = Depends(services),
) -> Response:
    if svc.keys.get(key_id).tenant_id != principal.tenant_id:
        raise NotFoundError(f"no API key {key_id!r}")
    svc.keys.revoke(key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
