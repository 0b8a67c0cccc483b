"""The asyncio runtime: claims requested sessions, runs their pattern, records every step as events.

Execution is durable: every step outcome is an event with an idempotency key,
and a step that already completed is answered from the event log instead of
calling the agent again. A runtime that dies mid-session leaves a lease that
expires; whichever runtime claims the session next resumes it where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError

from nofx.admission import Admission, relaxed_gc
from nofx.agents import AgentCall, AgentCallError, ErrorClass, ProviderSet
from nofx.domain import (
    Agent,
    Event,
    Message,
    NewEvent,
    PatternName,
    Session,
    SessionRequest,
    SessionStatus,
    utcnow,
)
from nofx.errors import ConcurrencyError, NoEligibleAgentError, NotFoundError
from nofx.failures import FailureClass, classify_error, session_failure_class
from nofx.pools import Autoscaler, PoolService
from nofx.registry import AgentRegistry
from nofx.routing.autoscale import ScalingDecision
from nofx.routing.breaker import BreakerState
from nofx.routing.retry import RetryAction, RetryPolicy, backoff_delay, next_action
from nofx.routing.selection import Outcome, SelectionRequest, Selector
from nofx.sessions import STREAM_TYPE as SESSION_STREAM_TYPE
from nofx.sessions import SessionService, project, replay, row_to_session, session_stream
from nofx.store import EventStore, Transaction
from nofx.store.schema import sessions
from nofx.store.writer import Append, Written

log = logging.getLogger(__name__)
_RELEASE = (
    update(sessions)
    .where(
        sessions.c.session_id == bindparam("b_session_id"),
        sessions.c.lease_owner == bindparam("b_owner"),
    )
    .values(lease_owner=None, lease_expires_at=None)
)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class StepFailed(Exception):
    """A step ran out of options; the session fails with this error type."""

    def __init__(self, step_id: str, error_type: str, message: str) -> None:
        super().__init__(message)
        self.step_id = step_id
        self.error_type = error_type


@dataclass(frozen=True)
class StepResult:
    step_id: str
    agent_id: str
    agent_name: str
    output: str
    cost_usd: float
    latency_ms: float
    input_tokens: int
    output_tokens: int
    replayed: bool = False
    quality: float | None = None


@dataclass(frozen=True)
class PatternResult:
    output: str
    agent_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


PatternRunner = Callable[["SessionExecution"], Awaitable[PatternResult]]


@dataclass
class RuntimeConfig:
    worker_id: str = field(default_factory=default_worker_id)
    lease_s: float = 60.0
    concurrency: int = 256
    time_scale: float = 1.0
    call_timeout_s: float = 60.0
    seed: int = 7
    autoscale_interval_s: float = 2.0
    # sessions started per event-loop turn (nofx.admission): the first turn's cap; with
    # ``turn_budget_s`` the cap then follows the loop so that starting sessions holds it
    # about that long per turn. Both None: every claimed session starts in one turn, which
    # at 10,000 sessions stalled the loop for seconds (ADR 0015)
    starts_per_turn: int | None = None
    turn_budget_s: float | None = 0.02
    # no session starts while the store's writer has more operations than this waiting:
    # StepStarted would be stamped and then queue behind them (ADR 0015)
    writer_backlog_limit: int = 256
    # while sessions run, the young generation is collected every this many allocations
    # instead of 700: with 10,000 sessions alive, full collections took most of the CPU
    # (ADR 0015); None leaves the collector as it is
    gc_young_threshold: int | None = 50_000


@dataclass
class _Outgoing:
    """Events waiting to be written for one session, in the order they were emitted."""

    events: list[NewEvent]
    waiter: asyncio.Future[list[Event]] | None = None
    release_lease: bool = False


class SessionExecution:
    """What a pattern sees: the session, and a durable ``call_step``.

    Writes of one session form a chain: each is one operation for the store's group-commit
    writer, sent when the previous one has committed, carrying everything emitted in between.
    ``write`` awaits its own commit; ``emit`` (for patterns' extra facts) queues without
    waiting, and is durable before any later awaited write of the session is. A write that
    fails fails every later write of the session with the same error."""

    def __init__(self, runtime: Runtime, session: Session, history: list[Event]) -> None:
        self.runtime = runtime
        self.session = session
        self.history = history
        self.state = replay(history)
        self._positions = {e.position for e in history}
        self._deferred: list[NewEvent] = []
        self._outbox: list[_Outgoing] = []
        self._in_flight: list[_Outgoing] | None = None  # the one write of this chain at the writer
        self._idle: asyncio.Future[None] | None = None
        self._failure: BaseException | None = None
        self._rng: random.Random | None = None

    @property
    def rng(self) -> random.Random:
        """This session's random draws (backoff jitter), seeded by the session: made on first
        use, since seeding from a string costs more than most sessions' whole step."""
        if self._rng is None:
            self._rng = random.Random(f"{self.runtime.config.seed}/{self.session.session_id}")
        return self._rng

    def _step_events(self, step_id: str) -> list[Event]:
        return [e for e in self.history if e.payload.get("step_id") == step_id]

    def _new_event(self, event_type: str, payload: dict[str, Any], key: str | None) -> NewEvent:
        payload = {"session_id": self.session.session_id, **payload}
        return NewEvent(type=event_type, payload=payload, idempotency_key=key)

    def defer(self, event_type: str, payload: dict[str, Any], key: str | None = None) -> None:
        """Queue an event to be written with the next ``emit`` (one transaction instead of two)."""
        self._deferred.append(self._new_event(event_type, payload, key))

    def emit(self, event_type: str, payload: dict[str, Any], key: str | None = None) -> None:
        """Write deferred events and this one (with the session's projection) without waiting:
        they are durable before any later ``write`` of this session returns."""
        self._send(self._new_event(event_type, payload, key), None, release_lease=False)

    async def write(
        self,
        event_type: str,
        payload: dict[str, Any],
        key: str | None = None,
        *,
        release_lease: bool = False,
    ) -> list[Event]:
        """Write deferred events and this one, and await their durable commit;
        ``release_lease`` frees the session in the same transaction."""
        waiter: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()
        self._send(self._new_event(event_type, payload, key), waiter, release_lease=release_lease)
        return await waiter

    def publish(self, message: Message) -> None:
        """Put a message on the bus without waiting: it goes through the same writer, queued
        before any later write of this session. A message already published (a resumed
        session repeating itself) is stored once."""
        from nofx.bus import MessageBus

        future = MessageBus(self.runtime.store).publish_nowait(message)
        future.add_done_callback(_log_publish_failure)

    async def flush(self) -> None:
        """Wait until everything emitted so far is durable (raises the chain's failure)."""
        while self._in_flight is not None:
            if self._idle is None or self._idle.done():
                self._idle = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._idle)
        if self._failure is not None:
            raise self._failure

    def _send(
        self, event: NewEvent, waiter: asyncio.Future[list[Event]] | None, *, release_lease: bool
    ) -> None:
        events = [*self._deferred, event]
        self._deferred.clear()
        self._outbox.append(_Outgoing(events, waiter, release_lease))
        if self._in_flight is None:
            self._dispatch()

    def _dispatch(self) -> None:
        """Send everything waiting as one operation; its commit callback sends what queued
        meanwhile. A callback, not a task per write: nothing to schedule but the answer."""
        while self._outbox:
            batch, self._outbox = self._outbox, []
            if self._failure is not None:
                _fail(batch, self._failure)
                continue
            try:
                future = self.runtime.store.submit_async(self._operation(batch))
            except Exception as exc:  # the store is closed: this write and later ones fail
                self._failure = exc
                _fail(batch, exc)
                continue
            self._in_flight = batch
            future.add_done_callback(self._written)
            return
        if self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    def _written(self, future: asyncio.Future[Written]) -> None:
        batch, self._in_flight = self._in_flight or [], None
        if future.cancelled():
            self._failure = asyncio.CancelledError()
            _fail(batch, self._failure)
        elif (exc := future.exception()) is not None:
            self._failure = exc
            _fail(batch, exc)
        else:
            written = future.result()
            events: list[Event] = written.events
            if written.value is not None:
                self.state = written.value
            positions = self._positions
            for e in events:
                if e.position not in positions:
                    self.history.append(e)
                    positions.add(e.position)
            cursor = 0
            for item in batch:
                mine = events[cursor : cursor + len(item.events)]
                cursor += len(item.events)
                if item.waiter is not None and not item.waiter.done():
                    item.waiter.set_result(mine)
        self._dispatch()

    def _operation(self, batch: list[_Outgoing]) -> Append:
        sid = self.session.session_id
        release = any(item.release_lease for item in batch)
        known_state = self.state
        runtime = self.runtime

        def after(tx: Transaction, written: list[Event]) -> dict[str, Any] | None:
            state = project(tx, written, known_state)
            if release:
                tx.later(_RELEASE, {"b_session_id": sid, "b_owner": runtime.config.worker_id})
            return state

        return Append(
            session_stream(sid),
            SESSION_STREAM_TYPE,
            self.session.tenant_id,
            [e for item in batch for e in item.events],
            known_version=self.history[-1].seq if self.history else None,
            occurred_at=utcnow(),
            after=after,
        )

    def spent_usd(self) -> float:
        """Cost of every step outcome so far, written or waiting in the deferred batch."""
        written = sum(
            float(e.payload.get("cost_usd", 0.0))
            for e in self.history
            if e.type in ("StepCompleted", "StepFailed")
        )
        waiting = [*self._deferred, *(e for item in self._outbox for e in item.events)]
        deferred = sum(
            float(e.payload.get("cost_usd", 0.0))
            for e in waiting
            if e.type in ("StepCompleted", "StepFailed")
        )
        return written + deferred

    async def call_step(
        self,
        step_id: str,
        capability: str,
        prompt: str,
        *,
        input_tokens: int | None = None,
        complexity: float | None = None,
        min_proficiency: int = 1,
        exclude: frozenset[str] = frozenset(),
        max_attempts: int | None = None,
        write_with_next: bool = False,
        context: dict[str, Any] | None = None,
    ) -> StepResult:
        """Run one step to success or give up; replays a completed step from the log.

        ``write_with_next`` says the pattern writes an event right after this step (the
        session's end, a review verdict): the step's completion is then written in that same
        transaction instead of one of its own. A crash between the two redoes the call,
        exactly as a crash during the call would."""
        sid = self.session.session_id
        task = self.session.task
        past = self._step_events(step_id)
        done = next((e for e in past if e.type == "StepCompleted"), None)
        if done is not None:
            return _result_from_event(done, replayed=True)
        attempt = sum(1 for e in past if e.type in ("StepFailed", "StepAbandoned"))
        started = {e.payload["attempt"] for e in past if e.type == "StepStarted"}
        finished = {e.payload["attempt"] for e in past if e.type in ("StepFailed", "StepAbandoned")}
        for lost in sorted(started - finished):
            await self.write(
                "StepAbandoned",
                {
                    "step_id": step_id,
                    "attempt": lost,
                    "error.type": "worker_lost",
                    "failure_class": FailureClass.ORCHESTRATION.value,
                },
                key=f"{sid}/{step_id}/{lost}/abandoned",
            )
            attempt += 1
        failed_agents = {
            e.payload["agent_id"]
            for e in past
            if e.type == "StepFailed" and e.payload.get("error_class") == ErrorClass.AGENT_FAULT
        }
        policy = RetryPolicy(max_attempts=max_attempts or self.session.max_attempts)
        last_agent: Agent | None = None
        retried_agents: set[str] = set()
        while True:
            attempt += 1
            budget_left = (
                None
                if self.session.budget_usd is None
                else self.session.budget_usd - self.spent_usd()
            )
            if budget_left is not None and budget_left <= 0:
                raise StepFailed(
                    step_id, "budget_exhausted", f"budget of ${self.session.budget_usd} spent"
                )
            request = SelectionRequest(
                capability=capability,
                tenant_id=self.session.tenant_id,
                min_proficiency=min_proficiency,
                optimize=self.session.optimize,  # type: ignore[arg-type]
                budget_usd=budget_left,
                deadline_s=self.session.deadline_s,
                # the call's real timeout: no call may outlive the session's deadline
                timeout_s=min(
                    self.runtime.config.call_timeout_s, self.session.deadline_s or float("inf")
                ),
                input_tokens=input_tokens or task.input_tokens,
                complexity=task.complexity if complexity is None else complexity,
                exclude=frozenset(exclude | failed_agents),
            )
            if last_agent is not None and not self.runtime.breaker_allows(last_agent.agent_id):
                last_agent = None  # its breaker opened meanwhile: choose again, or wait
            agent = last_agent or await self.choose_or_wait(request, step_id, attempt)
            last_agent = None
            outcome = await self.runtime.invoke(
                self,
                agent,
                step_id,
                attempt,
                request,
                prompt,
                write_with_next=write_with_next,
                context=context,
            )
            if isinstance(outcome, StepResult):
                return outcome
            action = next_action(outcome.error_class, attempt, policy, outcome.error_type)
            if action is RetryAction.FAIL:
                raise StepFailed(step_id, outcome.error_type, str(outcome))
            if action is RetryAction.RETRY_SAME and self._should_move_on(
                outcome, agent, retried_agents, request
            ):
                action = RetryAction.REROUTE
            if action is RetryAction.RETRY_SAME:
                retried_agents.add(agent.agent_id)
                last_agent = agent
                delay = max(
                    backoff_delay(attempt, policy, self.rng),
                    min(policy.max_delay_s, getattr(outcome, "retry_after_s", None) or 0.0),
                )
                delay *= self.runtime.config.time_scale
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                failed_agents.add(agent.agent_id)

    async def choose_or_wait(self, request: SelectionRequest, step_id: str, attempt: int) -> Agent:
        """Choose an agent; when every qualified agent is cut off by its breaker and the
        session allows it, wait for the first one to take a probe instead of failing."""
        allowance = self.session.wait_for_recovery_s or 0.0
        started = time.monotonic()
        while True:
            await self.runtime.prepare_choice(request)
            try:
                return self.runtime.choose(request, self, step_id, attempt)
            except StepFailed as exc:
                if exc.error_type != "no_eligible_agent" or allowance <= 0:
                    raise
                left = allowance - (time.monotonic() - started)
                reopens = self.runtime.recovery_in_s(request)
                if reopens is None or reopens > left:
                    raise StepFailed(
                        step_id,
                        "no_eligible_agent",
                        f"no agent for {request.capability!r} recovers within the "
                        f"{allowance:g}s the session may wait"
                        + ("" if reopens is None else f" (next probe in {reopens:.1f}s)"),
                    ) from exc
                self.emit(
                    "WaitingForRecovery",
                    {
                        "step_id": step_id,
                        "attempt": attempt,
                        "capability": request.capability,
                        "wait_s": round(reopens, 3),
                        "allowance_left_s": round(left, 3),
                    },
                )
                await asyncio.sleep(max(reopens, 0.01))

    def _should_move_on(
        self, error: AgentCallError, agent: Agent, retried: set[str], request: SelectionRequest
    ) -> bool:
        """A timeout, or a second transient failure, means the agent is unwell (dark, overloaded):
        hand the step to another agent when one can take it, instead of waiting on this one."""
        if error.error_type != "timeout" and agent.agent_id not in retried:
            return False
        others = replace(request, exclude=request.exclude | {agent.agent_id})
        candidates = self.runtime.candidates(request.tenant_id, request.capability)
        return bool(self.runtime.selector.rank(others, candidates))


