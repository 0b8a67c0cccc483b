"""A tenant's alert rules over HTTP: the defaults it inherits and the rules it defines."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Body, Depends, Path, Request, Response
from pydantic import BaseModel, Field

from nofx.alert_rules import AlertRule, Comparison, Severity, TenantRules, load_rules
from nofx.api.deps import reader, writer
from nofx.api.parsed import ParsedJsonRoute
from nofx.security import Principal

router = APIRouter(prefix="/alert-rules", tags=["alerts"], route_class=ParsedJsonRoute)
RULE_ID = Path(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="the rule's id")


class RuleIn(BaseModel):
    metric: str = Field(
        max_length=100,
        description="a built-in metric, forecast:<metric> or custom:<your metric's name>",
        examples=["custom:daily_spend_usd"],
    )
    comparison: Literal["above", "below"]
    threshold: float
    severity: Literal["info", "warning", "critical"] = "warning"
    min_samples: int = Field(default=1, ge=1, le=1_000_000)
    description: str = Field(default="", max_length=500)


class RuleOut(RuleIn):
    rule_id: str
    source: Literal["default", "tenant"] = Field(
        description="default: inherited; tenant: yours (overrides a default with its id)"
    )


def _rules(request: Request) -> TenantRules:
    return TenantRules(request.app.state.services.store)


def _out(rule: AlertRule, source: Literal["default", "tenant"]) -> RuleOut:
    return RuleOut(
        rule_id=rule.rule_id,
        metric=rule.metric,
        comparison=rule.comparison.value,
        threshold=rule.threshold,
        severity=rule.severity.value,
        min_samples=rule.min_samples,
        description=rule.description,
        source=source,
    )


@router.get("", response_model=list[RuleOut], summary="The rules your alerts are evaluated on")
def list_rules(request: Request, principal: Principal = Depends(reader)) -> list[RuleOut]:
    own = {r.rule_id: r for r in _rules(request).list(principal.tenant_id)}
    out = [
        _out(own.pop(r.rule_id), "tenant") if r.rule_id in own else _out(r, "default")
        for r in load_rules()
    ]
    return out + [_out(r, "tenant") for r in own.values()]


@router.put("/{rule_id}", response_model=RuleOut, summary="Define or replace one of your rules")
def put_rule(
    request: Request,
    body: RuleIn = Body(
        openapi_examples={
            "custom metric": {
                "value": {
                    "metric": "custom:daily_spend_usd",
                    "comparison": "above",
                    "threshold": 5.0,
                    "severity": "warning",
                    "description": "the last day's sessions cost more than $5",
                }
            },
            "looser default": {
                "value": {
                    "metric": "session_failure_rate",
                    "comparison": "above",
                    "threshold": 0.05,
                    "severity": "critical",
                    "min_samples": 50,
                }
            },
        }
    ),
    rule_id: str = RULE_ID,
    principal: Principal = Depends(writer),
) -> RuleOut:
    """Evaluated by the data platform after each refresh; a default's id overrides it for you."""
    rule = AlertRule(
        rule_id=rule_id,
        metric=body.metric,
        comparison=Comparison(body.comparison),
        threshold=body.threshold,
        severity=Severity(body.severity),
        min_samples=body.min_samples,
        description=body.description,
    )
    _rules(request).put(principal.tenant_id, rule, by=principal.key_id)
    return _out(rule, "tenant")


@router.delete("/{rule_id}", status_code=204, summary="Delete one of your rules")
def delete_rule(
    request: Request, rule_id: str = RULE_ID, principal: Principal = Depends(writer)
) -> Response:
    _rules(request).remove(principal.tenant_id, rule_id, by=principal.key_id)
    return Response(status_code=204)
