"""The communication hub over HTTP: send a message, read or replay a channel."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request, status
from pydantic import BaseModel

from nofx.api import history
from nofx.api.deps import reader, writer
from nofx.api.limits import json_depth
from nofx.api.parsed import ParsedJsonRoute
from nofx.bus import MessageBus
from nofx.domain import Message
from nofx.security import Principal

router = APIRouter(
    prefix="/orchestration/communicate", tags=["orchestration"], route_class=ParsedJsonRoute
)


class MessageOut(BaseModel):
    message_id: str
    channel: str
    seq: int
    sender: str
    session_id: str | None
    body: dict[str, Any]
    created_at: datetime


def bus(request: Request) -> MessageBus:
    return request.app.state.bus


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=MessageOut, summary="Send a message"
)
def send(
    message: Message = Body(
        openapi_examples={
            "topic": {
                "value": {"sender": "agt_1", "topic": "session-ses_1", "body": {"note": "done"}}
            }
        }
    ),
    principal: Principal = Depends(writer),
    hub: MessageBus = Depends(bus),
) -> MessageOut:
    stored = hub.publish(message.model_copy(update={"tenant_id": principal.tenant_id}))
    return MessageOut(**stored.__dict__)


@router.get(
    "/{channel}", response_model=list[MessageOut], summary="Read or replay a channel in order"
)
def read(
    request: Request,
    channel: str = Path(max_length=260),
    after_seq: int = Query(default=0, ge=0, le=2**62, description="replay from this offset"),
    since: datetime | None = Query(default=None, description="replay from this time"),
    limit: int = Query(default=100, ge=1, le=1000),
    principal: Principal = Depends(reader),
    hub: MessageBus = Depends(bus),
) -> list[MessageOut]:
    """A message stored before the depth limit existed, nested too deep to serialise, is
    shown with its body replaced by a note, so one bad message cannot make the channel
    unreadable."""
    messages = hub.read(
        channel, tenant_id=principal.tenant_id, after_seq=after_seq, since=since, limit=limit
    )
    depth = request.app.state.services.limits.max_json_depth
    return [readable(MessageOut(**m.__dict__), depth) for m in messages]


def readable(message: MessageOut, max_depth: int) -> MessageOut:
    if json_depth(message.body, max_depth) <= max_depth:
        return message
    note = f"body withheld: nested deeper than {max_depth} levels (stored before the limit)"
    return message.model_copy(update={"body": {"unreadable": note}})


class BreakerOut(BaseModel):
    agent_id: str
    state: str
    reason: str
    since: datetime
    transitions: int


breakers_router = APIRouter(
    prefix="/orchestration/breakers", tags=["orchestration"], route_class=ParsedJsonRoute
)


@breakers_router.get("", response_model=list[BreakerOut], summary="Circuit-breaker state per agent")
def breakers(request: Request, principal: Principal = Depends(reader)) -> list[BreakerOut]:
    """From the BreakerTransitioned events every runtime writes; agents never tripped are closed."""
    store = request.app.state.services.store
    latest: dict[str, BreakerOut] = {}
    for event in history.breaker_events(store, principal.tenant_id):  # the tenant's agents'
        p = event.payload
        count = latest[p["agent_id"]].transitions + 1 if p["agent_id"] in latest else 1
        latest[p["agent_id"]] = BreakerOut(
            agent_id=p["agent_id"],
            state=p["to"],
            reason=p["reason"],
            since=event.occurred_at,
            transitions=count,
        )
    return sorted(latest.values(), key=lambda b: b.agent_id)
