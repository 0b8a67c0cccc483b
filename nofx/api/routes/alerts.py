"""Alerts over HTTP: what is firing, what fired, acknowledging and resolving by hand.

A tenant sees and manages only its own alerts. The operator's fleet alerts (API processes,
shared models) are read and managed with ``?scope=fleet`` by a key with the ``metrics``
scope, which no tenant admin can mint."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, Field

from nofx.alerts import FLEET_TENANT, AlertService
from nofx.api import pagination
from nofx.api.deps import reader, writer
from nofx.api.parsed import ParsedJsonRoute
from nofx.security import Principal, Scope

router = APIRouter(prefix="/alerts", tags=["alerts"], route_class=ParsedJsonRoute)


class AlertOut(BaseModel):
    alert_id: str
    rule_id: str
    metric: str
    subject: str
    fingerprint: str = Field(description="rule/subject: one open alert per fingerprint")
    severity: str
    status: str
    message: str
    value: float
    threshold: float
    occurrences: int = Field(description="evaluations that found it firing")
    first_seen_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None


class AlertPage(BaseModel):
    items: list[AlertOut]
    next_cursor: str | None = None


class ResolveIn(BaseModel):
    note: str = Field(default="", max_length=2000, description="why it is resolved")


class AcknowledgeIn(BaseModel):
    note: str = Field(default="", max_length=2000, description="who is on it, and how")


AlertScope = Literal["tenant", "fleet"]
SCOPE_QUERY = Query(
    default="tenant",
    description="tenant: your alerts; fleet: the operator's (needs the metrics scope)",
)


def owner(principal: Principal, scope: AlertScope) -> str:
    """Whose alerts the call may touch: the caller's tenant, or the fleet for an operator."""
    if scope == "fleet":
        principal.require(Scope.METRICS)
        return FLEET_TENANT
    return principal.tenant_id


def _alerts(request: Request) -> AlertService:
    return AlertService(request.app.state.services.store)


def _out(alert: object) -> AlertOut:
    data = alert.as_dict()  # type: ignore[attr-defined]
    data.pop("tenant_id")
    return AlertOut(**data)


@router.get("", response_model=AlertPage, summary="List alerts, most recent activity first")
def list_alerts(
    request: Request,
    status: Literal["open", "acknowledged", "resolved"] | None = Query(default=None),
    severity: Literal["info", "warning", "critical"] | None = Query(default=None),
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = Query(default=None, max_length=500),
    scope: AlertScope = SCOPE_QUERY,
    principal: Principal = Depends(reader),
) -> AlertPage:
    """Raised by the data platform's rule evaluation after each refresh (see nofx.alerts)."""
    position = pagination.decode(cursor, pagination.NEWEST_FIRST)
    before = (datetime.fromisoformat(position["t"]), str(position["id"])) if position else None
    items = _alerts(request).list(
        tenant_id=owner(principal, scope),
        status=status,
        severity=severity,
        limit=limit + 1,
        before=before,
    )
    items, next_cursor = pagination.page(
        items, limit, lambda a: {"t": a.last_seen_at.isoformat(), "id": a.alert_id}
    )
    return AlertPage(items=[_out(a) for a in items], next_cursor=next_cursor)


@router.get("/{alert_id}", response_model=AlertOut, summary="One alert")
def get_alert(
    alert_id: str,
    request: Request,
    scope: AlertScope = SCOPE_QUERY,
    principal: Principal = Depends(reader),
) -> AlertOut:
    return _out(_alerts(request).get(alert_id, tenant_id=owner(principal, scope)))


@router.post(
    "/{alert_id}/acknowledge", response_model=AlertOut, summary="Acknowledge an open alert"
)
def acknowledge_alert(
    alert_id: str,
    request: Request,
    body: AcknowledgeIn = Body(
        default=AcknowledgeIn(),
        openapi_examples={"on it": {"value": {"note": "looking at the orion-pro pool"}}},
    ),
    scope: AlertScope = SCOPE_QUERY,
    principal: Principal = Depends(writer),
) -> AlertOut:
    """It stays active (and keeps counting occurrences) until it clears or is resolved."""
    by = principal.key_id or "api"
    alert = _alerts(request).acknowledge(
        alert_id, by=by, note=body.note, tenant_id=owner(principal, scope)
    )
    return _out(alert)


@router.post("/{alert_id}/resolve", response_model=AlertOut, summary="Resolve an open alert")
def resolve_alert(
    alert_id: str,
    request: Request,
    body: ResolveIn = Body(
        default=ResolveIn(),
        openapi_examples={"fixed": {"value": {"note": "rolled back the bad agent version"}}},
    ),
    scope: AlertScope = SCOPE_QUERY,
    principal: Principal = Depends(writer),
) -> AlertOut:
    """If the condition still holds at the next evaluation, it comes back as a new alert."""
    by = principal.key_id or "api"
    alert = _alerts(request).resolve(
        alert_id, by=by, note=body.note, tenant_id=owner(principal, scope)
    )
    return _out(alert)
