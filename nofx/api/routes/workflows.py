"""Workflows over HTTP: analysis (critical path, makespan bound, parallelism, cost) and
changes to running workflows."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query

from nofx.api.deps import Services, reader, services, writer
from nofx.security import Principal
from nofx.workflows import analyze, parse_workflow
from nofx.workflows.adapt import Adaptation, AdaptationService

router = APIRouter(prefix="/workflows", tags=["workflows"])

EXAMPLE = {
    "name": "feature",
    "steps": [
        {"id": "spec", "capability": "plan.decompose", "estimates": {"duration_s": 30}},
        {
            "id": "code",
            "capability": "code.generate",
            "needs": ["spec"],
            "estimates": {"duration_s": 120},
        },
        {
            "id": "review",
            "capability": "code.review",
            "needs": ["code"],
            "estimates": {"duration_s": 40},
        },
    ],
}


@router.post(
    "/analyze", summary="Critical path, makespan lower bound for K workers, parallelism, cost"
)
def analyze_workflow(
    workflow: dict[str, Any] = Body(openapi_examples={"feature": {"value": EXAMPLE}}),
    workers: int = Query(default=4, ge=1, le=10_000),
    check_capabilities: bool = Query(
        default=True, description="refuse capabilities no agent offers"
    ),
    principal: Principal = Depends(reader),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    known = svc.registry.capabilities(principal.tenant_id) if check_capabilities else None
    spec = parse_workflow(workflow, known_capabilities=known)
    return analyze(spec, workers=workers).to_dict()


@router.post(
    "/adapt",
    summary="Change a running workflow: add, remove or replace pending steps, pin an agent, "
    "change a pool limit",
)
def adapt_workflow(
    adaptation: Adaptation = Body(
        openapi_examples={
            "add a security review": {
                "value": {
                    "session_id": "ses_0123456789abcdef0123",
                    "reason": "the change touches authentication",
                    "changes": [
                        {
                            "op": "add_step",
                            "step": {
                                "id": "security_review",
                                "capability": "code.review",
                                "needs": ["code"],
                            },
                        },
                        {"op": "set_pool_limit", "pool": "default", "limit": 2},
                    ],
                }
            }
        }
    ),
    principal: Principal = Depends(writer),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Validated against what has run (started steps cannot change; the DAG stays acyclic
    with known capabilities) and recorded as a WorkflowAdapted event; the executor applies
    it before starting each step, so steps in flight are not interrupted."""
    service = AdaptationService(svc.store, svc.sessions, svc.registry)
    return service.adapt(adaptation, principal.tenant_id)
