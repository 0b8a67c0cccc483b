"""Sessions: submit, read, list, cancel; the projection of session events into the sessions table.

``apply_event`` is the one place that says how an event changes a session, used
both when events are written and when a stream is replayed, so replay needs no
agent calls and always agrees with the live projection.
"""

from __future__ import annotations

import builtins
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from nofx.data_contract import StreamType
from nofx.domain import (
    Event,
    NewEvent,
    PatternName,
    Session,
    SessionRequest,
    SessionStatus,
    new_id,
)
from nofx.errors import ConflictError, NofxError, NotFoundError
from nofx.registry import AgentRegistry
from nofx.store import EventStore, Transaction
from nofx.store.driver import DriverStatement
from nofx.store.event_store import as_utc
from nofx.store.notify import notify_work
from nofx.store.schema import sessions
from nofx.store.writer import Append, Written

STREAM_TYPE = StreamType.SESSION
TERMINAL_EVENTS = {
    "SessionCompleted": "succeeded",
    "SessionFailed": "failed",
    "SessionCancelled": "cancelled",
}


OPEN_STATUSES = tuple(s.value for s in SessionStatus if not s.terminal)
CEILING_MEMO = "sessions.in_flight_by_tenant"
# after a refusal, this process refuses the tenant's next submissions without queueing them
# for this long: a flood past the ceiling must not make every commit group replay carefully
CEILING_HOLD_S = 0.1


class TooManyInFlight(NofxError):
    """The tenant has as many sessions requested or running as the operator allows."""

    code = "too-busy"
    http_status = 429

    def __init__(self, ceiling: int, retry_after: int = 5) -> None:
        super().__init__(
            f"this tenant has {ceiling} sessions requested or running, the most the operator "
            "allows at once",
            hint="wait for some to finish (or cancel them); the operator sets "
            "NOFX_API_MAX_SESSIONS_IN_FLIGHT",
        )
        self.headers = {"Retry-After": str(retry_after)}


def open_sessions(conn: Connection) -> int:
    """Sessions requested or running, all tenants together: a count of the (status,
    created_at) index alone, which reads no table row."""
    query = select(func.count()).select_from(sessions).where(sessions.c.status.in_(OPEN_STATUSES))
    return int(conn.execute(query).scalar() or 0)


def in_flight_by_tenant(conn: Connection) -> dict[str, int]:
    """Sessions requested or running, per tenant. Grouped over every tenant on purpose: with
    the status alone in the condition, the (status, created_at) index finds exactly the open
    sessions; a tenant condition led SQLite to scan every session the tenant ever had."""
    query = (
        select(sessions.c.tenant_id, func.count())
        .where(sessions.c.status.in_(OPEN_STATUSES))
        .group_by(sessions.c.tenant_id)
    )
    return {str(row[0]): int(row[1]) for row in conn.execute(query)}


@dataclass
class _OpenCount:
    """What one commit group knows of open sessions: the total when the group first asked,
    the per-tenant counts once the total alone no longer proves a tenant below its ceiling,
    and the group's own admissions (counted twice when an earlier part of the group was
    already flushed: stricter, never looser)."""

    total: int
    by_tenant: dict[str, int] | None = None
    admitted: dict[str, int] = field(default_factory=dict)
    admitted_total: int = 0


def session_stream(session_id: str) -> str:
    return f"session-{session_id}"


def apply_event(state: dict[str, Any] | None, event: Event) -> dict[str, Any]:
    """Fold one event into a session's row (a plain dict with the sessions table's columns)."""
    p = event.payload
    if event.type == "SessionRequested":
        return {
            "session_id": p["session_id"],
            "tenant_id": event.tenant_id,
            "pattern": p["pattern"],
            "status": SessionStatus.REQUESTED.value,
            "request": p["request"],
            "agent_id": None,
            "attempts": 0,
            "cost_usd": 0.0,
            "input_tokens": 0,
            "output_tokens": 0,
            "output": None,
            "error_type": None,
            "created_at": event.occurred_at,
            "updated_at": event.occurred_at,
            "version": event.seq,
        }
    if state is None:
        raise ValueError(f"{event.type} before SessionRequested in {event.stream_id}")
    state = dict(state, updated_at=event.occurred_at, version=event.seq)
    if event.type == "SessionStarted":
        if state["status"] == SessionStatus.REQUESTED.value:
            state["status"] = SessionStatus.RUNNING.value
        if p.get("pattern"):
            state["pattern"] = p["pattern"]
    elif event.type == "PatternChosen":
        state["pattern"] = p["pattern"]
    elif event.type in ("StepCompleted", "StepFailed"):
        state["attempts"] += 1
        state["agent_id"] = p.get("agent_id", state["agent_id"])
        state["cost_usd"] += float(p.get("cost_usd", 0.0))
        state["input_tokens"] += int(p.get("gen_ai.usage.input_tokens", 0))
        state["output_tokens"] += int(p.get("gen_ai.usage.output_tokens", 0))
    elif event.type in TERMINAL_EVENTS:
        state["status"] = TERMINAL_EVENTS[event.type]
        state["output"] = p.get("output")
        state["error_type"] = p.get("error.type")
        if p.get("agent_id"):
            state["agent_id"] = p["agent_id"]
    return state


