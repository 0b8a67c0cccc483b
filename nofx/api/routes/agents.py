"""The agent registry over HTTP."""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response, status
from pydantic import Field
from sqlalchemy import func, select

from nofx.api import pagination, reads
from nofx.api.deps import Services, json_response, reader, services, writer
from nofx.api.limits import ApiLimits, QuotaExceeded
from nofx.api.parsed import ParsedJsonRoute
from nofx.api.schemas import AgentPage
from nofx.domain import Agent, AgentSpec, Capability
from nofx.errors import ConcurrencyError, NotFoundError
from nofx.security import Principal
from nofx.store.schema import agents as agents_table

router = APIRouter(prefix="/agents", tags=["agents"], route_class=ParsedJsonRoute)

# a schema bound, so the spec's own checks never see an oversized list (read at import)
MAX_CAPABILITIES = ApiLimits.from_env().max_capabilities_per_agent
PAGE_CAPABILITIES = 4096  # a page's cost is its capabilities, not only its agents


class AgentSpecIn(AgentSpec):
    """An agent spec as the API accepts it: at most MAX_CAPABILITIES capabilities."""

    capabilities: list[Capability] = Field(
        min_length=1,
        max_length=MAX_CAPABILITIES,
        description=f"at most {MAX_CAPABILITIES} (the operator sets "
        "NOFX_API_MAX_CAPABILITIES_PER_AGENT)",
    )


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
    spec: AgentSpecIn = Body(openapi_examples={"coder": {"value": EXAMPLE}}),
    principal: Principal = Depends(writer),
    svc: Services = Depends(services),
) -> Agent:
    ceiling = svc.limits.max_agents_per_tenant
    if count_agents(svc, principal.tenant_id) >= ceiling:
        raise QuotaExceeded(
            f"this tenant has {ceiling} agents, the most the operator allows",
            hint="deregister agents you no longer use, or ask the operator to raise "
            "NOFX_API_MAX_AGENTS_PER_TENANT",
        )
    agent = svc.registry.register(_own(spec, principal))
    response.headers["Location"] = f"/api/v1/agents/{agent.agent_id}"
    response.headers["ETag"] = str(agent.version)
    return agent


def count_agents(svc: Services, tenant_id: str) -> int:
    query = select(func.count()).select_from(agents_table)
    with svc.store.engine.connect() as conn:
        return int(conn.execute(query.where(agents_table.c.tenant_id == tenant_id)).scalar() or 0)


@router.get(
    "",
    response_model=AgentPage,
    summary="List agents (cursor pagination)",
    description="A page holds at most `limit` agents and at most "
    f"{PAGE_CAPABILITIES} capabilities in all: a page of wide agents can be shorter than "
    "`limit`; follow `next_cursor`.",
)
def list_agents(
    request: Request,
    capability: str | None = Query(default=None, max_length=120, examples=["code.generate"]),
    min_proficiency: int = Query(default=1, ge=1, le=5),
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = Query(default=None, max_length=500),
    principal: Principal = Depends(reader),
) -> Response:
    svc: Services = request.app.state.services  # not a dependency: one less to solve
    position = pagination.decode(cursor, pagination.AFTER_ID)
    after = str(position["after"]) if position else None
    items = reads.agent_page(
        svc.store,
        principal.tenant_id,
        capability=capability,
        min_proficiency=min_proficiency,
        limit=limit + 1,
        after_id=after,
    )
    limit = min(limit, affordable(items))
    items, next_cursor = pagination.page(items, limit, lambda a: {"after": a.agent_id})
    # serialised here, in the thread pool: FastAPI would validate the page again and encode
    # it on the event loop, which for wide agents holds the GIL for hundreds of ms
    return json_response(AgentPage(items=items, next_cursor=next_cursor))


def affordable(items: list[Agent]) -> int:
    """How many of ``items`` fit in one page's capability budget (at least one)."""
    total = 0
    for count, agent in enumerate(items):
        total += len(agent.capabilities)
        if total > PAGE_CAPABILITIES:
            return max(1, count)
    return len(items)


@router.get("/{agent_id}", response_model=Agent, summary="One agent")
def get_agent(
    request: Request,
    agent_id: str,
    principal: Principal = Depends(reader),
) -> Response:
    svc: Services = request.app.state.services
    return json_response(reads.agent(svc.store, agent_id, principal.tenant_id))


@router.put("/{agent_id}", response_model=Agent, summary="Replace an agent's spec (version + 1)")
def update_agent(
    agent_id: str,
    response: Response,
    spec: AgentSpecIn = Body(openapi_examples={"coder": {"value": EXAMPLE}}),
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
