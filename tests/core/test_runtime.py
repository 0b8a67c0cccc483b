"""The runtime: solo sessions end to end, retries, reroutes, durable resume, leases, replay."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, select, update

from nofx.domain import AgentSpec, PatternName, SessionRequest, SessionStatus, Task, utcnow
from nofx.errors import ConflictError, NotFoundError, UnknownCapabilityError
from nofx.registry import AgentRegistry
from nofx.runtime import Runtime, RuntimeConfig
from nofx.sessions import replay
from nofx.store import EventStore
from nofx.store.schema import sessions as sessions_table


def request(capability: str = "code.generate", **kw) -> SessionRequest:
    return SessionRequest(
        task=Task(prompt="write a parser", capability=capability, **kw.pop("task", {})), **kw
    )


def projected_row(store: EventStore, session_id: str) -> dict:
    with store.engine.connect() as conn:
        row = conn.execute(
            select(sessions_table).where(sessions_table.c.session_id == session_id)
        ).first()
    return dict(row._mapping)


async def test_solo_session_runs_end_to_end_and_records_every_step(runtime: Runtime, fleet) -> None:
    session = runtime.sessions.submit(request())
    assert session.status is SessionStatus.REQUESTED
    done = await runtime.run_session(session.session_id)
    assert done.status in (SessionStatus.SUCCEEDED, SessionStatus.FAILED)
    types = [e.type for e in runtime.sessions.events(session.session_id)]
    assert types[0] == "SessionRequested" and types[1] == "SessionStarted"
    assert types[-1] in ("SessionCompleted", "SessionFailed")
    assert types.count("StepStarted") == done.attempts
    completed = [
        e for e in runtime.sessions.events(session.session_id) if e.type == "StepCompleted"
    ]
    if done.status is SessionStatus.SUCCEEDED:
        assert completed[0].payload["simulated"] is True
        assert completed[0].payload["gen_ai.usage.input_tokens"] == 800
        assert done.cost_usd > 0 and done.output


async def test_unknown_capability_is_refused_before_anything_is_written(
    runtime: Runtime, fleet, store
) -> None:
    before = store.count_events()
    with pytest.raises(UnknownCapabilityError):
        runtime.sessions.submit(request("code.generat"))
    assert store.count_events() == before


async def test_transient_errors_retry_and_agent_faults_reroute(
    store: EventStore, registry: AgentRegistry
) -> None:
    flaky = registry.register(
        AgentSpec(
            name="flaky",
            capabilities=[{"name": "code.generate", "proficiency": 5}],
            provider={"config": {"error_rate": 1.0, "rate_limit_rate": 0.0}},
        )
    )
    solid = registry.register(
        AgentSpec(
            name="solid",
            capabilities=[{"name": "code.generate", "proficiency": 2}],
            provider={
                "config": {
                    "skill": {"code.generate": 1.0},
                    "error_rate": 0.0,
                    "rate_limit_rate": 0.0,
                }
            },
        )
    )
    from nofx.routing.selection import ProficiencySelector

    # a deterministic selector, so the flaky expert is tried first
    runtime = Runtime(
        store, registry, selector=ProficiencySelector(), config=RuntimeConfig(time_scale=0.0)
    )
    session = runtime.sessions.submit(request())
    done = await runtime.run_session(session.session_id)
    assert done.status is SessionStatus.SUCCEEDED
    events = runtime.sessions.events(session.session_id)
    failed = [e for e in events if e.type == "StepFailed"]
    assert failed and failed[0].payload["agent_id"] == flaky.agent_id
    assert failed[0].payload["error_class"] == "agent_fault"
    assert done.agent_id == solid.agent_id


async def test_permanent_failure_ends_the_session_with_its_error_type(store, registry) -> None:
    registry.register(
        AgentSpec(
            name="dark",
            capabilities=[{"name": "code.generate"}],
            provider={"config": {"dark_after_calls": 0}},
        )
    )
    runtime = Runtime(store, registry, config=RuntimeConfig(time_scale=0.0))
    session = runtime.sessions.submit(request(max_attempts=2))
    done = await runtime.run_session(session.session_id)
    assert done.status is SessionStatus.FAILED
    assert done.error_type == "timeout"
    # a call that got no answer is the orchestrator's miss: it does not use up the tenant's
    # attempts, it gets RetryPolicy.orchestration_retries (2) more (ADR 0018)
    assert done.attempts == 2 + 2
    ended = runtime.sessions.events(session.session_id)[-1]
    assert (ended.type, ended.payload["failure_class"]) == ("SessionFailed", "orchestration")


async def test_budget_is_respected(runtime: Runtime, fleet) -> None:
    session = runtime.sessions.submit(request(budget_usd=1e-9))
    done = await runtime.run_session(session.session_id)
    assert done.status is SessionStatus.FAILED
    assert done.error_type in ("no_eligible_agent", "budget_exhausted")
    assert done.cost_usd == 0


async def test_resume_does_not_repeat_a_completed_step(runtime: Runtime, fleet, store) -> None:
    session = runtime.sessions.submit(request())
    first = await runtime.run_session(session.session_id)
    # Simulate a crash after the step completed but before the session completed:
    events = runtime.sessions.events(session.session_id)
    terminal = [e for e in events if e.type in ("SessionCompleted", "SessionFailed")]
    assert len(terminal) == 1
    with store.transaction() as tx:
        from nofx.store.schema import events as events_table

        tx.conn.execute(
            events_table.delete().where(events_table.c.position == terminal[0].position)
        )
        tx.conn.execute(
            update(sessions_table)
            .where(sessions_table.c.session_id == session.session_id)
            .values(status="running", version=terminal[0].seq - 1)
        )
    started_before = sum(1 for e in events if e.type == "StepStarted")
    again = await Runtime(
        store, runtime.registry, config=RuntimeConfig(time_scale=0.0)
    ).run_session(session.session_id)
    after = runtime.sessions.events(session.session_id)
    assert sum(1 for e in after if e.type == "StepStarted") == started_before
    assert again.status is first.status
    assert sum(1 for e in after if e.type in ("SessionCompleted", "SessionFailed")) == 1


async def test_resume_after_the_last_allowed_attempt_failed_calls_no_agent_again(
    runtime: Runtime, registry, store
) -> None:
    """The worker wrote the step's last allowed failure and died before the session's end:
    the resumed session fails as the worker had decided, without a call past the policy."""
    registry.register(
        AgentSpec(
            name="always-rate-limited",
            capabilities=[{"name": "code.generate", "proficiency": 3}],
            provider={"kind": "simulated", "config": {"error_rate": 0, "rate_limit_rate": 1.0}},
        )
    )
    session = runtime.sessions.submit(request(max_attempts=3))
    first = await runtime.run_session(session.session_id)
    events = runtime.sessions.events(session.session_id)
    assert first.status is SessionStatus.FAILED
    assert sum(1 for e in events if e.type == "StepStarted") >= 3  # the policy's attempts
    (terminal,) = [e for e in events if e.type == "SessionFailed"]
    with store.transaction() as tx:
        from nofx.store.schema import events as events_table

        tx.conn.execute(events_table.delete().where(events_table.c.position == terminal.position))
        tx.conn.execute(
            update(sessions_table)
            .where(sessions_table.c.session_id == session.session_id)
            .values(status="running", version=terminal.seq - 1)
        )
    again = await Runtime(
        store, runtime.registry, config=RuntimeConfig(time_scale=0.0)
    ).run_session(session.session_id)
    after = runtime.sessions.events(session.session_id)
    assert [e.type for e in after[len(events) - 1 :]] == ["SessionResumed", "SessionFailed"]
    assert (again.status, again.error_type) == (first.status, first.error_type)


async def test_a_step_lost_with_its_worker_is_marked_abandoned_then_retried(
    runtime, fleet, store
) -> None:
    session = runtime.sessions.submit(request())
    execution_events = [
        (
            "SessionStarted",
            {"worker_id": "dead", "pattern": "solo"},
            f"{session.session_id}/started",
        ),
        ("StepStarted", {"step_id": "solo", "attempt": 1, "agent_id": fleet[0].agent_id}, None),
    ]
    from nofx.domain import NewEvent
    from nofx.sessions import append_session_events

    with store.transaction() as tx:
        append_session_events(
            tx,
            session.session_id,
            "default",
            [
                NewEvent(type=t, payload={"session_id": session.session_id, **p}, idempotency_key=k)
                for t, p, k in execution_events
            ],
        )
    done = await runtime.run_session(session.session_id)
    types = [e.type for e in runtime.sessions.events(session.session_id)]
    assert "StepAbandoned" in types
    assert done.status.terminal


async def test_leases_keep_two_runtimes_apart_and_expire(store, registry, fleet) -> None:
    a = Runtime(store, registry, config=RuntimeConfig(worker_id="a", lease_s=30, time_scale=0.0))
    b = Runtime(store, registry, config=RuntimeConfig(worker_id="b", lease_s=30, time_scale=0.0))
    ids = [a.sessions.submit(request()).session_id for _ in range(4)]
    claimed_a = a.claim(2)
    claimed_b = b.claim(10)
    assert len(claimed_a) == 2 and set(claimed_a).isdisjoint(claimed_b)
    assert set(claimed_a) | set(claimed_b) == set(ids)
    with pytest.raises(NotFoundError, match="leased by another runtime"):
        await b.run_session(claimed_a[0])
    # a dies: its leases expire and b takes the sessions over
    with store.transaction() as tx:
        tx.conn.execute(
            update(sessions_table)
            .where(sessions_table.c.lease_owner == "a")
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    assert set(b.claim(10)) == set(claimed_a)


async def test_run_pending_runs_everything_once(runtime: Runtime, fleet, store) -> None:
    ids = [runtime.sessions.submit(request()).session_id for _ in range(30)]
    seen = []
    summary = await runtime.run_pending(on_done=lambda s: seen.append(s.session_id))
    assert sorted(seen) == sorted(ids)
    assert summary.succeeded + summary.failed == 30
    again = await runtime.run_pending()
    assert again.sessions == []
    terminal = Counter(
        e.stream_id
        for e in store.read_all(limit=100_000)
        if e.type in ("SessionCompleted", "SessionFailed")
    )
    assert set(terminal.values()) == {1}
    for sid in ids:
        rebuilt = replay(runtime.sessions.events(sid))
        row = projected_row(store, sid)
        for key in (
            "status",
            "attempts",
            "input_tokens",
            "output_tokens",
            "agent_id",
            "error_type",
        ):
            assert rebuilt[key] == row[key]
        assert rebuilt["cost_usd"] == pytest.approx(row["cost_usd"])


async def test_cancel_wins_over_a_later_completion(runtime: Runtime, fleet) -> None:
    session = runtime.sessions.submit(request())
    cancelled = runtime.sessions.cancel(session.session_id)
    assert cancelled.status is SessionStatus.CANCELLED
    with pytest.raises(ConflictError):
        runtime.sessions.cancel(session.session_id)
    assert (await runtime.run_pending()).sessions == []


async def test_submit_with_idempotency_key_creates_one_session(runtime: Runtime, fleet) -> None:
    a = runtime.sessions.submit(request(idempotency_key="order-42"))
    b = runtime.sessions.submit(request(idempotency_key="order-42"))
    assert a.session_id == b.session_id
    assert len(runtime.sessions.list()) == 1


async def test_unsupported_pattern_fails_clearly(runtime: Runtime, fleet) -> None:
    runtime.patterns.pop(PatternName.SWARM, None)
    session = runtime.sessions.submit(request(pattern="swarm"))
    done = await runtime.run_session(session.session_id)
    assert done.status is SessionStatus.FAILED and done.error_type == "unsupported_pattern"


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    n=st.integers(min_value=1, max_value=6),
    error_rate=st.floats(min_value=0.0, max_value=0.9),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_replay_always_equals_the_live_projection(tmp_path_factory, n, error_rate, seed) -> None:
    store = EventStore(f"sqlite:///{tmp_path_factory.mktemp('rp') / 'e.db'}")
    registry = AgentRegistry(store)
    for i in range(3):
        registry.register(
            AgentSpec(
                name=f"a{i}",
                capabilities=[{"name": "code.generate", "proficiency": 1 + i}],
                pricing={"input_per_1k_tokens": 0.001 * (i + 1)},
                provider={"config": {"error_rate": error_rate}},
            )
        )
    runtime = Runtime(store, registry, config=RuntimeConfig(time_scale=0.0, seed=seed))
    ids = [runtime.sessions.submit(request()).session_id for _ in range(n)]
    asyncio.run(runtime.run_pending())
    for sid in ids:
        rebuilt = replay(runtime.sessions.events(sid))
        row = projected_row(store, sid)
        assert {k: rebuilt[k] for k in ("status", "attempts", "agent_id")} == {
            k: row[k] for k in ("status", "attempts", "agent_id")
        }
    store.dispose()


@pytest.mark.usefixtures("local_agents_policy")
async def test_a_crashing_provider_fails_the_attempt_not_the_runtime(store, registry) -> None:
    registry.register(
        AgentSpec(
            name="buggy",
            capabilities=[{"name": "code.generate"}],
            provider={
                "kind": "python",
                "config": {"callable": "tests.agents.agent_functions:shout"},
            },
        )
    )

    class Exploding:
        async def invoke(self, agent, call):
            raise ZeroDivisionError("bug in a custom provider")

    from nofx.agents import ProviderSet
    from nofx.domain import ProviderKind

    runtime = Runtime(
        store,
        registry,
        providers=ProviderSet({ProviderKind.PYTHON: Exploding()}),
        config=RuntimeConfig(time_scale=0.0),
    )
    session = runtime.sessions.submit(request(max_attempts=2))
    summary = await runtime.run_pending()
    done = runtime.sessions.get(session.session_id)
    assert done.status is SessionStatus.FAILED
    assert summary.interrupted == []
    failed = [e for e in runtime.sessions.events(session.session_id) if e.type == "StepFailed"]
    assert failed[0].payload["error.type"] == "ZeroDivisionError"


async def test_an_interrupted_session_is_released_for_a_later_pass(
    runtime: Runtime, fleet, monkeypatch
) -> None:
    session = runtime.sessions.submit(request())
    original = runtime.execute

    async def broken(session_id: str):
        raise RuntimeError("store went away")

    monkeypatch.setattr(runtime, "execute", broken)
    summary = await runtime.run_pending()
    assert summary.interrupted and summary.interrupted[0][0] == session.session_id
    assert runtime.sessions.get(session.session_id).status is SessionStatus.REQUESTED
    monkeypatch.setattr(runtime, "execute", original)
    again = await runtime.run_pending()
    assert [s.session_id for s in again.sessions] == [session.session_id]


async def test_two_runtimes_racing_on_one_session_complete_it_once(store, registry, fleet) -> None:
    """A lease that ran out while its runtime still worked: both run; the stream decides."""
    a = Runtime(store, registry, config=RuntimeConfig(worker_id="a", time_scale=0.001, seed=1))
    b = Runtime(store, registry, config=RuntimeConfig(worker_id="b", time_scale=0.001, seed=2))
    sids = [a.sessions.submit(request()).session_id for _ in range(8)]
    assert len(a.claim(8)) == 8
    with store.transaction() as tx:  # a's leases lapse while it is still working
        tx.conn.execute(
            update(sessions_table).values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    assert len(b.claim(8)) == 8

    async def run_all(runtime: Runtime) -> list:
        results = []
        for sid in sids:
            try:
                results.append(await runtime.execute(sid))
            except Exception as exc:  # the loser steps aside with a ConcurrencyError
                results.append(exc)
        return results

    await asyncio.gather(run_all(a), run_all(b))
    for sid in sids:
        events = a.sessions.events(sid)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        terminal = [e for e in events if e.type in ("SessionCompleted", "SessionFailed")]
        assert len(terminal) == 1
        rebuilt = replay(events)
        row = projected_row(store, sid)
        for key in ("status", "attempts", "input_tokens", "output_tokens"):
            assert rebuilt[key] == row[key]


async def test_cancelling_a_running_session_makes_the_runtime_step_aside(store, registry) -> None:
    registry.register(
        AgentSpec(
            name="slow",
            capabilities=[{"name": "code.generate"}],
            provider={"config": {"latency_median_ms": 2000, "latency_sigma": 0.01}},
        )
    )
    runtime = Runtime(store, registry, config=RuntimeConfig(time_scale=0.01))
    session = runtime.sessions.submit(request())
    task = asyncio.create_task(runtime.run_pending())
    while not any(e.type == "StepStarted" for e in runtime.sessions.events(session.session_id)):
        await asyncio.sleep(0.005)
    runtime.sessions.cancel(session.session_id)
    summary = await task
    assert runtime.sessions.get(session.session_id).status is SessionStatus.CANCELLED
    assert summary.interrupted and "ConcurrencyError" in summary.interrupted[0][1]
    types = [e.type for e in runtime.sessions.events(session.session_id)]
    assert types.count("SessionCancelled") == 1
    assert "SessionCompleted" not in types


def statements_on_the_loop(store: EventStore) -> list[str]:
    """Record every SQL statement executed on a thread that is running an event loop."""
    seen: list[str] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def _watch(_conn, _cursor, statement, *_args) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        seen.append(statement)

    return seen


@pytest.mark.parametrize("pattern", [PatternName.SOLO, PatternName.PAIR, PatternName.HIERARCHICAL])
async def test_the_runtime_never_touches_the_database_on_its_event_loop(
    store: EventStore, registry: AgentRegistry, pattern: PatternName
) -> None:
    from tests.conftest import fleet_specs

    for spec in fleet_specs(4, ("code.generate", "code.review", "plan.decompose")):
        registry.register(spec)
    runtime = Runtime(store, registry, config=RuntimeConfig(time_scale=0.0, seed=4))
    for _ in range(6):
        await runtime.sessions.submit_async(request(pattern=pattern))
    on_loop = statements_on_the_loop(store)
    summary = await runtime.run_pending()
    assert summary.succeeded + summary.failed == 6 and not summary.interrupted
    assert on_loop == [], f"{len(on_loop)} statements ran on the event loop: {on_loop[:3]}"
    assert store.writer.stats.groups > 0


async def test_an_emitted_fact_is_durable_before_the_next_awaited_write(
    runtime: Runtime, fleet, store: EventStore
) -> None:
    """``emit`` does not wait, but a session's writes keep their order in the log."""
    from nofx.runtime import SessionExecution

    session = runtime.sessions.submit(request())
    assert runtime.claim(1) == [session.session_id]
    execution = SessionExecution(runtime, session, runtime.sessions.events(session.session_id))
    for i in range(5):
        execution.emit("Noted", {"i": i}, key=f"{session.session_id}/noted/{i}")
    written = await execution.write("Checked", {}, key=f"{session.session_id}/checked")
    types = [e.type for e in runtime.sessions.events(session.session_id)]
    assert types == ["SessionRequested", *["Noted"] * 5, "Checked"]
    assert written[0].seq == 7 and execution.history[-1].seq == 7