def replay(events: list[Event]) -> dict[str, Any] | None:
    state: dict[str, Any] | None = None
    for event in events:
        state = apply_event(state, event)
    return state


def row_to_session(row: Any, request: SessionRequest | None = None) -> Session:
    """The session of a row (or a fold of its events); ``request``, when the caller has
    it parsed already, saves validating the stored request again."""
    data = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    if request is None:
        request = SessionRequest.model_validate(data["request"])
    return Session(
        session_id=data["session_id"],
        tenant_id=data["tenant_id"],
        pattern=PatternName(data["pattern"]),
        status=SessionStatus(data["status"]),
        task=request.task,
        budget_usd=request.budget_usd,
        deadline_s=request.deadline_s,
        optimize=request.optimize,
        max_attempts=request.max_attempts,
        wait_for_recovery_s=request.wait_for_recovery_s,
        agent_id=data["agent_id"],
        attempts=data["attempts"],
        cost_usd=data["cost_usd"],
        input_tokens=data["input_tokens"],
        output_tokens=data["output_tokens"],
        output=data["output"],
        error_type=data["error_type"],
        created_at=as_utc(data["created_at"]),
        updated_at=as_utc(data["updated_at"]),
        version=data["version"],
    )


_PROJECTED = {c.name for c in sessions.columns} - {"lease_owner", "lease_expires_at"}
_INSERT_SESSION = DriverStatement(sessions, sorted(_PROJECTED))
# what events change after SessionRequested (the request, ids and creation time never do)
_MUTABLE = (
    "pattern",
    "status",
    "agent_id",
    "attempts",
    "cost_usd",
    "input_tokens",
    "output_tokens",
    "output",
    "error_type",
    "updated_at",
    "version",
)
_UPDATE_SESSION = DriverStatement(sessions, _MUTABLE, key="session_id")


