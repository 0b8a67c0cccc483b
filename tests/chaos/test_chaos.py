"""Chaos: agent errors, timeouts, an agent going dark, a slow agent, and a runtime killed with
SIGKILL. Whatever happens, nothing is lost or doubled and the projections match the log."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter, defaultdict

import pytest

from nofx.agents import ProviderSet
from nofx.domain import AgentSpec, NewEvent
from nofx.registry import AgentRegistry
from nofx.runtime import Runtime, RuntimeConfig
from nofx.sessions import SessionService
from nofx.settings import Settings
from nofx.store import EventStore
from nofx.store.schema import events as events_table
from tests.chaos.invariants import assert_invariants, read_streams
from tests.chaos.ledger import Ledger, LedgeredProviders, LedgeredStore, compare, read_ledger
from tests.chaos.scenario import (
    calls_in_flight,
    event_count,
    faulty,
    kill_when,
    register_fleet,
    run_until_terminal,
    running_count,
    start_runtime_process,
    submit_burst,
    terminal_count,
)
from tests.conftest import fleet_specs


def step_events(store: EventStore, event_type: str) -> list:
    return [e for events in read_streams(store).values() for e in events if e.type == event_type]


async def test_ten_percent_agent_errors_lose_nothing_and_rarely_fail_a_session(
    store: EventStore, registry: AgentRegistry
) -> None:
    register_fleet(registry, lambda i: faulty(0.10))
    runtime = Runtime(store, registry, config=RuntimeConfig(time_scale=0.0, seed=5))
    submit_burst(runtime.sessions, 200)
    summary = await runtime.run_pending()
    assert len(summary.sessions) == 200 and not summary.interrupted

    result = assert_invariants(store)
    assert result.terminal_sessions == 200
    assert result.session_failure_rate <= 0.02
    started = step_events(store, "StepStarted")
    failed = step_events(store, "StepFailed")
    # the faults were really injected, at about the configured rate
    assert 0.04 <= len(failed) / len(started) <= 0.18
    # and the runtime got around them by moving the work to an agent that had not failed
    rerouted = 0
    for events in read_streams(store).values():
        faulted = {
            e.payload["agent_id"]
            for e in events
            if e.type == "StepFailed" and e.payload["error_class"] == "agent_fault"
        }
        done = [e for e in events if e.type == "StepCompleted"]
        if faulted and done:
            assert done[0].payload["agent_id"] not in faulted
            rerouted += 1
    assert rerouted >= 10


async def test_timeouts_and_an_agent_going_dark_move_work_to_the_others(
    store: EventStore, registry: AgentRegistry
) -> None:
    def tweak(index: int) -> dict:
        config = faulty(0.03)
        if index == 4:  # the best-ranked agent answers 5 calls, then never again
            # (5, not more: with the loop free, 120 sessions choose at once and the router
            # spreads them by load, so the best agent sees about a dozen calls in all)
            config["dark_after_calls"] = 5
        if index == 3:  # the runner-up sometimes takes longer than the call timeout
            config.update(latency_median_ms=1200, latency_sigma=0.8)
        return config

    agents = register_fleet(registry, tweak)
    dark, flaky = agents[4], agents[3]
    runtime = Runtime(store, registry, config=RuntimeConfig(time_scale=0.0, call_timeout_s=3.0))
    submit_burst(runtime.sessions, 120)
    await runtime.run_pending()

    result = assert_invariants(store)
    assert result.session_failure_rate <= 0.05  # ~1% expected; without rerouting it was ~85%
    completed_by = Counter(e.payload["agent_id"] for e in step_events(store, "StepCompleted"))
    timeouts = Counter(
        e.payload["agent_id"]
        for e in step_events(store, "StepFailed")
        if e.payload["error.type"] == "timeout"
    )
    assert completed_by[dark.agent_id] <= 5
    # the router's breaker cuts the dark agent off instead of letting every session pay for
    # it (with no breaker it timed out on over 100 calls); the calls the 120 sessions had
    # already sent it when it went dark still time out: 31-52 over 20 runs, hence 70
    assert 3 <= timeouts[dark.agent_id] <= 70
    assert timeouts[flaky.agent_id] > 0
    assert sum(completed_by.values()) - completed_by[dark.agent_id] >= 100
    # a timed-out call is not waited on again: the next attempt goes to another agent
    for events in read_streams(store).values():
        outcomes = [e for e in events if e.type in ("StepFailed", "StepCompleted")]
        for before, after in itertools.pairwise(outcomes):
            if before.payload.get("error.type") == "timeout":
                assert after.payload["agent_id"] != before.payload["agent_id"]


@pytest.mark.usefixtures("local_agents_policy")
async def test_a_slow_agent_under_a_short_call_timeout_is_killed_and_bypassed(
    store: EventStore, registry: AgentRegistry
) -> None:
    slow = registry.register(
        AgentSpec(
            name="slowpoke",
            capabilities=[{"name": "code.generate", "proficiency": 5}],
            provider={"kind": "command", "config": {"argv": ["sleep", "30"]}},
        )
    )
    register_fleet(registry, lambda i: {**faulty(0.0), "latency_median_ms": 40})
    config = RuntimeConfig(time_scale=1.0, call_timeout_s=0.3, seed=3)
    runtime = Runtime(store, registry, config=config)
    submit_burst(runtime.sessions, 12)
    started = time.monotonic()
    summary = await runtime.run_pending()
    elapsed = time.monotonic() - started

    result = assert_invariants(store)
    assert summary.succeeded == 12 and result.succeeded == 12
    assert elapsed < 8, f"sessions waited on the slow agent ({elapsed:.1f}s)"
    failures = step_events(store, "StepFailed")
    assert {e.payload["agent_id"] for e in failures} == {slow.agent_id}
    assert {e.payload["error.type"] for e in failures} == {"timeout"}
    assert all(e.payload["latency_ms"] < 3000 for e in failures)
    assert slow.agent_id not in {e.payload["agent_id"] for e in step_events(store, "StepCompleted")}


async def test_a_runtime_killed_with_sigkill_is_resumed_without_loss_or_rerun(
    store: EventStore, registry: AgentRegistry, settings: Settings
) -> None:
    total = 60
    register_fleet(registry, lambda i: faulty(0.10))
    runtime = Runtime(
        store,
        registry,
        config=RuntimeConfig(worker_id="rescuer", lease_s=1.0, time_scale=0.0, seed=9),
    )
    submit_burst(runtime.sessions, total)

    process = start_runtime_process(settings.database_url, lease_s=1.0, time_scale=0.05)
    # a quarter done, and a session caught mid-step: a runtime runs its claimed batch to the
    # end before claiming more, so between batches nothing is in flight to lose
    kill_when(
        process,
        lambda: event_count(store, "StepCompleted") >= total // 4 and running_count(store) > 0,
    )
    assert process.returncode == -9

    # right after the kill the store is consistent, and the kill really was mid-run
    assert_invariants(store, require_terminal=False)
    ended_before = terminal_count(store)
    assert 0 < ended_before < total
    streams = read_streams(store)
    kill_position = max(e.position for events in streams.values() for e in events)
    completed_before = {
        (e.stream_id, e.payload["step_id"])
        for events in streams.values()
        for e in events
        if e.type == "StepCompleted"
    }
    starts_before = Counter(
        (e.stream_id, e.payload["step_id"])
        for events in streams.values()
        for e in events
        if e.type == "StepStarted"
    )
    in_flight = [
        events
        for events in streams.values()
        if events[0].stream_type == "session"
        and any(e.type == "SessionStarted" for e in events)
        and events[-1].type not in ("SessionCompleted", "SessionFailed")
    ]
    assert in_flight, "the kill left no session half-done; nothing was tested"

    await run_until_terminal(runtime, total, deadline_s=30)

    result = assert_invariants(store)
    assert result.terminal_sessions == total and result.duplicate_completions == 0
    assert result.session_failure_rate <= 0.05
    streams = read_streams(store)
    starts_after = Counter(
        (e.stream_id, e.payload["step_id"])
        for events in streams.values()
        for e in events
        if e.type == "StepStarted"
    )
    for step in completed_before:
        assert starts_after[step] == starts_before[step], f"{step} ran again after the kill"
    resumed = defaultdict(list)
    for stream_id, events in streams.items():
        for e in events:
            if e.type == "SessionResumed":
                resumed[stream_id].append(e)
    for events in in_flight:
        takeovers = resumed[events[0].stream_id]
        assert takeovers and takeovers[0].payload["previous_worker_id"] == "doomed"
        assert takeovers[0].payload["worker_id"] == "rescuer"
        assert takeovers[0].position > kill_position
    abandoned = step_events(store, "StepAbandoned")
    assert all(e.payload["error.type"] == "worker_lost" for e in abandoned)


async def test_two_runtimes_sharing_a_store_never_run_a_session_twice(
    store: EventStore, registry: AgentRegistry
) -> None:
    """A runtime claims a batch bigger than its concurrency; a second runtime shares the store."""
    total = 40
    register_fleet(registry, lambda i: {**faulty(0.10), "latency_median_ms": 200})
    first, second = (
        Runtime(
            store,
            registry,
            config=RuntimeConfig(worker_id=name, lease_s=0.6, time_scale=0.3, concurrency=4),
        )
        for name in ("first", "second")
    )
    submit_burst(first.sessions, total)
    await asyncio.gather(first.run_pending(), run_until_terminal(second, total, deadline_s=60))
    assert_invariants(store)
    starts = Counter((e.stream_id, e.payload["attempt"]) for e in step_events(store, "StepStarted"))
    workers = Counter(
        e.stream_id
        for e in step_events(store, "SessionStarted") + step_events(store, "SessionResumed")
    )
    assert max(workers.values()) == 1, "a live runtime's session was taken over by another"
    assert max(starts.values()) == 1


def dark_from_the_start(index: int) -> dict:
    """Agent 4, the most proficient, never answers; the others always do."""
    config = faulty(0.0)
    if index == 4:
        config["dark_after_calls"] = 0
    return config


def register_with(registry: AgentRegistry, index: int) -> str:
    """Register the fleet's agent ``index`` with the ``dark_from_the_start`` tweak."""
    spec = fleet_specs(6)[index]
    config = {**spec.provider.config, **dark_from_the_start(index)}
    provider = spec.provider.model_copy(update={"config": config})
    return registry.register(spec.model_copy(update={"provider": provider})).agent_id