async def test_a_failed_write_fails_the_rest_of_the_session_chain(
    runtime: Runtime, fleet, store: EventStore
) -> None:
    from nofx.errors import ConcurrencyError
    from nofx.runtime import SessionExecution

    session = runtime.sessions.submit(request())
    execution = SessionExecution(runtime, session, runtime.sessions.events(session.session_id))
    runtime.sessions.cancel(session.session_id)  # the stream moves under the execution
    execution.emit("Noted", {}, key=f"{session.session_id}/noted")
    with pytest.raises(ConcurrencyError):
        await execution.write("Checked", {})
    with pytest.raises(ConcurrencyError):
        await execution.flush()


def test_switch_interval_is_lowered_while_in_use_and_restored_after_the_outermost() -> None:
    import sys

    from nofx.runtime.gil import switch_interval

    before = sys.getswitchinterval()
    with switch_interval(0.0005):
        assert sys.getswitchinterval() == pytest.approx(0.0005)
        with switch_interval(0.002):  # nested: never raised above what is in force
            assert sys.getswitchinterval() == pytest.approx(0.0005)
        assert sys.getswitchinterval() == pytest.approx(0.0005)
    assert sys.getswitchinterval() == pytest.approx(before)
    with switch_interval(None):
        assert sys.getswitchinterval() == pytest.approx(before)


