"""Workflow analysis over HTTP: critical path, makespan bound, parallelism, cost."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query

from nofx.api.deps import Services, reader, services
from nofx.security import Principal
from nofx.workflows import analyze, parse_workflow

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