def _log_publish_failure(done: Any) -> None:
    exc = None if done.cancelled() else done.exception()
    if exc is not None and not isinstance(exc, IntegrityError):  # IntegrityError: a repeat
        log.warning("a session's bus message was not stored: %s", exc)


def _fail(batch: list[_Outgoing], exc: BaseException) -> None:
    for item in batch:
        if item.waiter is not None and not item.waiter.done():
            item.waiter.set_exception(exc)


def _result_from_event(event: Event, *, replayed: bool) -> StepResult:
    return _result_from_payload(event.payload, replayed=replayed)


def _result_from_payload(p: dict[str, Any], *, replayed: bool) -> StepResult:
    return StepResult(
        step_id=p["step_id"],
        agent_id=p["agent_id"],
        agent_name=p.get("gen_ai.agent.name", ""),
        output=p.get("output", ""),
        cost_usd=float(p.get("cost_usd", 0.0)),
        latency_ms=float(p.get("latency_ms", 0.0)),
        input_tokens=int(p.get("gen_ai.usage.input_tokens", 0)),
        output_tokens=int(p.get("gen_ai.usage.output_tokens", 0)),
        replayed=replayed,
        quality=p.get("quality"),
    )


async def run_solo(execution: SessionExecution) -> PatternResult:
    """Solo: one step, one capability, the best agent for it."""
    task = execution.session.task
    step = await execution.call_step("solo", task.capability, task.prompt, write_with_next=True)
    return PatternResult(output=step.output, agent_id=step.agent_id)


