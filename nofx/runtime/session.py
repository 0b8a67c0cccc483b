"""One session as a pattern sees it (``nofx.execution.Execution``): its events, a chain of
durable writes through the store's group-commit writer, and ``call_step``, which answers a
step that already completed from the log and otherwise chooses, calls and retries agents."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.exc import IntegrityError

from nofx.agents import AgentCallError, ErrorClass
from nofx.domain import Agent, Event, Message, NewEvent, Session, utcnow
from nofx.execution import StepError, StepResult
from nofx.failures import FailureClass
from nofx.routing.retry import RetryAction, RetryPolicy, backoff_delay, next_action
from nofx.routing.selection import SelectionRequest
from nofx.runtime.calls import AgentCalls, result_from_event
from nofx.runtime.leases import RELEASE
from nofx.sessions import STREAM_TYPE as SESSION_STREAM_TYPE
from nofx.sessions import project, replay, session_stream
from nofx.store import Transaction
from nofx.store.writer import Append, Written

log = logging.getLogger(__name__)


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

    def __init__(
        self,
        runtime: AgentCalls,
        session: Session,
        history: list[Event],
        state: dict[str, Any] | None = None,
    ) -> None:
        self.runtime = runtime
        self.session = session
        self.history = history
        # ``state``: the fold of ``history`` when the caller has it already (the engine does)
        self.state = replay(history) if state is None else state
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
        return NewEvent.trusted(event_type, payload, key)

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
                tx.later(RELEASE, {"b_session_id": sid, "b_owner": runtime.config.worker_id})
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
            return result_from_event(done, replayed=True)
        attempt = sum(1 for e in past if e.type in ("StepFailed", "StepAbandoned"))
        started = {e.payload["attempt"] for e in past if e.type == "StepStarted"}
        finished = {e.payload["attempt"] for e in past if e.type in ("StepFailed", "StepAbandoned")}
        lost_attempts = sorted(started - finished)
        for lost in lost_attempts:
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
        # a lost attempt is retried; otherwise the last failure may already have ended the step
        given_up = None if lost_attempts else decided_to_fail(past, attempt, policy)
        if given_up is not None:
            raise StepError(step_id, given_up.payload["error.type"], given_up.payload["message"])
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
                raise StepError(
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
                raise StepError(step_id, outcome.error_type, str(outcome))
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
            except StepError as exc:
                if exc.error_type != "no_eligible_agent" or allowance <= 0:
                    raise
                left = allowance - (time.monotonic() - started)
                reopens = self.runtime.recovery_in_s(request)
                if reopens is None or reopens > left:
                    raise StepError(
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


def decided_to_fail(past: list[Event], attempts: int, policy: RetryPolicy) -> Event | None:
    """The step's last StepFailed when, by the retry policy, it had ended the step.

    A worker that wrote that failure and died before the session's end left no record of its
    decision; a resumed session makes it again from the log rather than calling an agent one
    attempt past the policy. For a log with no attempt lost with its worker (the caller
    retries a lost one). None when the step may go on (no failure yet, the last outcome an
    abandonment, or the policy allows another attempt)."""
    outcomes = [e for e in past if e.type in ("StepFailed", "StepAbandoned")]
    if not outcomes or outcomes[-1].type != "StepFailed":
        return None
    last = outcomes[-1]
    action = next_action(
        last.payload["error_class"], attempts, policy, last.payload.get("error.type")
    )
    return last if action is RetryAction.FAIL else None


def _log_publish_failure(done: Any) -> None:
    exc = None if done.cancelled() else done.exception()
    if exc is not None and not isinstance(exc, IntegrityError):  # IntegrityError: a repeat
        log.warning("a session's bus message was not stored: %s", exc)


def _fail(batch: list[_Outgoing], exc: BaseException) -> None:
    for item in batch:
        if item.waiter is not None and not item.waiter.done():
            item.waiter.set_exception(exc)