def project(
    conn: Connection | Transaction,
    written: list[Event],
    known_state: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Apply freshly written events of one session to the sessions table, in the caller's
    transaction, and return the new row. ``known_state`` (the row as the caller last saw
    it) saves a read. Given the writer's Transaction, the row is written once, batched
    with the rest of its commit group."""
    tx = conn if isinstance(conn, Transaction) else None
    connection = conn.conn if isinstance(conn, Transaction) else conn
    state = known_state
    exists = state is not None
    changed = False
    for event in written:
        if event.stream_type != STREAM_TYPE:
            continue
        if tx is not None and event.position not in tx.fresh:
            continue  # found by its idempotency key: projected when it was first written
        fresh_stream = event.type == "SessionRequested" and event.seq == 1 and state is None
        if not fresh_stream and (state is None or state["version"] != event.seq - 1):
            if tx is not None:
                tx.run_later()  # what the group queued must be visible to this read
            current = connection.execute(
                select(sessions).where(sessions.c.session_id == event.payload["session_id"])
            ).first()
            state = None if current is None else {k: current._mapping[k] for k in _PROJECTED}
            exists = state is not None
            if state is not None and state["version"] >= event.seq:
                continue  # an idempotent re-append handed back an event already projected
        state = apply_event(state, event)
        changed = True
    if state is None or not changed:
        return state
    statement = _UPDATE_SESSION if exists else _INSERT_SESSION
    if tx is not None:
        tx.later(statement, state)
    else:
        statement.execute(connection, [state])
    return state


def append_session_events(
    tx: Transaction,
    session_id: str,
    tenant_id: str,
    new_events: list[NewEvent],
    *,
    known_version: int | None = None,
    known_state: dict[str, Any] | None = None,
) -> list[Event]:
    written = tx.append(
        session_stream(session_id), STREAM_TYPE, tenant_id, new_events, known_version=known_version
    )
    project(tx.conn, written, known_state)
    return written


class SessionService:
    def __init__(self, store: EventStore, registry: AgentRegistry) -> None:
        self.store = store
        self.registry = registry
        self._refused_until: dict[str, float] = {}  # tenant -> monotonic time
        self._refused_lock = threading.Lock()

    def submit(self, request: SessionRequest, *, max_in_flight: int | None = None) -> Session:
        """Record a requested session; a runtime (or the Dagster sensor) picks it up.

        With ``max_in_flight``, a tenant that has that many sessions requested or running is
        refused (TooManyInFlight). The count is taken by the writer inside the commit group
        that writes the session (once per group, plus the group's own admissions), so
        concurrent submissions cannot all pass on one stale count."""
        self._refuse_if_held(request.tenant_id, max_in_flight)
        existing = self._check_request(request)
        if existing is not None:
            return existing
        op = self._requested(request, max_in_flight=max_in_flight)
        return self._submitted(request, self.store.write(op))

    async def submit_async(
        self, request: SessionRequest, *, max_in_flight: int | None = None
    ) -> Session:
        """``submit`` for async callers: the checks run in a thread, the write through the
        store's writer, and the event loop never waits on the database."""
        self._refuse_if_held(request.tenant_id, max_in_flight)
        if request.idempotency_key:
            existing = await self.store.read(self._check_request, request)
            if existing is not None:
                return existing
            op = self._requested(request, max_in_flight=max_in_flight)
        else:
            # checked by the writer just before the write: no extra thread hop per submission
            op = self._requested(request, check=True, max_in_flight=max_in_flight)
        return self._submitted(request, await self.store.write_async(op))

    def _refuse_if_held(self, tenant_id: str, ceiling: int | None) -> None:
        if ceiling is None:
            return
        with self._refused_lock:
            until = self._refused_until.get(tenant_id)
        if until is not None and time.monotonic() < until:
            raise TooManyInFlight(ceiling)

    def _admit(self, tx: Transaction, tenant_id: str, ceiling: int) -> None:
        """In the writer's transaction: refuse at the ceiling. The open sessions of all
        tenants are counted once per commit group (an index-only count); while that total
        and the group's admissions stay below the ceiling, every tenant is below it. Past
        that, the per-tenant counts are read, once per group."""
        seen: _OpenCount | None = tx.memo.get(CEILING_MEMO)
        if seen is None:
            tx.run_later()  # sessions queued earlier in this group count too
            seen = tx.memo[CEILING_MEMO] = _OpenCount(open_sessions(tx.conn))
        admitted = seen.admitted.get(tenant_id, 0)
        if seen.total + seen.admitted_total >= ceiling:
            if seen.by_tenant is None:
                tx.run_later()
                seen.by_tenant = in_flight_by_tenant(tx.conn)
            if seen.by_tenant.get(tenant_id, 0) + admitted >= ceiling:
                with self._refused_lock:
                    if len(self._refused_until) > 10_000:
                        self._refused_until.clear()
                    self._refused_until[tenant_id] = time.monotonic() + CEILING_HOLD_S
                raise TooManyInFlight(ceiling)
        seen.admitted[tenant_id] = admitted + 1
        seen.admitted_total += 1

    def _check_request(self, request: SessionRequest) -> Session | None:
        """Refuse an unknown capability or an invalid workflow; a repeated idempotency key
        returns the session it created."""
        if request.workflow is not None:
            from nofx.workflows.model import parse_workflow

            parse_workflow(
                request.workflow, known_capabilities=self.registry.capabilities(request.tenant_id)
            )
        else:
            self.registry.require_capability(request.task.capability, request.tenant_id)
        if request.idempotency_key:
            existing = self.store.event_by_key(
                f"submit/{request.tenant_id}/{request.idempotency_key}"
            )
            if existing is not None:
                return self.get(existing.payload["session_id"])
        return None

    def _requested(
        self, request: SessionRequest, *, check: bool = False, max_in_flight: int | None = None
    ) -> Append:
        session_id = new_id("ses")
        payload = {
            "session_id": session_id,
            "pattern": request.pattern.value,
            "request": request.model_dump(mode="json"),
            "task.capability": request.task.capability,
        }
        key = (
            f"submit/{request.tenant_id}/{request.idempotency_key}"
            if request.idempotency_key
            else None
        )

        def after(tx: Transaction, written: list[Event]) -> dict[str, Any] | None:
            if written[0].payload["session_id"] != session_id:
                return None  # the same request raced us: the key points at its session
            notify_work(tx.conn)
            return project(tx, written)

        def prepare(_op: Append, tx: Transaction) -> None:
            # refuses before anything is written; the tenant's capabilities are read once
            # per commit group, not once per submission
            if max_in_flight is not None:
                self._admit(tx, request.tenant_id, max_in_flight)
            if not check:
                return
            if request.workflow is not None:
                self._check_request(request)
                return
            # asked once per tenant and capability in a commit group, through the index
            memo_key = ("registry.offers", request.tenant_id, request.task.capability)
            offered = tx.memo.get(memo_key)
            if offered is None:
                offered = tx.memo[memo_key] = self.registry.offers(
                    tx.conn, request.tenant_id, request.task.capability
                )
            if not offered:
                self.registry.require_capability(
                    request.task.capability, request.tenant_id, conn=tx.conn
                )

        return Append(
            session_stream(session_id),
            STREAM_TYPE,
            request.tenant_id,
            [NewEvent(type="SessionRequested", payload=payload, idempotency_key=key)],
            after=after,
            prepare=prepare if check or max_in_flight is not None else None,
        )

    def _submitted(self, request: SessionRequest, written: Written) -> Session:
        if written.value is None:
            return self.get(written.events[0].payload["session_id"])
        return row_to_session(written.value, request)

    def get(self, session_id: str, *, tenant_id: str | None = None) -> Session:
        query = select(sessions).where(sessions.c.session_id == session_id)
        if tenant_id is not None:
            query = query.where(sessions.c.tenant_id == tenant_id)
        with self.store.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFoundError(
                f"no session with id {session_id!r}", hint="list sessions to find it"
            )
        return row_to_session(row)

    def list(
        self,
        *,
        tenant_id: str | None = None,
        status: SessionStatus | None = None,
        limit: int = 100,
        before: tuple[datetime, str] | None = None,
    ) -> builtins.list[Session]:
        """Newest first; ``before`` is a (created_at, session_id) cursor for the next page."""
        query = select(sessions)
        if tenant_id is not None:
            query = query.where(sessions.c.tenant_id == tenant_id)
        if status is not None:
            query = query.where(sessions.c.status == status.value)
        if before is not None:
            created, sid = before
            query = query.where(
                (sessions.c.created_at < created)
                | ((sessions.c.created_at == created) & (sessions.c.session_id < sid))
            )
        query = query.order_by(sessions.c.created_at.desc(), sessions.c.session_id.desc()).limit(
            limit
        )
        with self.store.engine.connect() as conn:
            return [row_to_session(r) for r in conn.execute(query)]

    def count_by_status(self) -> dict[str, int]:
        from sqlalchemy import func

        query = select(sessions.c.status, func.count()).group_by(sessions.c.status)
        with self.store.engine.connect() as conn:
            return {str(row[0]): int(row[1]) for row in conn.execute(query)}

    def cancel(
        self, session_id: str, *, tenant_id: str | None = None, reason: str = "cancelled by user"
    ) -> Session:
        session = self.get(session_id, tenant_id=tenant_id)
        if session.status.terminal:
            raise ConflictError(
                f"session {session_id} is already {session.status.value}",
                hint="only requested or running sessions can be cancelled",
            )
        cancelled = NewEvent(
            type="SessionCancelled",
            payload={"session_id": session_id, "reason": reason, "error.type": "cancelled"},
            idempotency_key=f"{session_id}/terminal",
        )
        self.store.write(
            Append(
                session_stream(session_id),
                STREAM_TYPE,
                session.tenant_id,
                [cancelled],
                after=lambda tx, written: project(tx, written),
            )
        )
        return self.get(session_id)

    def events(self, session_id: str, *, after_seq: int = 0) -> builtins.list[Event]:
        return self.store.read_stream(session_stream(session_id), after_seq=after_seq)

    def rebuild(self, session_id: str) -> dict[str, Any] | None:
        """Replay a session's events into its state, without calling any agent."""
        return replay(self.events(session_id))

    def requested_count(self) -> int:
        return self.count_by_status().get(SessionStatus.REQUESTED.value, 0)
