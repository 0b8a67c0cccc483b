"""A tenant's history reads (learn, breakers) cost what its own history costs: they start
from its rows and reach the events through an index, never by scanning the log."""

from __future__ import annotations

import asyncio
import dataclasses

from fastapi.testclient import TestClient

from nofx.api import history
from nofx.api.app import create_app
from nofx.api.limits import ApiLimits
from nofx.data_contract import StreamType
from nofx.domain import AgentSpec, NewEvent, SessionRequest, Task
from nofx.registry import AgentRegistry
from nofx.runtime import Runtime, RuntimeConfig
from nofx.store import EventStore
from tests.conftest import fleet_specs


def query_plan(store: EventStore, statement) -> str:
    """SQLite's plan for a statement, one line per step."""
    compiled = statement.compile(store.engine, compile_kwargs={"literal_binds": True})
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").all()
    return "\n".join(str(row[-1]) for row in rows)


def test_neither_read_scans_the_event_log(store: EventStore) -> None:
    for statement in (
        history.step_outcomes_query("t1", 0, 100),
        history.breaker_events_query("t1"),
    ):
        plan = query_plan(store, statement)
        events_steps = [line for line in plan.splitlines() if " events" in line]
        assert events_steps, plan
        # each lookup is one stream's rows by its key: not the stream-type index (every
        # tenant's sessions) nor a range of positions (the log after a point)
        assert all("(stream_id=?)" in line for line in events_steps), plan


def run_sessions(store: EventStore, tenant: str, n: int, seed: int) -> None:
    registry = AgentRegistry(store)
    for spec in fleet_specs(2):
        registry.register(spec.model_copy(update={"tenant_id": tenant}))
    runtime = Runtime(store, registry, config=RuntimeConfig(time_scale=0.0, seed=seed))
    for i in range(n):
        runtime.sessions.submit(
            SessionRequest(
                task=Task(prompt=f"{tenant}{i}", capability="code.generate"), tenant_id=tenant
            )
        )
    asyncio.run(runtime.run_pending())


def test_learning_reads_only_the_tenants_most_recent_sessions(store: EventStore) -> None:
    run_sessions(store, "alpha", 12, seed=1)
    run_sessions(store, "beta", 5, seed=2)
    everything, read = history.step_outcomes(store, "alpha", after_position=0, max_sessions=100)
    assert read == 12 and len(everything) >= 12
    recent, read = history.step_outcomes(store, "alpha", after_position=0, max_sessions=4)
    assert read == 4 and 4 <= len(recent) < len(everything)
    beta, _ = history.step_outcomes(store, "beta", after_position=0, max_sessions=100)
    assert 5 <= len(beta) < len(everything)
    limits = dataclasses.replace(ApiLimits(), max_learn_sessions=4)
    app = create_app(store=store, auth_required=False, limits=limits)
    with TestClient(app) as client:
        learned = client.post("/api/v1/workflows/learn", headers={"X-Tenant-ID": "alpha"}).json()
    assert learned["sessions"] == 4 and learned["sessions_capped"] is True
    assert learned["outcomes"] == len(recent)


def test_breakers_show_only_the_tenants_agents(store: EventStore) -> None:
    registry = AgentRegistry(store)
    mine = registry.register(
        AgentSpec(name="mine", tenant_id="alpha", capabilities=[{"name": "x.y"}])
    )
    theirs = registry.register(
        AgentSpec(name="theirs", tenant_id="beta", capabilities=[{"name": "x.y"}])
    )
    for agent, tenant in ((mine, "alpha"), (theirs, "beta")):
        store.append(
            f"breaker-{agent.agent_id}",
            StreamType.BREAKER,
            tenant,
            [
                NewEvent(
                    type="BreakerTransitioned",
                    payload={
                        "agent_id": agent.agent_id,
                        "from": "closed",
                        "to": "open",
                        "reason": "5 failures",
                        "worker_id": "w",
                    },
                )
            ],
        )
    with TestClient(create_app(store=store, auth_required=False)) as client:
        shown = client.get("/api/v1/orchestration/breakers", headers={"X-Tenant-ID": "alpha"})
    assert [b["agent_id"] for b in shown.json()] == [mine.agent_id]
    assert shown.json()[0]["state"] == "open"