async def test_run_pending_runs_with_the_configured_switch_interval(
    runtime: Runtime, fleet, store: EventStore
) -> None:
    import sys

    seen: list[float] = []
    runtime.config.switch_interval_s = 0.0007
    before = sys.getswitchinterval()
    runtime.sessions.submit(request())
    await runtime.run_pending(on_done=lambda _: seen.append(sys.getswitchinterval()))
    assert seen == [pytest.approx(0.0007)]
    assert sys.getswitchinterval() == pytest.approx(before)


def test_a_trusted_new_event_equals_a_validated_one() -> None:
    from nofx.domain import NewEvent

    payload = {"session_id": "s", "n": 1, "nested": {"a": [1, 2]}}
    trusted = NewEvent.trusted("StepStarted", payload, "s/k")
    checked = NewEvent(type="StepStarted", payload=payload, idempotency_key="s/k")
    assert trusted == checked
    assert trusted.model_dump() == checked.model_dump()
    assert trusted.model_fields_set == checked.model_fields_set
    assert NewEvent.trusted("X", {}).idempotency_key is None


async def test_a_session_runs_without_a_semaphore_and_never_more_than_concurrency_at_once(
    runtime: Runtime, fleet, store: EventStore
) -> None:
    """run_pending claims no more than the free slots, so at most ``concurrency`` sessions
    execute at once (the semaphore it had was never contended)."""
    runtime.config.concurrency = 3
    for _ in range(10):
        runtime.sessions.submit(request())
    running = 0
    peak = 0
    execute = runtime.execute

    async def counted(session_id: str, history=None):  # type: ignore[no-untyped-def]
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            return await execute(session_id, history)
        finally:
            running -= 1

    runtime.execute = counted  # type: ignore[method-assign]
    summary = await runtime.run_pending()
    assert len(summary.sessions) == 10 and not summary.interrupted
    assert peak == 3