async def test_breaker_transitions_are_events_and_visible_through_the_api(
    store: EventStore, registry: AgentRegistry
) -> None:
    from fastapi.testclient import TestClient

    from nofx.api.app import create_app

    # only the dark agent qualifies, so its breaker must open whatever the sampling does
    dark = register_with(registry, 4)
    runtime = Runtime(store, registry, config=RuntimeConfig(time_scale=0.0, call_timeout_s=3.0))
    submit_burst(runtime.sessions, 8)
    await runtime.run_pending()
    transitions = [e for e in store.read_all(limit=100_000, stream_type="breaker")]
    assert any(e.payload["agent_id"] == dark and e.payload["to"] == "open" for e in transitions)
    with TestClient(create_app(store=store, auth_required=False)) as client:
        states = {b["agent_id"]: b for b in client.get("/api/v1/orchestration/breakers").json()}
    assert states[dark]["state"] in ("open", "half_open")
    assert "in a row" in states[dark]["reason"] or "rate" in states[dark]["reason"]


async def test_an_agent_cut_off_by_one_worker_is_cut_off_for_all(
    store: EventStore, registry: AgentRegistry
) -> None:
    # Phase one is deterministic: the dark agent is the only qualified one, so every session
    # calls it and its breaker must open (sampling over a full fleet may call it too rarely).
    dark = register_with(registry, 4)
    first = Runtime(
        store, registry, config=RuntimeConfig(worker_id="first", time_scale=0.0, call_timeout_s=1.0)
    )
    submit_burst(first.sessions, 8)
    await first.run_pending()
    assert any(
        e.payload["agent_id"] == dark and e.payload["to"] == "open"
        for e in store.read_all(limit=10_000, stream_type="breaker")
    )
    # the healthy agents join; a second worker with a fresh router never calls the dark agent,
    # although it is the most proficient: it adopts the breaker the first worker opened
    for index in (0, 1, 2, 3, 5):
        register_with(registry, index)
    second = Runtime(
        store,
        registry,
        config=RuntimeConfig(worker_id="second", time_scale=0.0, call_timeout_s=1.0),
    )
    later = submit_burst(second.sessions, 30)
    await second.run_pending()
    called = [
        e.payload["agent_id"]
        for sid in later
        for e in second.sessions.events(sid)
        if e.type == "StepStarted"
    ]
    assert called and dark not in called


