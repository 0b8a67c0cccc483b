"""The agent registry over HTTP."""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, Header, Query, Response, status

from nofx.api import pagination
from nofx.api.deps import Services, reader, services, writer
from nofx.api.schemas import AgentPage
from nofx.domain import Agent, AgentSpec
from nofx.errors import ConcurrencyError, NotFoundError
from nofx.security import Principal

router = APIRouter(prefix="/agents", tags=["agents"])

EXAMPLE = {
    "name": "vega-coder",
    "capabilities": [
        {"name": "code.generate", "proficiency": 4},
        {"name": "code.review", "proficiency": 3},
    ],
    "pricing": {"input_per_1k_tokens": 0.0009, "output_per_1k_tokens": 0.0009},
    "provider": {"kind": "simulated", "config": {"latency_median_ms": 900}},
    "max_concurrency": 8,
}


def _own(spec: AgentSpec, principal: Principal) -> AgentSpec:
    """The tenant comes from the caller, never from the body."""
    return spec.model_copy(update={"tenant_id": principal.tenant_id})


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=Agent, summary="Register an agent"
)
def register(
    response: Response,
    spec: AgentSpec = Body(openapi_examples={"coder": {"value": EXAMPLE}}),
    principal: Principal = Depends(writer),
    svc: Services = Depends(services),
) -> Agent:
    agent = svc.registry.register(_own(spec, principal))
    response.headers["Location"] = f"/api/v1/agents/{agent.agent_id}"
    response.headers["ETag"] = str(agent.version)
    return agent


@router.get("", response_model=AgentPage, summary="List agents (cursor pagination)")
async def list_agents(
    capability: str | None = Query(default=None, max_length=120, examples=["code.generate"]),
    min_proficiency: int = Query(default=1, ge=1, le=5),
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = Query(default=None, max_length=500),
    principal: Principal = Depends(reader),
    svc: Services = Depends(services),
) -> AgentPage:
    position = pagination.decode(cursor)
    after = str(position["after"]) if position else None
    items = svc.registry.list(
        tenant_id=principal.tenant_id,
        capability=capability,
        min_proficiency=min_proficiency,
        limit=limit + 1,
        after_id=after,
    )
    items, next_cursor = pagination.page(items, limit, lambda a: {"after": a.agent_id})
    return AgentPage(items=items, next_cursor=next_cursor)


@router.get("/{agent_id}", response_model=Agent, summary="One agent")
async def get_agent(
    agent_id: str,
    principal: Principal = Depends(reader),
    svc: Services = Depends(services),
) -> Agent:
    return svc.registry.get(agent_id, tenant_id=principal.tenant_id)


@router.put("/{agent_id}", response_model=Agent, summary="Replace an agent's spec (version + 1)")
def update_agent(
    agent_id: str,
    response: Response,
    spec: AgentSpec = Body(openapi_examples={"coder": {"value": EXAMPLE}}),
    if_match: str | None = Header(default=None, description="the version you last saw"),
    principal: Principal = Depends(writer),
    svc: Services = Depends(services),
) -> Agent:
    svc.registry.get(agent_id, tenant_id=principal.tenant_id)
    expected = None
    if if_match is not None:
        try:
            expected = int(if_match.strip('"'))
        except ValueError:
            raise ConcurrencyError(
                f"If-Match must be a version number, got {if_match!r}",
                hint="send the ETag you received",
            ) from None
    agent = svc.registry.update(agent_id, _own(spec, principal), expected_version=expected)
    response.headers["ETag"] = str(agent.version)
    return agent


@router.delete("/{agent_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Deregister an agent")
def deregister(
    agent_id: str,
    principal: Principal = Depends(writer),
    svc: Services = Depends(services),
) -> Response:
    try:
        svc.registry.deregister(agent_id, tenant_id=principal.tenant_id)
    except NotFoundError:
        raise
    return Response(status_code=status.HTTP_204_NO_CONTENT)
