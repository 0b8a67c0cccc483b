"""Orchestration sessions over HTTP: create, read, list, cancel, and their event stream."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime

import anyio.to_thread
from fastapi import APIRouter, Body, Depends, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from nofx.api import pagination, reads
from nofx.api.deps import Services, json_response, reader, services, writer
from nofx.api.limits import TooBusy, check_workflow_size
from nofx.api.parsed import ParsedJsonRoute
from nofx.api.schemas import CandidateOut, EventOut, SelectionOut, SessionPage
from nofx.domain import PatternName, Session, SessionRequest, SessionStatus, Task
from nofx.routing.selection import SelectionRequest
from nofx.security import Principal

router = APIRouter(prefix="/orchestration", tags=["orchestration"], route_class=ParsedJsonRoute)

EXAMPLE = {
    "task": {
        "prompt": "Add a CSV export to the report page",
        "capability": "code.generate",
        "complexity": 0.4,
    },
    "pattern": "solo",
    "budget_usd": 0.5,
    "optimize": "balanced",
}


@router.post(
    "/sessions",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Session,
    summary="Request a session (a runtime or the Dagster sensor runs it)",
)
async def create_session(
    http: Request,
    body: SessionRequest = Body(openapi_examples={"solo": {"value": EXAMPLE}}),
    principal: Principal = Depends(writer),
) -> Response:
    """Async, and on the event loop throughout: the session is written by the store's
    group-commit writer (awaited, durable before the 202), which also counts the tenant's
    open sessions against the ceiling, once per commit group (issue 12: a count per request
    scanned every session the tenant ever had, in a thread)."""
    # the services are read from the app rather than depended on, here and in the other hot
    # routes: each dependency FastAPI solves costs CPU on every request (ADR 0029)
    svc: Services = http.app.state.services
    if body.workflow is not None:
        check_workflow_size(body.workflow, svc.limits, where="the session's workflow")
    ceiling = svc.limits.max_sessions_in_flight
    request = body.model_copy(update={"tenant_id": principal.tenant_id})
    if request.workflow is not None:
        # a workflow is parsed against the tenant's capabilities by a request thread, not
        # by the writer (which must not take a pooled connection)
        session = await anyio.to_thread.run_sync(
            lambda: svc.sessions.submit(request, max_in_flight=ceiling)
        )
    else:
        session = await svc.sessions.submit_async(request, max_in_flight=ceiling)
    return json_response(
        session,
        status.HTTP_202_ACCEPTED,
        {"Location": f"/api/v1/orchestration/sessions/{session.session_id}"},
    )


@router.get("/sessions", response_model=SessionPage, summary="List sessions, newest first")
def list_sessions(
    request: Request,
    status_filter: SessionStatus | None = Query(default=None, alias="status"),
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = Query(default=None, max_length=500),
    principal: Principal = Depends(reader),
) -> Response:
    # the rows become the page's JSON without validating each again (nofx/api/reads.py)
    svc: Services = request.app.state.services
    position = pagination.decode(cursor, pagination.NEWEST_FIRST)
    before = (datetime.fromisoformat(position["t"]), str(position["id"])) if position else None
    body = reads.session_page_json(
        svc.store, principal.tenant_id, status=status_filter, limit=limit, before=before
    )
    return Response(body, media_type="application/json")


@router.get("/sessions/{session_id}", response_model=Session, summary="One session")
def get_session(
    request: Request,
    session_id: str,
    principal: Principal = Depends(reader),
) -> Response:
    svc: Services = request.app.state.services
    body = reads.session_json(svc.store, session_id, principal.tenant_id)
    return Response(body, media_type="application/json")


@router.post("/sessions/{session_id}/cancel", response_model=Session, summary="Cancel a session")
def cancel_session(
    session_id: str,
    principal: Principal = Depends(writer),
    svc: Services = Depends(services),
) -> Session:
    return svc.sessions.cancel(session_id, tenant_id=principal.tenant_id)


@router.get(
    "/sessions/{session_id}/events",
    response_model=list[EventOut],
    summary="The session's events; Server-Sent Events with Accept: text/event-stream",
)
async def session_events(
    session_id: str,
    request: Request,
    after_seq: int = Query(default=0, ge=0, le=2**62),
    timeout_s: float = Query(
        default=30.0, gt=0, le=300, allow_inf_nan=False, description="SSE: stop after this long"
    ),
    principal: Principal = Depends(reader),
    svc: Services = Depends(services),
) -> Response | list[EventOut]:
    """Store reads run in the thread pool; a key holds at most NOFX_API_SSE_STREAMS_PER_KEY
    streams at once (429 past it), each polling every NOFX_API_SSE_POLL_INTERVAL_S."""
    tenant = principal.tenant_id
    await anyio.to_thread.run_sync(lambda: svc.sessions.get(session_id, tenant_id=tenant))

    def events_after(seq: int) -> list[EventOut]:
        return [EventOut(**e.model_dump()) for e in svc.sessions.events(session_id, after_seq=seq)]

    if "text/event-stream" not in request.headers.get("accept", ""):
        return await anyio.to_thread.run_sync(events_after, after_seq)
    streams: StreamCounter = request.app.state.sse_streams
    holder = principal.key_id or f"tenant:{tenant}"
    if not streams.open(holder, svc.limits.sse_streams_per_key):
        raise TooBusy(
            f"this API key already has {svc.limits.sse_streams_per_key} event streams open",
            hint="close one, or poll without Accept: text/event-stream; the operator sets "
            "NOFX_API_SSE_STREAMS_PER_KEY",
            retry_after=5,
        )

    def poll(seq: int) -> tuple[list[EventOut], bool]:
        return events_after(seq), svc.sessions.get(session_id).status.terminal

    async def stream() -> AsyncIterator[str]:
        seen = after_seq
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                events, finished = await anyio.to_thread.run_sync(poll, seen)
                for event in events:
                    seen = event.seq
                    yield f"id: {event.seq}\nevent: {event.type}\ndata: {event.model_dump_json()}\n\n"
                if finished or await request.is_disconnected():
                    return
                await asyncio.sleep(svc.limits.sse_poll_interval_s)
            yield f"event: timeout\ndata: {json.dumps({'after_seq': seen})}\n\n"
        finally:
            streams.close(holder)

    return StreamingResponse(stream(), media_type="text/event-stream")


class StreamCounter:
    """Open event streams per key, in this process."""

    def __init__(self) -> None:
        self._open: dict[str, int] = {}

    def open(self, holder: str, ceiling: int) -> bool:
        if self._open.get(holder, 0) >= ceiling:
            return False
        self._open[holder] = self._open.get(holder, 0) + 1
        return True

    def close(self, holder: str) -> None:
        left = self._open.get(holder, 1) - 1
        if left > 0:
            self._open[holder] = left
        else:
            self._open.pop(holder, None)


@router.get(
    "/agents/select", response_model=SelectionOut, summary="Dry run: ranked candidates with reasons"
)
def select_agents(
    capability: str = Query(max_length=120, examples=["code.generate"]),
    optimize: str = Query(default="balanced", pattern="^(balanced|cost|latency|success)$"),
    min_proficiency: int = Query(default=1, ge=1, le=5),
    budget_usd: float | None = Query(default=None, gt=0, allow_inf_nan=False),
    deadline_s: float | None = Query(default=None, gt=0, allow_inf_nan=False),
    input_tokens: int = Query(default=800, ge=1, le=2_000_000),
    complexity: float = Query(default=0.5, ge=0, le=1, allow_inf_nan=False),
    principal: Principal = Depends(reader),
    request: Request = None,  # type: ignore[assignment]
    svc: Services = Depends(services),
) -> SelectionOut:
    Task(prompt="x", capability=capability)  # validates the name
    svc.registry.require_capability(capability, principal.tenant_id)
    selector = request.app.state.selector
    ranked = selector.rank(
        SelectionRequest(
            capability=capability,
            tenant_id=principal.tenant_id,
            min_proficiency=min_proficiency,
            optimize=optimize,  # type: ignore[arg-type]
            budget_usd=budget_usd,
            deadline_s=deadline_s,
            input_tokens=input_tokens,
            complexity=complexity,
        ),
        svc.registry.list(tenant_id=principal.tenant_id, capability=capability),
    )
    return SelectionOut(
        capability=capability,
        optimize=optimize,
        candidates=[
            CandidateOut(
                agent_id=s.agent.agent_id,
                name=s.agent.name,
                score=s.score,
                expected_success=s.expected_success,
                expected_cost_usd=s.expected_cost_usd,
                expected_latency_ms=None
                if s.expected_latency_ms != s.expected_latency_ms
                else s.expected_latency_ms,
                reasons=list(s.reasons),
            )
            for s in ranked
        ],
    )


__all__ = ["PatternName", "router"]