async def test_the_store_matches_an_external_ledger_after_a_sigkill_mid_session(
    store: EventStore, registry: AgentRegistry, settings: Settings, tmp_path
) -> None:
    """Every write the doomed runtime was told is durable, and every agent call it really
    made, is checked against the store after the kill and the recovery."""
    total = 60
    ledger_path = tmp_path / "ledger.jsonl"
    register_fleet(registry, lambda i: faulty(0.05))
    submit_burst(SessionService(store, registry), total)
    process = start_runtime_process(
        settings.database_url, lease_s=1.0, time_scale=0.05, concurrency=8, ledger=ledger_path
    )
    kill_when(
        process,
        lambda: (
            event_count(store, "StepCompleted") >= total // 4
            and calls_in_flight(store, ledger_path, "doomed") > 0
        ),
    )
    assert process.returncode == -9
    in_flight_at_kill = calls_in_flight(store, ledger_path, "doomed")
    assert in_flight_at_kill > 0, "the kill landed between calls; nothing was tested"
    assert 0 < terminal_count(store) < total

    rescuer_store = LedgeredStore(settings.database_url, Ledger(ledger_path, source="rescuer"))
    rescuer = Runtime(
        rescuer_store,
        providers=LedgeredProviders(
            ProviderSet.default(seed=9, time_scale=0.0), Ledger(ledger_path, source="rescuer")
        ),
        config=RuntimeConfig(worker_id="rescuer", lease_s=1.0, time_scale=0.0, seed=9),
    )
    await run_until_terminal(rescuer, total, deadline_s=60)
    rescuer_store.dispose()

    assert_invariants(store)
    check = compare(ledger_path, store)
    assert check.acknowledged_events > 0 and check.calls_executed >= total
    assert check.ledger_mismatches == 0, check.summary()
    # each call cut off by the kill was made again, and is counted as such; an attempt the
    # kill caught after its StepStarted was durable but before the agent was called is
    # abandoned too, yet repeats no call, so only abandoned attempts the ledger saw count
    called = {e["call_id"] for e in read_ledger(ledger_path) if e["kind"] == "call"}
    abandoned = step_events(store, "StepAbandoned")
    abandoned_after_a_call = [
        e
        for e in abandoned
        if f"{e.payload['session_id']}/{e.payload['step_id']}/{e.payload['attempt']}" in called
    ]
    assert check.repeated_agent_calls == len(abandoned_after_a_call) >= 1
    assert check.calls_executed_twice == 0


def test_the_ledger_check_fails_when_the_store_lost_an_acknowledged_write(
    store: EventStore, tmp_path
) -> None:
    ledger_path = tmp_path / "ledger.jsonl"
    ledgered = LedgeredStore(store.url, Ledger(ledger_path, source="client"))
    for i in range(5):
        ledgered.append(f"s{i}", "t", "default", [NewEvent(type="E", idempotency_key=f"k{i}")])
    Ledger(ledger_path, source="agent").record("call", call_id="ses_x/solo/1", agent_id="a")
    ledgered.dispose()
    assert compare(ledger_path, store).calls_unknown_to_store == 1
    with store.engine.begin() as conn:  # a store that "lost" one acknowledged event
        conn.execute(events_table.delete().where(events_table.c.idempotency_key == "k3"))
    check = compare(ledger_path, store)
    assert check.missing_acknowledged == 1 and check.ledger_mismatches == 2
