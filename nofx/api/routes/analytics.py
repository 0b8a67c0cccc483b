"""Analytics over HTTP: predictions, insights and recommendations the pipeline published.

They are read from the warehouse with short-lived read-only connections (nofx.warehouse), so
the API never blocks the pipeline; while the pipeline holds the file the answer is 503 with
Retry-After, and before the first pipeline run it is an empty list with a note saying so.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from nofx import warehouse
from nofx.api import pagination
from nofx.api.deps import reader
from nofx.api.parsed import ParsedJsonRoute
from nofx.errors import NofxError, ValidationError
from nofx.security import Principal

router = APIRouter(prefix="/analytics", tags=["analytics"], route_class=ParsedJsonRoute)


class WarehouseBusyError(NofxError):
    code = "warehouse-busy"
    http_status = 503
    headers = {"Retry-After": "2"}


class Listing(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None = Field(
        default=None, description="pass as `cursor` for the next page; null on the last"
    )
    note: str | None = Field(
        default=None, description="why the list is empty, when the pipeline has not published"
    )


CURSOR = Query(
    default=None,
    max_length=500,
    description="next_cursor of the previous page. Pages walk one published snapshot: a "
    "cursor from a snapshot with a different number of rows is refused (list again)",
)


SNAPSHOT_POSITION = {"offset": pagination.count(), "rows": pagination.count()}


def read(
    qualified: str,
    principal: Principal,
    *,
    where: str = "",
    params: list[Any] | None = None,
    order_by: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> Listing:
    position = pagination.decode(cursor, SNAPSHOT_POSITION)  # a bad cursor is refused first
    clause = "tenant_id = ?" + (f" and {where}" if where else "")
    try:
        frame = warehouse.load_table(
            qualified, order_by, where=clause, params=[principal.tenant_id, *(params or [])]
        )
    except warehouse.WarehouseBusy as exc:
        raise WarehouseBusyError(str(exc), hint="retry in a couple of seconds") from exc
    except warehouse.WarehouseUnavailable as exc:
        return Listing(items=[], note=str(exc))
    if frame is None:
        return Listing(
            items=[], note=f"{qualified} is not published yet: run the pipeline (`nofx demo`)"
        )
    position = position or {"offset": 0, "rows": frame.height}
    if position["rows"] != frame.height:
        raise ValidationError(
            "the cursor belongs to an earlier snapshot of this table",
            hint="the pipeline republished it: list again without a cursor",
        )
    start = position["offset"]
    items = frame.slice(start, limit).to_dicts()
    more = start + limit < frame.height
    for item in items:
        if isinstance(item.get("evidence"), str):
            item["evidence"] = json.loads(item["evidence"])
    next_cursor = (
        pagination.encode({"offset": start + limit, "rows": frame.height}) if more else None
    )
    return Listing(items=items, next_cursor=next_cursor)


@router.get(
    "/predictions",
    response_model=Listing,
    summary="Failure predictions per session from the champion model",
)
def predictions(
    session_id: str | None = Query(default=None, max_length=64),
    min_probability: float = Query(default=0.0, ge=0, le=1, allow_inf_nan=False),
    limit: int = Query(default=100, ge=1, le=1000),
    cursor: str | None = CURSOR,
    principal: Principal = Depends(reader),
) -> Listing:
    """Most likely failures first. ``actual_status`` shows the outcome once it is known."""
    where = "failure_probability >= ?"
    params: list[Any] = [min_probability]
    if session_id:
        where += " and session_id = ?"
        params.append(session_id)
    return read(
        "analytics.operational_predictions",
        principal,
        where=where,
        params=params,
        order_by="failure_probability desc, session_id",
        limit=limit,
        cursor=cursor,
    )


@router.get(
    "/insights",
    response_model=Listing,
    summary="Insights: agent benchmarking per capability",
)
def insights(
    limit: int = Query(default=100, ge=1, le=1000),
    cursor: str | None = CURSOR,
    principal: Principal = Depends(reader),
) -> Listing:
    return read(
        "analytics.analytics_insights",
        principal,
        order_by="insight_id",
        limit=limit,
        cursor=cursor,
    )


@router.get(
    "/recommendations",
    response_model=Listing,
    summary="Recommendations with estimated savings, most money saved first",
)
def recommendations(
    kind: str | None = Query(
        default=None, pattern=r"^[a-z_]+$", description="cheaper_agent, flaky_step, underused_pool"
    ),
    limit: int = Query(default=100, ge=1, le=1000),
    cursor: str | None = CURSOR,
    principal: Principal = Depends(reader),
) -> Listing:
    return read(
        "analytics.recommendations",
        principal,
        where="kind = ?" if kind else "",
        params=[kind] if kind else None,
        order_by="estimated_savings_usd desc nulls last, recommendation_id",
        limit=limit,
        cursor=cursor,
    )


@router.get(
    "/forecasts/durations",
    response_model=Listing,
    summary="p50/p90 latency and cost per capability and agent",
)
def duration_forecasts(
    capability: str | None = Query(default=None, max_length=120),
    agent_id: str | None = Query(default=None, max_length=64),
    limit: int = Query(default=100, ge=1, le=1000),
    cursor: str | None = CURSOR,
    principal: Principal = Depends(reader),
) -> Listing:
    """``level`` says where each row's numbers come from: the agent's own runs, its
    capability's (under 20 runs of its own), or the whole fleet's. Rows without an agent
    are the capability's and the fleet's own."""
    clauses, params = [], []
    if capability:
        clauses.append("capability = ?")
        params.append(capability)
    if agent_id:
        clauses.append("agent_id = ?")
        params.append(agent_id)
    return read(
        "analytics.step_duration_forecasts",
        principal,
        where=" and ".join(clauses),
        params=params,
        order_by="capability nulls last, agent_id nulls first",
        limit=limit,
        cursor=cursor,
    )


@router.get(
    "/forecasts/usage",
    response_model=Listing,
    summary="Hourly calls, tokens, cost and concurrency forecast for the next 7 days",
)
def usage_forecasts(
    metric: str | None = Query(
        default=None, pattern=r"^(calls|tokens|cost_usd|concurrency)$", description="one metric"
    ),
    limit: int = Query(default=168, ge=1, le=1000),
    cursor: str | None = CURSOR,
    principal: Principal = Depends(reader),
) -> Listing:
    """Empty until a tenant has a week of history (the note says when nothing is published)."""
    return read(
        "analytics.usage_forecasts",
        principal,
        where="metric = ?" if metric else "",
        params=[metric] if metric else None,
        order_by="metric, bucket_start",
        limit=limit,
        cursor=cursor,
    )
