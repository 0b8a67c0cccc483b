"""Agent pools over HTTP: size and policy of each pool, and every scaling decision made."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, Field

from nofx.api.deps import reader, writer
from nofx.api.parsed import ParsedJsonRoute
from nofx.domain import Agent
from nofx.errors import ValidationError
from nofx.pools import PoolService
from nofx.routing.autoscale import PolicyError, ScalingPolicy
from nofx.security import Principal

router = APIRouter(
    prefix="/orchestration/pools", tags=["orchestration"], route_class=ParsedJsonRoute
)


class PolicyIn(BaseModel):
    min_replicas: int = Field(default=1, ge=0, le=1000)
    max_replicas: int = Field(default=8, ge=1, le=1000)
    target_utilisation: float = Field(
        default=0.7, gt=0, le=1, description="busy share of capacity the pool aims for"
    )
    latency_target_ms: float | None = Field(
        default=None, gt=0, le=3_600_000, description="p95 above this adds a replica"
    )
    scale_up_cooldown_s: float = Field(default=15.0, ge=0, le=86_400)
    scale_down_cooldown_s: float = Field(default=60.0, ge=0, le=86_400)
    replicas: int | None = Field(
        default=None, ge=0, description="start at this size (clamped into the bounds)"
    )


class PoolOut(BaseModel):
    agent_id: str
    agent_status: Literal["active", "deregistered"] = Field(
        default="active",
        description="deregistered: the agent was deleted; its pool is kept, with no capacity, "
        "so its history stays readable",
    )
    replicas: int
    capacity: int = Field(description="replicas x the agent's max_concurrency: calls at once")
    policy: dict[str, Any]
    last_reason: str | None
    last_scaled_at: datetime | None
    version: int


class DecisionOut(BaseModel):
    type: str
    at: datetime
    payload: dict[str, Any]


def _pools(request: Request) -> PoolService:
    return PoolService(request.app.state.services.store)


def _out(request: Request, pool: Any, tenant_id: str) -> PoolOut:
    agent = request.app.state.services.registry.get(pool.agent_id, tenant_id=tenant_id)
    return _pool_out(pool, agent)


def _pool_out(pool: Any, agent: Agent | None) -> PoolOut:
    """A pool as the API shows it; a pool whose agent was deleted has no capacity."""
    data = pool.as_dict()
    data.pop("tenant_id")
    if agent is None:
        return PoolOut(**data, agent_status="deregistered", capacity=0)
    return PoolOut(**data, capacity=pool.replicas * agent.max_concurrency)


@router.get("", response_model=list[PoolOut], summary="List agent pools")
def list_pools(request: Request, principal: Principal = Depends(reader)) -> list[PoolOut]:
    """Every pool of the caller's tenant with its current size, capacity and last decision;
    pools of deleted agents stay listed as ``agent_status: deregistered``."""
    pools = _pools(request).list(tenant_id=principal.tenant_id)
    registry = request.app.state.services.registry
    agents = {a.agent_id: a for a in registry.list(tenant_id=principal.tenant_id)}
    return [_pool_out(p, agents.get(p.agent_id)) for p in pools]


@router.get("/{agent_id}", response_model=PoolOut, summary="Get one agent's pool")
def get_pool(agent_id: str, request: Request, principal: Principal = Depends(reader)) -> PoolOut:
    request.app.state.services.registry.get(agent_id, tenant_id=principal.tenant_id)
    return _out(request, _pools(request).get(agent_id), principal.tenant_id)


@router.put("/{agent_id}", response_model=PoolOut, summary="Create or change an agent's pool")
def configure_pool(
    agent_id: str,
    request: Request,
    policy: PolicyIn = Body(
        openapi_examples={
            "elastic": {
                "summary": "1 to 8 replicas at 70% busy, add one when p95 is over 2 s",
                "value": {"min_replicas": 1, "max_replicas": 8, "latency_target_ms": 2000},
            }
        }
    ),
    principal: Principal = Depends(writer),
) -> PoolOut:
    """Calls to the agent are then capped at replicas x max_concurrency; the runtime scales
    the pool between the bounds on its queue and latency, and records every decision."""
    agent = request.app.state.services.registry.get(agent_id, tenant_id=principal.tenant_id)
    fields = policy.model_dump(exclude={"replicas"})
    try:
        scaling = ScalingPolicy(**fields)
    except PolicyError as exc:
        raise ValidationError(str(exc), hint="fix the policy and send it again") from exc
    pool = _pools(request).configure(agent, scaling, replicas=policy.replicas)
    return _out(request, pool, principal.tenant_id)


@router.get(
    "/{agent_id}/decisions",
    response_model=list[DecisionOut],
    summary="The pool's configuration changes and scaling decisions, oldest first",
)
def decisions(
    agent_id: str,
    request: Request,
    limit: int = Query(default=100, ge=1, le=1000),
    principal: Principal = Depends(reader),
) -> list[DecisionOut]:
    request.app.state.services.registry.get(agent_id, tenant_id=principal.tenant_id)
    events = _pools(request).decisions(agent_id, limit=limit)
    return [DecisionOut(type=e.type, at=e.occurred_at, payload=e.payload) for e in events]
