"""A tenant's custom business metrics over HTTP: define, list, read their computed values.

The SQL is checked when it is defined (one SELECT over the published marts) and computed by
the data platform in a sandbox that holds only the tenant's rows (nofx.metrics.sandbox).
Alert rules watch a metric as ``custom:<name>`` (PUT /alert-rules/{rule_id})."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field

from nofx.api.deps import reader, writer
from nofx.api.parsed import ParsedJsonRoute
from nofx.api.routes.analytics import CURSOR, Listing, read
from nofx.metrics import CustomMetric, CustomMetricService
from nofx.security import Principal

router = APIRouter(prefix="/custom-metrics", tags=["analytics"], route_class=ParsedJsonRoute)
NAME = Path(pattern=r"^[a-z][a-z0-9_]{0,47}$", description="the metric's name")
VALUES_TABLE = "analytics.custom_metric_values"


class MetricIn(BaseModel):
    sql: str = Field(
        max_length=4000,
        description="one SELECT over the published marts returning a numeric `value` column "
        "and optionally a `subject` column; it sees only your rows",
        examples=["select sum(cost_usd) as value from agent_sessions"],
    )
    description: str = Field(default="", max_length=500)


class MetricOut(BaseModel):
    name: str
    metric: str = Field(description="how alert rules name it: custom:<name>")
    sql: str
    description: str
    created_by: str | None
    updated_at: datetime


def _service(request: Request) -> CustomMetricService:
    return CustomMetricService(request.app.state.services.store)


def _out(metric: CustomMetric) -> MetricOut:
    data = metric.as_dict()
    data.pop("tenant_id")
    return MetricOut(**data)


@router.get("", response_model=list[MetricOut], summary="Your custom metrics")
def list_metrics(request: Request, principal: Principal = Depends(reader)) -> list[MetricOut]:
    return [_out(m) for m in _service(request).list(principal.tenant_id)]


@router.put("/{name}", response_model=MetricOut, summary="Define or replace a custom metric")
def define_metric(
    request: Request,
    body: MetricIn = Body(
        openapi_examples={
            "daily spend": {
                "value": {
                    "sql": "select sum(cost_usd) as value from agent_sessions where ended_at >= "
                    "(select max(ended_at) from agent_sessions) - interval 1 day",
                    "description": "what the last day of sessions cost",
                }
            },
            "success by capability": {
                "value": {
                    "sql": "select capability as subject, avg(case when status = 'succeeded' "
                    "then 1.0 else 0.0 end) as value from agent_sessions group by 1",
                }
            },
        }
    ),
    name: str = NAME,
    principal: Principal = Depends(writer),
) -> MetricOut:
    """Refused (422) unless it is one read-only SELECT over the published marts."""
    metric = _service(request).define(
        principal.tenant_id, name, body.sql, description=body.description, by=principal.key_id
    )
    return _out(metric)


@router.get("/{name}", response_model=MetricOut, summary="One custom metric")
def get_metric(
    request: Request, name: str = NAME, principal: Principal = Depends(reader)
) -> MetricOut:
    return _out(_service(request).get(principal.tenant_id, name))


@router.delete("/{name}", status_code=204, summary="Delete a custom metric")
def delete_metric(
    request: Request, name: str = NAME, principal: Principal = Depends(writer)
) -> Response:
    _service(request).remove(principal.tenant_id, name, by=principal.key_id)
    return Response(status_code=204)


@router.get(
    "/{name}/values", response_model=Listing, summary="The metric's values from the last refresh"
)
def metric_values(
    request: Request,
    name: str = NAME,
    limit: int = Query(default=100, ge=1, le=500),
    cursor: str | None = CURSOR,
    principal: Principal = Depends(reader),
) -> Listing:
    _service(request).get(principal.tenant_id, name)
    return read(
        VALUES_TABLE,
        principal,
        where="name = ?",
        params=[name],
        order_by="subject",
        limit=limit,
        cursor=cursor,
    )