@dataclass
class RunSummary:
    sessions: list[Session] = field(default_factory=list)
    interrupted: list[tuple[str, str]] = field(default_factory=list)

    @property
    def succeeded(self) -> int:
        return sum(1 for s in self.sessions if s.status is SessionStatus.SUCCEEDED)

    @property
    def failed(self) -> int:
        return sum(1 for s in self.sessions if s.status is SessionStatus.FAILED)


class Runtime:
    """Runs sessions. One per process; several may share a store (leases keep them apart)."""

    def __init__(
        self,
        store: EventStore,
        registry: AgentRegistry | None = None,
        providers: ProviderSet | None = None,
        selector: Selector | None = None,
        config: RuntimeConfig | None = None,
        patterns: dict[PatternName, PatternRunner] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry or AgentRegistry(store)
        self.config = config or RuntimeConfig()
        self.providers = providers or ProviderSet.default(
            seed=self.config.seed, time_scale=self.config.time_scale
        )
        if selector is None:
            from nofx.routing.router import default_router

            # statistics shared through the store with every worker and the API
            selector = default_router(store, seed=self.config.seed)
        self.selector: Selector = selector
        self.sessions = SessionService(store, self.registry)
        if patterns is None:
            from nofx.patterns import default_patterns  # imports this module: resolve at call time

            patterns = default_patterns()
        self.patterns: dict[PatternName, PatternRunner] = {PatternName.SOLO: run_solo, **patterns}
        self._agents_cache: dict[tuple[str, str], list[Agent]] = {}
        self._fleets: dict[str, list[Agent]] = {}
        self._fleet_loads: dict[str, asyncio.Future[None]] = {}
        self._breaker_cursor = 0
        self._breaker_synced_at = float("-inf")
        self._breaker_sync: asyncio.Future[None] | None = None
        self.autoscaler = Autoscaler(PoolService(store), self.config.worker_id)

    # -- choosing and calling agents -------------------------------------------------------
    def candidates(self, tenant_id: str, capability: str) -> list[Agent]:
        """Agents of the tenant offering ``capability``, from this runtime's cache (filled off
        the loop by ``prepare_tenant``; read here only when a caller skipped that)."""
        key = (tenant_id, capability)
        if key not in self._agents_cache:
            fleet = self._fleets.get(tenant_id)
            self._agents_cache[key] = (
                self.registry.list(tenant_id=tenant_id, capability=capability)
                if fleet is None
                else [a for a in fleet if a.proficiency(capability) >= 1]
            )
        return self._agents_cache[key]

    def refresh_agents(self) -> None:
        self._agents_cache.clear()
        self._fleets.clear()

    async def prepare_tenant(self, tenant_id: str) -> None:
        """Read the tenant's agents once, in a thread, so that choosing an agent for any
        capability needs no database read on the event loop (``refresh_agents`` re-reads)."""
        if tenant_id in self._fleets:
            return
        loading = self._fleet_loads.get(tenant_id)
        if loading is None:

            async def load() -> None:
                try:
                    fleet = await self.store.read(self.registry.list, tenant_id=tenant_id)
                    self._fleets.setdefault(tenant_id, fleet)
                finally:
                    self._fleet_loads.pop(tenant_id, None)

            loading = self._fleet_loads[tenant_id] = asyncio.ensure_future(load())
        await asyncio.shield(loading)  # thousands of sessions starting at once share one read

    async def prepare_choice(self, request: SelectionRequest) -> None:
        """Do the reads ``choose`` needs in a thread: the candidates (once per capability)
        and other workers' breaker transitions (at most once a second)."""
        await self.prepare_tenant(request.tenant_id)
        if getattr(self.selector, "breakers", None) is None:
            return
        if self._breaker_sync is None and time.monotonic() - self._breaker_synced_at >= 1.0:
            self._breaker_sync = asyncio.ensure_future(self._sync_breakers())
        if self._breaker_sync is not None:
            await asyncio.shield(self._breaker_sync)  # every chooser waits for the one read

    async def _sync_breakers(self) -> None:
        try:
            events = await self.store.read(
                self.store.read_all,
                after_position=self._breaker_cursor,
                limit=10_000,
                stream_type="breaker",
            )
            self._adopt(events)
        finally:
            self._breaker_synced_at = time.monotonic()
            self._breaker_sync = None

    def choose(
        self, request: SelectionRequest, execution: SessionExecution, step_id: str, attempt: int
    ) -> Agent:
        self.adopt_breaker_transitions()
        candidates = self.candidates(request.tenant_id, request.capability)
        ranked = self.selector.rank(request, candidates)
        if not ranked and request.budget_usd is not None:
            unbounded = replace(request, budget_usd=None)
            if self.selector.rank(unbounded, candidates):
                raise StepFailed(
                    step_id,
                    "budget_exhausted",
                    f"every agent for {request.capability!r} costs more than the "
                    f"${request.budget_usd:.4f} left in the budget",
                )
        if not ranked and (reopens := self.recovery_in_s(request)) is not None:
            raise StepFailed(
                step_id,
                "no_eligible_agent",
                f"every agent for {request.capability!r} is cut off by its circuit breaker "
                f"(next probe in {reopens:.1f}s); set wait_for_recovery_s on the session "
                "to wait for it instead of failing",
            )
        if not ranked:
            raise StepFailed(
                step_id,
                "no_eligible_agent",
                str(
                    NoEligibleAgentError(
                        f"no agent can take {request.capability!r} "
                        f"(excluded after failures: {len(request.exclude)})",
                        hint="register more agents or raise the budget",
                    )
                ),
            )
        self.persist_breaker_transitions(request.tenant_id)  # e.g. open -> half_open on cooldown
        best = ranked[0]
        execution.defer(
            "AgentSelected",
            {
                "step_id": step_id,
                "attempt": attempt,
                "agent_id": best.agent.agent_id,
                "gen_ai.agent.name": best.agent.name,
                "capability": request.capability,
                "score": best.score,
                "expected_success": best.expected_success,
                "expected_cost_usd": best.expected_cost_usd,
                "reasons": list(best.reasons),
                "candidates": len(ranked),
            },
            key=f"{execution.session.session_id}/{step_id}/{attempt}/selected",
        )
        return best.agent

    def breaker_allows(self, agent_id: str) -> bool:
        board = getattr(self.selector, "breakers", None)
        return board is None or bool(board.allows(agent_id, time.monotonic()))

    def recovery_in_s(self, request: SelectionRequest) -> float | None:
        """Seconds until an agent for ``request``, now cut off by its breaker, takes a probe;
        None when no qualified agent is merely waiting on a breaker."""
        board = getattr(self.selector, "breakers", None)
        if board is None:
            return None
        agents = [
            a.agent_id
            for a in self.candidates(request.tenant_id, request.capability)
            if a.agent_id not in request.exclude
            and a.proficiency(request.capability) >= max(1, request.min_proficiency)
        ]
        return board.recovers_in(agents, time.monotonic())

    async def invoke(
        self,
        execution: SessionExecution,
        agent: Agent,
        step_id: str,
        attempt: int,
        request: SelectionRequest,
        prompt: str,
        *,
        write_with_next: bool = False,
        context: dict[str, Any] | None = None,
    ) -> StepResult | AgentCallError:
        sid = execution.session.session_id
        timeout_s = request.timeout_s or self.config.call_timeout_s
        base = {
            "step_id": step_id,
            "attempt": attempt,
            "agent_id": agent.agent_id,
            "agent_version": agent.version,
            "gen_ai.agent.name": agent.name,
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.provider.name": agent.provider.kind.value,
            "capability": request.capability,
        }
        await execution.write(
            "StepStarted",
            {**base, "timeout_s": timeout_s},  # a failure-model input
            key=f"{sid}/{step_id}/{attempt}/started",
        )
        call = AgentCall(
            call_id=f"{sid}/{step_id}/{attempt}",
            capability=request.capability,
            prompt=prompt,
            input_tokens=request.input_tokens,
            complexity=request.complexity,
            timeout_s=timeout_s,
            context=dict(context or {}),  # e.g. the workflow step's estimate, for providers
        )
        provider = self.providers.for_agent(agent)
        self.selector.acquire(agent.agent_id)
        try:
            timeout = timeout_s * max(self.config.time_scale, 1e-3) + 5
            async with self.autoscaler.slot(agent):  # waits while the agent's pool is full
                async with asyncio.timeout(timeout):  # no extra task per call, as wait_for has
                    result = await provider.invoke(agent, call)
            self.autoscaler.observe_latency(agent.agent_id, result.latency_ms)
        except AgentCallError as exc:
            error = exc
        except TimeoutError:
            error = AgentCallError(
                f"{agent.name} did not answer within {timeout_s}s",
                error_type="timeout",
                latency_ms=timeout_s * 1000,
            )
            error.error_class = ErrorClass.TRANSIENT
        except Exception as exc:  # a provider bug is the agent's fault, not the session's end
            error = AgentCallError(f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__)
        else:
            self.record_outcome(
                Outcome(
                    agent.agent_id,
                    request.capability,
                    True,
                    result.latency_ms,
                    result.cost_usd,
                    call_id=call.call_id,
                ),
                agent.tenant_id,
            )
            completed = {
                **base,
                "output": result.output,
                "gen_ai.usage.input_tokens": result.input_tokens,
                "gen_ai.usage.output_tokens": result.output_tokens,
                "cost_usd": result.cost_usd,
                "latency_ms": result.latency_ms,
                "quality": result.quality,
                "simulated": result.simulated,
            }
            key = f"{sid}/{step_id}/{attempt}/outcome"
            if write_with_next:
                execution.defer("StepCompleted", completed, key=key)
                return _result_from_payload(completed, replayed=False)
            written = await execution.write("StepCompleted", completed, key=key)
            return _result_from_event(written[0], replayed=False)
        finally:
            self.selector.release(agent.agent_id)
        self.record_outcome(
            Outcome(
                agent.agent_id,
                request.capability,
                False,
                error.latency_ms,
                error.cost_usd,
                error_class=error.error_class.value,
                error_type=error.error_type,
                call_id=call.call_id,
            ),
            agent.tenant_id,
        )
        await execution.write(
            "StepFailed",
            {
                **base,
                "error.type": error.error_type,
                "error_class": error.error_class.value,
                "failure_class": classify_error(error.error_type).value,
                "message": str(error),
                "gen_ai.usage.input_tokens": error.input_tokens,
                "gen_ai.usage.output_tokens": error.output_tokens,
                "cost_usd": error.cost_usd,
                "latency_ms": error.latency_ms,
            },
            key=f"{sid}/{step_id}/{attempt}/outcome",
        )
        return error

    def record_outcome(self, outcome: Outcome, tenant_id: str) -> None:
        """Teach the selector, and write down any circuit-breaker transition it made."""
        self.selector.record(outcome)
        self.persist_breaker_transitions(tenant_id)

    def adopt_breaker_transitions(self) -> None:
        """Apply the breaker transitions other workers wrote since we last looked (at most once a
        second), so an agent cut off by one worker is cut off for every worker sharing the store."""
        board = getattr(self.selector, "breakers", None)
        if board is None or time.monotonic() - self._breaker_synced_at < 1.0:
            return
        self._breaker_synced_at = time.monotonic()
        self._adopt(
            self.store.read_all(
                after_position=self._breaker_cursor, limit=10_000, stream_type="breaker"
            )
        )

    def _adopt(self, events: list[Event]) -> None:
        board = getattr(self.selector, "breakers", None)
        if board is None:
            return
        for event in events:
            if event.position <= self._breaker_cursor:
                continue
            self._breaker_cursor = event.position
            p = event.payload
            if p.get("worker_id") != self.config.worker_id:
                board.adopt(
                    p["agent_id"], BreakerState(p["to"]), p.get("reason", ""), time.monotonic()
                )

    def persist_breaker_transitions(self, tenant_id: str) -> None:
        drain = getattr(self.selector, "drain_transitions", None)
        if drain is None:
            return
        for t in drain():
            # queued, not awaited: a transition is a fact for other workers, nothing here
            # waits on it, and the writer keeps the order of one agent's transitions
            self.store.submit(
                Append(
                    f"breaker-{t.agent_id}",
                    "breaker",
                    tenant_id,
                    [
                        NewEvent(
                            type="BreakerTransitioned",
                            payload={
                                "agent_id": t.agent_id,
                                "from": t.before.value,
                                "to": t.after.value,
                                "reason": t.reason,
                                "worker_id": self.config.worker_id,
                            },
                        )
                    ],
                )
            )

    # -- sessions ----------------------------------------------------------------------------
    def claim(
        self, limit: int, session_ids: list[str] | None = None, exclude: set[str] | None = None
    ) -> list[str]:
        """Lease up to ``limit`` runnable sessions (requested, or running with an expired lease)."""
        result: list[str] = self.store.call(lambda tx: self._claim(tx, limit, session_ids, exclude))
        return result

    async def claim_async(
        self, limit: int, session_ids: list[str] | None = None, exclude: set[str] | None = None
    ) -> list[str]:
        """``claim`` through the writer, without blocking the event loop."""
        result: list[str] = await self.store.call_async(
            lambda tx: self._claim(tx, limit, session_ids, exclude)
        )
        return result

    def _claim(
        self,
        tx: Transaction,
        limit: int,
        session_ids: list[str] | None,
        exclude: set[str] | None,
    ) -> list[str]:
        now = utcnow()
        free = or_(sessions.c.lease_expires_at.is_(None), sessions.c.lease_expires_at < now)
        runnable = and_(
            sessions.c.status.in_([SessionStatus.REQUESTED.value, SessionStatus.RUNNING.value]),
            free,
        )
        query = select(sessions.c.session_id).where(runnable)
        if session_ids is not None:
            query = query.where(sessions.c.session_id.in_(session_ids))
        if exclude:
            query = query.where(sessions.c.session_id.not_in(sorted(exclude)))
        query = query.order_by(sessions.c.created_at).limit(limit).with_for_update(skip_locked=True)
        tx.run_later()  # the group's queued projection writes come before this read
        ids = [r[0] for r in tx.conn.execute(query)]
        if not ids:
            return []
        tx.conn.execute(
            update(sessions)
            .where(sessions.c.session_id.in_(ids), runnable)
            .values(
                lease_owner=self.config.worker_id,
                lease_expires_at=now + timedelta(seconds=self.config.lease_s),
            )
        )
        return ids

    def _renew(self, tx: Transaction, session_ids: list[str]) -> None:
        tx.conn.execute(
            update(sessions)
            .where(
                sessions.c.session_id.in_(session_ids),
                sessions.c.lease_owner == self.config.worker_id,
            )
            .values(lease_expires_at=utcnow() + timedelta(seconds=self.config.lease_s))
        )

    def renew_leases(self, session_ids: list[str]) -> None:
        if session_ids:
            self.store.call(lambda tx: self._renew(tx, session_ids))

    async def renew_leases_async(self, session_ids: list[str]) -> None:
        if session_ids:
            await self.store.call_async(lambda tx: self._renew(tx, session_ids))

    def release(self, session_id: str, *, conn: Connection | None = None) -> None:
        """Give a session's lease back (inside ``conn``'s transaction when given)."""
        params = {"b_session_id": session_id, "b_owner": self.config.worker_id}
        if conn is None:
            self.store.call(lambda tx: tx.conn.execute(_RELEASE, params))
            return
        conn.execute(_RELEASE, params)

    async def release_async(self, session_id: str) -> None:
        params = {"b_session_id": session_id, "b_owner": self.config.worker_id}
        await self.store.call_async(lambda tx: tx.conn.execute(_RELEASE, params))

    async def execute(self, session_id: str, history: list[Event] | None = None) -> Session:
        """Run (or resume) a session this runtime has claimed, to a terminal state
        (``history``: its events, when the caller read them already)."""
        if history is None:
            history = await self.store.read(self.sessions.events, session_id)
        state = replay(history)
        if state is None:
            raise NotFoundError(f"no session with id {session_id!r}", hint="list sessions")
        request = SessionRequest.model_validate(state["request"])  # parsed once per run
        session = row_to_session(state, request)  # the fold of its events: no second read
        if session.status.terminal:
            return session
        await self.prepare_tenant(session.tenant_id)
        execution = SessionExecution(self, session, history)
        pattern = session.pattern
        runner = self.patterns.get(pattern)
        terminal_key = f"{session_id}/terminal"
        if runner is None:
            await execution.write(
                "SessionFailed",
                {
                    "error.type": "unsupported_pattern",
                    "failure_class": FailureClass.ORCHESTRATION.value,
                    "message": f"pattern {pattern.value!r} is not available in this runtime",
                },
                key=terminal_key,
                release_lease=True,
            )
            return row_to_session(execution.state, request)
        previous = [e for e in history if e.type in ("SessionStarted", "SessionResumed")]
        if previous:
            # another runtime (or an earlier life of this one) began it: say who takes over
            execution.defer(
                "SessionResumed",
                {
                    "worker_id": self.config.worker_id,
                    "previous_worker_id": previous[-1].payload.get("worker_id"),
                    "completed_steps": sum(1 for e in history if e.type == "StepCompleted"),
                },
                key=f"{session_id}/resumed/{len(previous)}",
            )
        else:
            execution.defer(
                "SessionStarted",
                {"worker_id": self.config.worker_id, "pattern": pattern.value},
                key=f"{session_id}/started",
            )
        try:
            result = await runner(execution)
        except StepFailed as exc:
            await execution.flush()  # every step outcome in the history: they decide the class
            cause = session_failure_class(
                exc.error_type, exc.step_id, [*execution.history, *execution._deferred]
            )
            await execution.write(
                "SessionFailed",
                {
                    "error.type": exc.error_type,
                    "step_id": exc.step_id,
                    "message": str(exc),
                    "failure_class": cause.value,
                },
                key=terminal_key,
                release_lease=True,
            )
        else:
            await execution.write(
                "SessionCompleted",
                {
                    "output": result.output,
                    "agent_id": result.agent_id,
                    "cost_usd": execution.spent_usd(),
                    "details": result.details,
                },
                key=terminal_key,
                release_lease=True,
            )
        return row_to_session(execution.state, request)

    async def run_session(self, session_id: str) -> Session:
        if not await self.claim_async(1, [session_id]):
            session = await self.store.read(self.sessions.get, session_id)
            if session.status.terminal:
                return session
            raise NotFoundError(
                f"session {session_id} is leased by another runtime",
                hint="wait for it to finish or for its lease to expire",
            )
        try:
            return await self.execute(session_id)
        except BaseException:
            await self.release_async(session_id)
            raise

    async def run_pending(
        self,
        *,
        limit: int | None = None,
        on_done: Callable[[Session], None] | None = None,
        batch: int = 500,
        should_stop: Callable[[], bool] | None = None,
    ) -> RunSummary:
        """Claim and run runnable sessions until none are left (or ``limit`` ran)."""
        summary = RunSummary()
        gate = asyncio.Semaphore(self.config.concurrency)
        active: set[str] = set()

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(self.config.lease_s / 4)
                await self.renew_leases_async(sorted(active))

        async def autoscale() -> None:
            while True:
                await asyncio.sleep(self.config.autoscale_interval_s)
                await self.autoscale_once()

        config = self.config
        admission = (
            None
            if config.starts_per_turn is None and config.turn_budget_s is None
            else Admission(
                config.starts_per_turn or 64,
                turn_budget_s=config.turn_budget_s,
                backlog=self.store.writer.backlog,
                max_backlog=config.writer_backlog_limit,
            )
        )

        async def one(session_id: str, history: list[Event]) -> None:
            async with gate:
                try:
                    session = await self.execute(session_id, history)
                except ConcurrencyError as exc:
                    # Someone else wrote to the stream: a user cancelled it, or our lease ran
                    # out and another runtime took over. Step aside; the stream is the truth.
                    log.info("session %s moved on without us: %s", session_id, exc)
                    summary.interrupted.append((session_id, f"{type(exc).__name__}: {exc}"))
                    await self.release_async(session_id)
                    return
                except Exception as exc:
                    # The session stays runnable: its lease is released and another pass
                    # (or runtime) resumes it from its events. Nothing is dropped.
                    log.exception("session %s interrupted; it will be resumed", session_id)
                    summary.interrupted.append((session_id, f"{type(exc).__name__}: {exc}"))
                    await self.release_async(session_id)
                    return
                finally:
                    active.discard(session_id)
            summary.sessions.append(session)
            if on_done is not None:
                on_done(session)

        beat = asyncio.create_task(heartbeat())
        scaler = asyncio.create_task(autoscale())
        relaxed = relaxed_gc(config.gc_young_threshold)
        relaxed.__enter__()
        running: set[asyncio.Future[None]] = set()
        queued = 0  # claimed, waiting for admission: no task exists for them yet
        changed = asyncio.Event()  # a session ended or started: O(1) per event, unlike wait()

        def ended(task: asyncio.Future[None]) -> None:
            running.discard(task)
            changed.set()

        def start(session_id: str, history: list[Event]) -> None:
            nonlocal queued
            queued -= 1
            task = asyncio.ensure_future(one(session_id, history))
            running.add(task)
            task.add_done_callback(ended)

        try:
            exhausted = False  # the last claim found fewer than asked: wait for the running
            while True:
                stopping = should_stop is not None and should_stop()
                busy = len(running) + queued
                room = self.config.concurrency - busy
                if limit is not None:
                    room = min(room, limit - len(summary.sessions) - busy)
                # keep the slots full without a barrier between batches: claim again when a
                # quarter of them are free (or nothing runs). Claim no more than can run at
                # once: a claimed session waiting for a slot holds a lease for nothing. An
                # interrupted session is left for the next pass, not retried in a hot loop.
                refill = not busy or room >= max(1, self.config.concurrency // 4)
                if not stopping and not exhausted and room > 0 and refill:
                    want = min(room, batch)
                    ids = await self.claim_async(
                        want, exclude={sid for sid, _ in summary.interrupted}
                    )
                    exhausted = len(ids) < want
                    if ids:
                        active.update(ids)
                        # one read for the whole claim's histories, in a thread
                        histories = await self.store.read(self.store.read_streams, ids)
                        queued += len(ids)
                        for sid in ids:
                            history = histories.get(sid, [])
                            if admission is None:
                                start(sid, history)
                            else:
                                admission.admit(functools.partial(start, sid, history))
                if not running and not queued:
                    break
                changed.clear()
                await changed.wait()
                if not running and not queued:
                    exhausted = False  # everything ended: look once more before stopping
        finally:
            relaxed.__exit__(None, None, None)
            if admission is not None:
                admission.close()
            for task in (beat, scaler):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return summary

    async def autoscale_once(self, now: datetime | None = None) -> list[ScalingDecision]:
        """One round of pool scaling from what this worker sees; each decision is an event.
        A failure here must not stop the sessions: it is logged and tried next round."""
        agents = {a.agent_id: a for group in self._agents_cache.values() for a in group}
        try:
            return await self.autoscaler.evaluate(agents, now)
        except Exception:
            log.exception("autoscaling round failed; the pools keep their size")
            return []
