"""Workflows over HTTP: analysis (critical path, makespan bound, parallelism, cost) and
changes to running workflows."""

from __future__ import annotations

from typing import Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, Field

from nofx.api import history, jobs
from nofx.api.compute import AnalysisPool
from nofx.api.deps import Services, reader, services, writer
from nofx.api.limits import check_workflow_size
from nofx.api.parsed import ParsedJsonRoute
from nofx.domain import NewEvent
from nofx.security import Principal
from nofx.workflows import analyze, learning
from nofx.workflows.adapt import Adaptation, AdaptationService, AddStep, ReplaceStep
from nofx.workflows.planner import PlanRequest, planner_from_env
from nofx.workflows.suggest import PreferenceModel

router = APIRouter(prefix="/workflows", tags=["workflows"], route_class=ParsedJsonRoute)

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
async def analyze_workflow(
    request: Request,
    workflow: dict[str, Any] = Body(openapi_examples={"feature": {"value": EXAMPLE}}),
    workers: int = Query(default=4, ge=1, le=10_000),
    check_capabilities: bool = Query(
        default=True, description="refuse capabilities no agent offers"
    ),
    principal: Principal = Depends(reader),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """With learned estimates (POST /workflows/learn), ``history`` adds p50/p90 makespan and
    expected cost from how these capabilities actually ran. Runs in a worker process within
    the operator's time budget (503 past it); over the size limits it is 422."""
    check_workflow_size(workflow, svc.limits)
    tenant = principal.tenant_id
    known = (
        await anyio.to_thread.run_sync(svc.registry.capabilities, tenant)
        if check_capabilities
        else None
    )
    learned = await anyio.to_thread.run_sync(latest_estimates, svc, tenant)
    stats = learned["stats"] if learned else None
    result = await analysis_pool(request).run(
        "the analysis", jobs.analyze_job, workflow, known, workers, stats, started=arrival(request)
    )
    if learned and result["history"] is not None:
        result["history"] |= {"learned_at": learned["at"]}
    return result


def analysis_pool(request: Request) -> AnalysisPool:
    return request.app.state.analysis_pool


def arrival(request: Request) -> float | None:
    """When the request arrived (the edge middleware notes it): budgets count from there."""
    return getattr(request.state, "received_at", None)


def latest_estimates(svc: Services, tenant_id: str) -> dict[str, Any] | None:
    events = svc.store.read_stream(learning.stream_id(tenant_id))
    if not events:
        return None
    stats = [learning.StepStats(**s) for s in events[-1].payload["stats"]]
    return {"stats": stats, "at": events[-1].occurred_at}


@router.post(
    "/learn",
    summary="Learn step duration, cost and success per capability and agent from history",
)
def learn_estimates(
    since_position: int = Query(
        default=0, ge=0, le=2**62, description="learn only from events after this position"
    ),
    principal: Principal = Depends(writer),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Folds the step outcomes (failures included) of the tenant's most recent sessions
    (at most ``NOFX_API_MAX_LEARN_SESSIONS``, 10,000 by default) into p50/p90 duration,
    mean cost and success rate, records them as an EstimatesLearned event, and returns
    them; /workflows/analyze then forecasts from them. Only the tenant's own rows are read,
    so its cost is bounded by its own history."""
    cap = svc.limits.max_learn_sessions
    outcomes, sessions_read = history.step_outcomes(
        svc.store, principal.tenant_id, after_position=since_position, max_sessions=cap
    )
    stats = learning.learn(outcomes)
    payload = {
        "stats": [s.as_dict() for s in stats],
        "outcomes": len(outcomes),
        "sessions": sessions_read,
        "sessions_capped": sessions_read >= cap,
    }
    svc.store.append(
        learning.stream_id(principal.tenant_id),
        learning.STREAM_TYPE,
        principal.tenant_id,
        [NewEvent(type="EstimatesLearned", payload=payload)],
    )
    return payload


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
    it before starting each step, so steps in flight are not interrupted. The dependencies
    the changes add count against NOFX_API_MAX_WORKFLOW_EDGES like a new workflow's (422)."""
    added = [c.step for c in adaptation.changes if isinstance(c, AddStep | ReplaceStep)]
    check_workflow_size(
        {"steps": [{"needs": step.needs} for step in added]}, svc.limits, where="the changes"
    )
    service = AdaptationService(svc.store, svc.sessions, svc.registry)
    return service.adapt(adaptation, principal.tenant_id)


class Feedback(BaseModel):
    suggestion_id: str = Field(min_length=1, max_length=300)
    kind: Literal[
        "parallelize",
        "cheaper_agent",
        "raise_retries",
        "merge_steps",
        "cache_step",
        "reorder_priority",
    ]
    accepted: bool


def preferences(svc: Services, tenant_id: str) -> PreferenceModel:
    events = svc.store.read_stream(f"preferences-{tenant_id}")
    return PreferenceModel.from_feedback([e.payload for e in events])


@router.post(
    "/suggest",
    summary="Suggested changes, each with an estimated gain and a reason, best first",
)
async def suggest_changes(
    request: Request,
    workflow: dict[str, Any] = Body(openapi_examples={"feature": {"value": EXAMPLE}}),
    check_capabilities: bool = Query(
        default=True, description="refuse capabilities no agent offers"
    ),
    principal: Principal = Depends(reader),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Uses learned estimates when there are some (POST /workflows/learn), and ranks by the
    tenant's past answers (POST /workflows/suggestions/feedback). Runs in a worker process
    within the operator's time budget (503 past it); over the size limits it is 422."""
    check_workflow_size(workflow, svc.limits)
    tenant = principal.tenant_id
    known = (
        await anyio.to_thread.run_sync(svc.registry.capabilities, tenant)
        if check_capabilities
        else None
    )
    learned = await anyio.to_thread.run_sync(latest_estimates, svc, tenant)
    model = await anyio.to_thread.run_sync(preferences, svc, tenant)
    stats = learned["stats"] if learned else None
    found = await analysis_pool(request).run(
        "the suggestion search",
        jobs.suggest_job,
        workflow,
        known,
        stats,
        model,
        started=arrival(request),
    )
    return {
        "suggestions": found["suggestions"],
        "used_history": learned is not None,
        "preferences": found["preferences"],
    }


@router.post(
    "/suggestions/feedback",
    summary="Record that a suggestion was accepted or rejected (re-ranks future ones)",
)
def suggestion_feedback(
    feedback: Feedback = Body(
        openapi_examples={
            "rejected": {
                "value": {
                    "suggestion_id": "merge_steps/spec+code",
                    "kind": "merge_steps",
                    "accepted": False,
                }
            }
        }
    ),
    principal: Principal = Depends(writer),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    svc.store.append(
        f"preferences-{principal.tenant_id}",
        learning.STREAM_TYPE,
        principal.tenant_id,
        [NewEvent(type="SuggestionFeedback", payload=feedback.model_dump())],
    )
    model = preferences(svc, principal.tenant_id)
    return {"kind": feedback.kind, "acceptance": round(model.acceptance(feedback.kind), 3)}


class PlanIn(BaseModel):
    goal: str = Field(min_length=3, max_length=2000, description="what the workflow is for")
    required_capabilities: list[str] = Field(default_factory=list, max_length=50)
    budget_usd: float | None = Field(default=None, gt=0)
    deadline_s: float | None = Field(default=None, gt=0)


@router.post(
    "/plan",
    summary="Generate a workflow for a goal within a budget and deadline (builtin or LLM planner)",
)
def plan_workflow(
    body: PlanIn = Body(
        openapi_examples={
            "bugfix": {
                "value": {
                    "goal": "fix the login bug in the API",
                    "required_capabilities": ["code.review"],
                    "budget_usd": 0.5,
                    "deadline_s": 1800,
                }
            }
        }
    ),
    principal: Principal = Depends(reader),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """The plan is always validated against the tenant's agents; the notes say what was
    adapted (capabilities mapped or dropped, steps trimmed to fit the limits)."""
    request = PlanRequest(
        goal=body.goal,
        available_capabilities=frozenset(svc.registry.capabilities(principal.tenant_id)),
        required_capabilities=tuple(body.required_capabilities),
        budget_usd=body.budget_usd,
        deadline_s=body.deadline_s,
    )
    planner = planner_from_env()
    spec = planner.plan(request)
    return {
        "workflow": spec.model_dump(mode="json"),
        "analysis": analyze(spec).to_dict(),
        "notes": request.notes,
        "planner": type(planner).__name__,
    }
