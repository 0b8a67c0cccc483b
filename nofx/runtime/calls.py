"""Choosing and calling agents: candidates from a per-tenant cache, the selector's ranking,
circuit breakers shared through the store, one provider call per attempt with its events."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

from nofx.agents import AgentCall, AgentCallError, ErrorClass, ProviderSet
from nofx.data_contract import StreamType
from nofx.domain import Agent, Event, NewEvent
from nofx.errors import NoEligibleAgentError
from nofx.execution import Execution, StepError, StepResult
from nofx.failures import classify_error
from nofx.pools import Autoscaler
from nofx.registry import AgentRegistry
from nofx.routing.breaker import BreakerState
from nofx.routing.selection import Outcome, SelectionRequest, Selector
from nofx.runtime.config import RuntimeConfig
from nofx.store import EventStore
from nofx.store.writer import Append


class AgentCalls:
    """The agent-calling half of the runtime (mixed into ``Engine``)."""

    store: EventStore
    registry: AgentRegistry
    config: RuntimeConfig
    providers: ProviderSet
    selector: Selector
    autoscaler: Autoscaler
    _agents_cache: dict[tuple[str, str], list[Agent]]
    _fleets: dict[str, list[Agent]]
    _fleet_loads: dict[str, asyncio.Future[None]]
    _breaker_cursor: int
    _breaker_synced_at: float
    _breaker_sync: asyncio.Future[None] | None

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
                stream_type=StreamType.BREAKER,
            )
            self._adopt(events)
        finally:
            self._breaker_synced_at = time.monotonic()
            self._breaker_sync = None

    def choose(
        self, request: SelectionRequest, execution: Execution, step_id: str, attempt: int
    ) -> Agent:
        self.adopt_breaker_transitions()
        candidates = self.candidates(request.tenant_id, request.capability)
        ranked = self.selector.rank(request, candidates)
        if not ranked and request.budget_usd is not None:
            unbounded = replace(request, budget_usd=None)
            if self.selector.rank(unbounded, candidates):
                raise StepError(
                    step_id,
                    "budget_exhausted",
                    f"every agent for {request.capability!r} costs more than the "
                    f"${request.budget_usd:.4f} left in the budget",
                )
        if not ranked and (reopens := self.recovery_in_s(request)) is not None:
            raise StepError(
                step_id,
                "no_eligible_agent",
                f"every agent for {request.capability!r} is cut off by its circuit breaker "
                f"(next probe in {reopens:.1f}s); set wait_for_recovery_s on the session "
                "to wait for it instead of failing",
            )
        if not ranked:
            raise StepError(
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
        execution: Execution,
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
                return result_from_payload(completed, replayed=False)
            written = await execution.write("StepCompleted", completed, key=key)
            return result_from_event(written[0], replayed=False)
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
                after_position=self._breaker_cursor, limit=10_000, stream_type=StreamType.BREAKER
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
                    StreamType.BREAKER,
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


def result_from_event(event: Event, *, replayed: bool) -> StepResult:
    return result_from_payload(event.payload, replayed=replayed)


def result_from_payload(p: dict[str, Any], *, replayed: bool) -> StepResult:
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
