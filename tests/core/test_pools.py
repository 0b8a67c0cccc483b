"""Agent pools in a running runtime: calls wait for a slot, the pool scales on its queue,
every decision is an event in the store, and a session can wait for a broken agent to heal."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from nofx.agents import AgentResult, ProviderSet, TransientAgentError
from nofx.domain import AgentSpec, ProviderKind, SessionRequest, SessionStatus, Task, utcnow
from nofx.errors import ConcurrencyError, NotFoundError
from nofx.pools import PoolGate, PoolService
from nofx.registry import AgentRegistry
from nofx.routing.autoscale import PolicyError, PoolSignal, ScalingDecision, ScalingPolicy
from nofx.routing.breaker import BreakerPolicy
from nofx.routing.router import SmartRouter
from nofx.runtime import Runtime, RuntimeConfig
from nofx.store import EventStore

EAGER = ScalingPolicy(
    min_replicas=1,
    max_replicas=6,
    target_utilisation=0.5,
    scale_up_cooldown_s=0,
    scale_down_cooldown_s=0,
)

# these tests run local python agents (through fake providers): the operator allows them
pytestmark = pytest.mark.usefixtures("local_agents_policy")


class SlowFunction:
    """A python-kind provider: every call takes ``seconds`` and counts how many overlap."""

    def __init__(self, seconds: float = 0.05, failures: int = 0) -> None:
        self.seconds = seconds
        self.failures_left = failures
        self.running = 0
        self.peak = 0
        self.calls = 0

    async def invoke(self, agent, call):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.failures_left > 0:
            self.failures_left -= 1
            raise TransientAgentError("upstream 503", error_type="server_error")
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.running -= 1
        return AgentResult(
            output="ok", input_tokens=10, output_tokens=10, cost_usd=0.001, latency_ms=50.0
        )


def one_agent(registry: AgentRegistry, max_concurrency: int = 2):  # type: ignore[no-untyped-def]
    return registry.register(
        AgentSpec(
            name="pooled",
            capabilities=[{"name": "code.generate", "proficiency": 4}],
            provider={
                "kind": "python",
                "config": {"callable": "tests.agents.agent_functions:shout"},
            },
            max_concurrency=max_concurrency,
        )
    )


def burst(runtime: Runtime, n: int, **kw: object) -> list[str]:
    return [
        runtime.sessions.submit(
            SessionRequest(task=Task(prompt=f"task {i}", capability="code.generate"), **kw)  # type: ignore[arg-type]
        ).session_id
        for i in range(n)
    ]


def test_configuring_a_pool_is_an_event_and_a_row(store: EventStore, registry) -> None:
    agent = one_agent(registry)
    pools = PoolService(store)
    with pytest.raises(NotFoundError, match="PUT /api/v1/orchestration/pools"):
        pools.get(agent.agent_id)
    pool = pools.configure(agent, ScalingPolicy(min_replicas=2, max_replicas=4))
    assert pool.replicas == 2  # clamped up into the policy's bounds
    pool = pools.configure(agent, ScalingPolicy(min_replicas=1, max_replicas=3), replicas=9)
    assert (pool.replicas, pool.version) == (3, 2)
    assert [e.type for e in pools.decisions(agent.agent_id)] == ["PoolConfigured"] * 2
    assert [p.agent_id for p in pools.list(tenant_id="default")] == [agent.agent_id]
    with pytest.raises(PolicyError):
        ScalingPolicy(min_replicas=3, max_replicas=1)


def test_a_decision_made_on_a_stale_pool_is_refused(store: EventStore, registry) -> None:
    agent = one_agent(registry)
    pools = PoolService(store)
    seen = pools.configure(agent, EAGER)
    signal = PoolSignal(1, 2, 2, 6, now=0.0)
    pools.scale(seen, ScalingDecision(1, 4, "worker a", 4.0), signal, "a")
    with pytest.raises(ConcurrencyError):
        pools.scale(seen, ScalingDecision(1, 5, "worker b", 4.0), signal, "b")
    assert pools.get(agent.agent_id).replicas == 4


async def test_a_gate_holds_calls_beyond_its_capacity_until_resized() -> None:
    gate = PoolGate(capacity=1)
    entered: list[int] = []

    async def call(i: int) -> None:
        async with gate.slot():
            entered.append(i)
            await asyncio.sleep(0.05)

    tasks = [asyncio.create_task(call(i)) for i in range(3)]
    await asyncio.sleep(0.01)
    assert (gate.in_flight, gate.queued, len(entered)) == (1, 2, 1)
    await gate.resize(3)
    await asyncio.sleep(0.01)
    assert len(entered) == 3
    await asyncio.gather(*tasks)
    assert (gate.in_flight, gate.queued) == (0, 0)


async def test_a_burst_that_drained_between_rounds_still_counts_as_demand() -> None:
    gate = PoolGate(capacity=2)

    async def call() -> None:
        async with gate.slot():
            await asyncio.sleep(0.01)

    await asyncio.gather(*(call() for _ in range(5)))
    assert (gate.in_flight, gate.queued) == (0, 0)  # an instant sample sees nothing
    assert gate.take_peaks() == (2, 3)  # the round after sees the burst: 2 ran, 3 waited
    assert gate.take_peaks() == (0, 0)  # and only once


async def test_a_burst_scales_the_pool_up_and_the_idle_pool_back_down(
    store: EventStore, registry
) -> None:
    agent = one_agent(registry, max_concurrency=2)
    provider = SlowFunction(seconds=0.05)
    runtime = Runtime(
        store,
        registry,
        providers=ProviderSet({ProviderKind.PYTHON: provider}),
        config=RuntimeConfig(time_scale=0.0, autoscale_interval_s=0.02),
    )
    runtime.autoscaler.refresh_s = 0.0
    PoolService(store).configure(agent, EAGER)
    ids = burst(runtime, 60)
    await runtime.run_pending()

    assert all(runtime.sessions.get(i).status is SessionStatus.SUCCEEDED for i in ids)
    history = PoolService(store).decisions(agent.agent_id)
    ups = [e.payload for e in history if e.type == "PoolScaled" and e.payload["direction"] == "up"]
    assert ups, "a queue of 60 calls on one replica of 2 should have scaled the pool"
    assert max(p["after"] for p in ups) <= EAGER.max_replicas
    assert all(p["queued"] > 0 or p["in_flight"] > 0 for p in ups)
    # the pool's capacity was a real limit: never more calls at once than replicas x 2
    assert 2 < provider.peak <= EAGER.max_replicas * agent.max_concurrency

    # the first round after the burst still sees its peak (held as demand, one round)
    later = utcnow() + timedelta(minutes=5)
    await runtime.autoscale_once(later)
    # idle now: the next rounds shed replicas, half at a time, down to the minimum
    later += timedelta(minutes=5)
    while (decisions := await runtime.autoscale_once(later)) != []:
        assert decisions[0].direction == "down"
        later += timedelta(minutes=5)
    assert PoolService(store).get(agent.agent_id).replicas == EAGER.min_replicas


async def test_agents_without_a_pool_are_not_capped(store: EventStore, registry) -> None:
    one_agent(registry, max_concurrency=1)
    provider = SlowFunction(seconds=0.05)
    runtime = Runtime(
        store,
        registry,
        providers=ProviderSet({ProviderKind.PYTHON: provider}),
        config=RuntimeConfig(time_scale=0.0),
    )
    burst(runtime, 10)
    await runtime.run_pending()
    assert provider.peak == 10
    assert await runtime.autoscale_once() == []


async def test_a_session_may_wait_for_a_broken_agent_to_recover(
    store: EventStore, registry
) -> None:
    one_agent(registry)
    provider = SlowFunction(seconds=0.0, failures=5)  # five 503s open the breaker, then fine
    router = SmartRouter(breaker_policy=BreakerPolicy(consecutive_failures=5, cooldown_s=0.3))

    def runtime_with(wait_s: float | None) -> tuple[Runtime, str]:
        runtime = Runtime(
            store,
            registry,
            providers=ProviderSet({ProviderKind.PYTHON: provider}),
            selector=router,
            config=RuntimeConfig(time_scale=0.0),
        )
        (sid,) = burst(runtime, 1, max_attempts=10, wait_for_recovery_s=wait_s)
        return runtime, sid

    # without waiting: the breaker opens after 5 failures and the step has nowhere to go
    impatient, first = runtime_with(None)
    await impatient.run_pending()
    failed = impatient.sessions.get(first)
    assert failed.status is SessionStatus.FAILED and failed.error_type == "no_eligible_agent"

    # with a wait allowance the next session sits out the cooldown and is served by the probe
    patient, second = runtime_with(5.0)
    await patient.run_pending()
    events = patient.sessions.events(second)
    assert patient.sessions.get(second).status is SessionStatus.SUCCEEDED
    waits = [e.payload for e in events if e.type == "WaitingForRecovery"]
    assert waits and 0 < waits[0]["wait_s"] <= 0.3


async def test_a_wait_too_short_for_the_cooldown_fails_fast_and_says_why(
    store: EventStore, registry
) -> None:
    one_agent(registry)
    provider = SlowFunction(seconds=0.0, failures=100)
    router = SmartRouter(breaker_policy=BreakerPolicy(consecutive_failures=3, cooldown_s=60))
    runtime = Runtime(
        store,
        registry,
        providers=ProviderSet({ProviderKind.PYTHON: provider}),
        selector=router,
        config=RuntimeConfig(time_scale=0.0),
    )
    (sid,) = burst(runtime, 1, max_attempts=10, wait_for_recovery_s=1.0)
    await runtime.run_pending()
    session = runtime.sessions.get(sid)
    assert session.status is SessionStatus.FAILED
    failed = next(e for e in runtime.sessions.events(sid) if e.type == "SessionFailed")
    assert "recovers within the 1s" in failed.payload["message"]
