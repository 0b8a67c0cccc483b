"""The engine: claims sessions, runs each with the pattern it asked for, records the end.

It runs the patterns it is given (``patterns``) and imports none: ``nofx.runtime.Runtime``
is the engine with the built-in patterns registered (ADR 0019).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from nofx.admission import Admission, relaxed_gc
from nofx.agents import ProviderSet
from nofx.domain import Event, PatternName, Session, SessionRequest, SessionStatus
from nofx.errors import ConcurrencyError, NotFoundError
from nofx.execution import PatternRunner, StepError
from nofx.failures import FailureClass, session_failure_class
from nofx.pools import Autoscaler, PoolService
from nofx.registry import AgentRegistry
from nofx.routing.autoscale import ScalingDecision
from nofx.routing.selection import Selector
from nofx.runtime.calls import AgentCalls
from nofx.runtime.config import RuntimeConfig
from nofx.runtime.gil import switch_interval
from nofx.runtime.leases import Leases
from nofx.runtime.session import SessionExecution
from nofx.sessions import SessionService, replay, row_to_session
from nofx.store import EventStore

log = logging.getLogger(__name__)


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


class Engine(AgentCalls, Leases):
    """Runs sessions with the patterns it is given. One per process; several may share a
    store (leases keep them apart)."""

    def __init__(
        self,
        store: EventStore,
        registry: AgentRegistry | None = None,
        providers: ProviderSet | None = None,
        selector: Selector | None = None,
        config: RuntimeConfig | None = None,
        patterns: Mapping[PatternName, PatternRunner] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry or AgentRegistry(store)
        self.config = config or RuntimeConfig()
        self.providers = providers or ProviderSet.default(
            seed=self.config.seed, time_scale=self.config.time_scale
        )
        if selector is None:
            from nofx.routing.router import default_router

            # statistics shared through the store with every worker and the API; the runtime
            # records the reasons of the agent it picks (AgentSelected), so only the
            # leader's are spelled out (ADR 0024)
            selector = default_router(store, seed=self.config.seed, explained=1)
        self.selector = selector
        self.sessions = SessionService(store, self.registry)
        self.patterns: dict[PatternName, PatternRunner] = dict(patterns or {})
        self._agents_cache = {}
        self._fleets = {}
        self._fleet_loads = {}
        self._breaker_cursor = 0
        self._breaker_synced_at = float("-inf")
        self._breaker_sync = None
        self.autoscaler = Autoscaler(PoolService(store), self.config.worker_id)

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
        execution = SessionExecution(self, session, history, state)
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
        except StepError as exc:
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
            # no semaphore: the loop below never claims more than ``concurrency`` minus the
            # sessions running or queued, so a slot is always free here
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
        switching = switch_interval(config.switch_interval_s)
        switching.__enter__()
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
            switching.__exit__(None, None, None)
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
