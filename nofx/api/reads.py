"""The hot reads, from the store's rows to the response (ADR 0029): sessions, agents.

``GET /orchestration/sessions`` validated every row with pydantic (a SessionRequest, a
Task with its capability-name check, a Session) only to serialise it again: most of the
request's CPU, and growing with the page. The rows come from our own store, written from
validated models (the request column is ``SessionRequest.model_dump(mode="json")``), so
here a row becomes the response's dict directly, in the field order and with the types
the ``Session`` model serialises to (floats as floats, UTC times with ``Z``): the bytes are
the model's. A row whose stored request is not of the shape written today (an older or
hand-edited row) goes through the model as before.

Agents are read through the same cursor path and still built by the registry's own
``_row_to_agent`` (which redacts inline secrets); their validation is a small part of a
read, the Core round trip was most of it.

Every statement here has ``tenant_id`` in its WHERE clause, bound from the caller's
principal: no read of this module can see another tenant's session or agent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Select, and_, bindparam, or_, select

from nofx.api import pagination
from nofx.domain import Agent, SessionStatus
from nofx.errors import NotFoundError
from nofx.registry import _row_to_agent
from nofx.sessions import row_to_session
from nofx.store import EventStore
from nofx.store.event_store import as_utc
from nofx.store.reads import ReadStatement
from nofx.store.schema import agent_capabilities, agents, sessions

COLUMNS = (
    "session_id",
    "tenant_id",
    "pattern",
    "status",
    "request",
    "agent_id",
    "attempts",
    "cost_usd",
    "input_tokens",
    "output_tokens",
    "output",
    "error_type",
    "created_at",
    "updated_at",
    "version",
)
TASK_FIELDS = frozenset({"prompt", "capability", "complexity", "input_tokens"})
OPTIMIZE = frozenset({"balanced", "cost", "latency", "success"})
_JSON = orjson.OPT_UTC_Z


def request_json(text: str | bytes) -> Any:
    """The stored request, parsed by orjson (a fourth of the standard library's time, the
    largest part of a page's rows). orjson reads integers past 64 bits as floats: none of
    the fields read from a request can hold one (the model bounds them), and text orjson
    refuses (NaN written by the standard library) is read by the standard library."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _base() -> Select[Any]:
    return select(*(sessions.c[c] for c in COLUMNS)).where(
        sessions.c.tenant_id == bindparam("tenant_id")
    )


def _page(*, by_status: bool, after: bool) -> ReadStatement:
    query = _base()
    if by_status:
        query = query.where(sessions.c.status == bindparam("status"))
    if after:
        created = bindparam("before_t", type_=sessions.c.created_at.type)
        query = query.where(
            or_(
                sessions.c.created_at < created,
                and_(
                    sessions.c.created_at == created,
                    sessions.c.session_id < bindparam("before_id"),
                ),
            )
        )
    query = query.order_by(sessions.c.created_at.desc(), sessions.c.session_id.desc()).limit(
        bindparam("limit")
    )
    return ReadStatement(query, text={"request": request_json})


ONE = ReadStatement(
    _base().where(sessions.c.session_id == bindparam("session_id")),
    text={"request": request_json},
)
PAGES = {
    (by_status, after): _page(by_status=by_status, after=after)
    for by_status in (False, True)
    for after in (False, True)
}


def _number(value: Any) -> float | None:
    """A float field's value as the model serialises it (an int becomes a float); anything
    else is a shape this module does not know (the row goes through the model)."""
    if value is None:
        return None
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    raise _Unknown


class _Unknown(Exception):
    """A stored request not of the shape written today."""


def session_dict(row: Sequence[Any]) -> dict[str, Any]:
    """The ``Session`` of a row (in ``COLUMNS`` order) as the dict its JSON is made of."""
    (
        session_id,
        tenant_id,
        pattern,
        status,
        request,
        agent_id,
        attempts,
        cost_usd,
        input_tokens,
        output_tokens,
        output,
        error_type,
        created_at,
        updated_at,
        version,
    ) = row
    try:
        if type(request) is not dict:
            raise _Unknown
        task = request.get("task")
        if type(task) is not dict or task.keys() != TASK_FIELDS:
            raise _Unknown
        prompt, capability, tokens = task["prompt"], task["capability"], task["input_tokens"]
        optimize, max_attempts = request.get("optimize"), request.get("max_attempts")
        if (
            type(prompt) is not str
            or type(capability) is not str
            or type(tokens) is not int
            or optimize not in OPTIMIZE
            or type(max_attempts) is not int
        ):
            raise _Unknown
        return {
            "session_id": session_id,
            "tenant_id": tenant_id,
            "pattern": pattern,
            "status": status,
            "task": {
                "prompt": prompt,
                "capability": capability,
                "complexity": _number(task["complexity"]),
                "input_tokens": tokens,
            },
            "budget_usd": _number(request.get("budget_usd")),
            "deadline_s": _number(request.get("deadline_s")),
            "optimize": optimize,
            "max_attempts": max_attempts,
            "wait_for_recovery_s": _number(request.get("wait_for_recovery_s")),
            "agent_id": agent_id,
            "attempts": attempts,
            "cost_usd": float(cost_usd),
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "output": output,
            "error_type": error_type,
            "created_at": as_utc(created_at),
            "updated_at": as_utc(updated_at),
            "version": version,
        }
    except (_Unknown, KeyError, TypeError):
        model = row_to_session(dict(zip(COLUMNS, row, strict=True)))
        return model.model_dump(mode="json")


def session_json(store: EventStore, session_id: str, tenant_id: str) -> bytes:
    """One session of ``tenant_id`` as JSON; NotFoundError when the tenant has none of
    that id (another tenant's session is not found, as before)."""
    row = ONE.first(store.engine, {"session_id": session_id, "tenant_id": tenant_id})
    if row is None:
        raise NotFoundError(f"no session with id {session_id!r}", hint="list sessions to find it")
    return orjson.dumps(session_dict(row), option=_JSON)


def session_page_json(
    store: EventStore,
    tenant_id: str,
    *,
    status: SessionStatus | None,
    limit: int,
    before: tuple[datetime, str] | None,
) -> bytes:
    """A page of the tenant's sessions, newest first, as ``SessionPage`` JSON."""
    params: dict[str, Any] = {"tenant_id": tenant_id, "limit": limit + 1}
    if status is not None:
        params["status"] = status.value
    if before is not None:
        params["before_t"], params["before_id"] = before
    rows = PAGES[(status is not None, before is not None)].rows(store.engine, params)
    items = [session_dict(r) for r in rows]
    items, next_cursor = pagination.page(
        items,
        limit,
        lambda s: {"t": _isoformat(s["created_at"]), "id": s["session_id"]},
    )
    return orjson.dumps({"items": items, "next_cursor": next_cursor}, option=_JSON)


def _isoformat(value: datetime | str) -> str:
    # a row that went through the model is already JSON (a string with ``Z``)
    if isinstance(value, str):
        return datetime.fromisoformat(value).isoformat()
    return value.isoformat()


# -- agents ----------------------------------------------------------------------------------
AGENT_COLUMNS = tuple(c.key for c in agents.columns)


class _AgentRow:
    """A row with attribute access, as ``_row_to_agent`` reads it."""

    __slots__ = AGENT_COLUMNS

    def __init__(self, row: Sequence[Any]) -> None:
        for name, value in zip(AGENT_COLUMNS, row, strict=True):
            setattr(self, name, value)


def _agents(*, capability: bool, after: bool) -> ReadStatement:
    query = select(agents).where(agents.c.tenant_id == bindparam("tenant_id"))
    if capability:
        covered = select(agent_capabilities.c.agent_id).where(
            agent_capabilities.c.capability == bindparam("capability"),
            agent_capabilities.c.proficiency >= bindparam("min_proficiency"),
        )
        query = query.where(agents.c.agent_id.in_(covered))
    if after:
        query = query.where(agents.c.agent_id > bindparam("after_id"))
    return ReadStatement(query.order_by(agents.c.agent_id).limit(bindparam("limit")))


ONE_AGENT = ReadStatement(
    select(agents).where(
        agents.c.agent_id == bindparam("agent_id"), agents.c.tenant_id == bindparam("tenant_id")
    )
)
AGENT_PAGES = {
    (capability, after): _agents(capability=capability, after=after)
    for capability in (False, True)
    for after in (False, True)
}


def agent(store: EventStore, agent_id: str, tenant_id: str) -> Agent:
    """The tenant's agent (the registry's ``get``); another tenant's is not found."""
    row = ONE_AGENT.first(store.engine, {"agent_id": agent_id, "tenant_id": tenant_id})
    if row is None:
        raise NotFoundError(
            f"no agent with id {agent_id!r}", hint="list agents with `nofx agents list`"
        )
    return _row_to_agent(_AgentRow(row))


def agent_page(
    store: EventStore,
    tenant_id: str,
    *,
    capability: str | None,
    min_proficiency: int,
    limit: int,
    after_id: str | None,
) -> list[Agent]:
    """Up to ``limit`` of the tenant's agents by id (the registry's ``list``)."""
    params: dict[str, Any] = {"tenant_id": tenant_id, "limit": limit}
    if capability is not None:
        params["capability"], params["min_proficiency"] = capability, min_proficiency
    if after_id is not None:
        params["after_id"] = after_id
    rows = AGENT_PAGES[(capability is not None, after_id is not None)].rows(store.engine, params)
    return [_row_to_agent(_AgentRow(r)) for r in rows]
