"""The dbt models on edge cases the demo data rarely shows, built twice (incremental).

Agent updates and removals, a cancelled session, a step abandoned by a lost worker, an event
type no mart models and an event from a stream type the contract does not know yet (a
warning, not a failure), all written through the real core; then the source's freshness.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from dagster_project.lib.dbt import DBT_PROJECT_DIR
from dagster_project.lib.raw_events import copy_new_events
from nofx.data_contract import StreamType
from nofx.domain import NewEvent, SessionRequest, Task
from nofx.registry import AgentRegistry
from nofx.runtime import Runtime, RuntimeConfig
from nofx.sessions import append_session_events
from nofx.settings import Settings
from nofx.store import EventStore
from tests.conftest import fleet_specs


def dbt_build(settings: Settings, target: Path, command: str = "build") -> str:
    dbt = Path(sys.executable).parent / "dbt"
    proc = subprocess.run(
        [
            str(dbt),
            *command.split(),
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
            "--target-path",
            str(target),
            "--log-path",
            str(target),
        ],
        env={**os.environ, "NOFX_WAREHOUSE_PATH": str(settings.warehouse_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc.stdout


def land(settings: Settings, store: EventStore) -> None:
    with duckdb.connect(str(settings.warehouse_path)) as conn:
        copy_new_events(store, conn)


def query(settings: Settings, sql: str) -> list[tuple]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def run_sessions(runtime: Runtime, n: int) -> None:
    for i in range(n):
        runtime.sessions.submit(SessionRequest(task=Task(prompt=f"p{i}", capability="code.review")))
    asyncio.run(runtime.run_pending())


def lose_a_worker(store: EventStore, runtime: Runtime, agent) -> str:
    """A session whose first attempt started on a worker that died: the next runtime abandons
    that attempt and tries again."""
    session = runtime.sessions.submit(
        SessionRequest(task=Task(prompt="lost", capability="code.review"))
    )
    sid = session.session_id
    with store.transaction() as tx:
        append_session_events(
            tx,
            sid,
            session.tenant_id,
            [
                NewEvent(
                    type="SessionStarted",
                    payload={"session_id": sid, "worker_id": "dead", "pattern": "solo"},
                    idempotency_key=f"{sid}/started",
                ),
                NewEvent(
                    type="StepStarted",
                    payload={
                        "session_id": sid,
                        "step_id": "solo",
                        "attempt": 1,
                        "agent_id": agent.agent_id,
                        "agent_version": agent.version,
                        "gen_ai.agent.name": agent.name,
                        "gen_ai.operation.name": "invoke_agent",
                        "gen_ai.provider.name": "simulated",
                        "capability": "code.review",
                    },
                    idempotency_key=f"{sid}/solo/1/started",
                ),
            ],
        )
    return sid


@pytest.mark.slow
def test_marts_on_edge_cases_and_incremental_rebuild(
    settings: Settings, store: EventStore, registry: AgentRegistry, tmp_path: Path
) -> None:
    agents = [registry.register(spec) for spec in fleet_specs(4)]
    runtime = Runtime(store, registry, config=RuntimeConfig(time_scale=0.0, seed=3))
    run_sessions(runtime, 6)
    lost = lose_a_worker(store, runtime, agents[3])
    asyncio.run(runtime.run_pending())
    cancelled = runtime.sessions.submit(
        SessionRequest(task=Task(prompt="never mind", capability="code.review"))
    ).session_id
    runtime.sessions.cancel(cancelled)
    spec = agents[3].model_dump(include=set(fleet_specs(1)[0].model_fields))
    spec.update(name="renamed", pricing={"input_per_1k_tokens": 0.5, "output_per_1k_tokens": 1.0})
    updated = registry.update(agents[3].agent_id, type(fleet_specs(1)[0])(**spec))
    registry.deregister(agents[0].agent_id)
    store.append("workflow-w1", StreamType.WORKFLOW, "default", [NewEvent(type="WorkflowPlanned")])
    store.append("experiment-1", "experiment", "default", [NewEvent(type="TrialStarted")])
    land(settings, store)
    said = dbt_build(settings, tmp_path / "target")
    assert re.search(r"WARN 1 accepted_values_stg_events_stream_type", said), said[-3000:]
    assert "WARN=1 " in said and "ERROR=0 " in said

    status = dict(query(settings, "select session_id, status from agent_sessions"))
    # the resumed session ran to an end (which end depends on the simulated agents)
    assert status[lost] in ("succeeded", "failed") and status[cancelled] == "cancelled"
    assert query(
        settings,
        "select error_type, ended_at is not null from agent_sessions "
        f"where session_id = '{cancelled}'",
    ) == [("cancelled", True)]
    abandoned = query(
        settings,
        "select agent_id, agent_name, error_type, latency_ms is null from agent_step_calls "
        "where outcome = 'abandoned'",
    )
    assert abandoned == [(agents[3].agent_id, agents[3].name, "worker_lost", True)]
    registry_state = {
        r[0]: r[1:]
        for r in query(
            settings, "select agent_id, name, version, is_active, input_per_1k_tokens from agents"
        )
    }
    assert registry_state[updated.agent_id] == ("renamed", 2, True, 0.5)
    assert registry_state[agents[0].agent_id][2] is False
    old_prices = query(
        settings,
        "select distinct input_per_1k_tokens, agent_version from agent_step_calls "
        f"where agent_id = '{updated.agent_id}' and outcome <> 'abandoned'",
    )
    assert all(version == 1 and price != 0.5 for price, version in old_prices)
    ((abandoned_in_daily,),) = query(
        settings,
        "select sum(calls) - (select count(*) from agent_step_calls where outcome <> 'abandoned') "
        "from agent_performance_daily",
    )
    assert abandoned_in_daily == 0

    before = query(settings, "select step_call_id, outcome from agent_step_calls order by 1")
    runtime.refresh_agents()
    run_sessions(runtime, 4)
    land(settings, store)
    dbt_build(settings, tmp_path / "target")
    after = query(settings, "select step_call_id, outcome from agent_step_calls order by 1")
    outcomes = sum(
        1
        for e in store.read_all(limit=10_000)
        if e.type in ("StepCompleted", "StepFailed", "StepAbandoned")
    )
    assert len(after) == outcomes > len(before)
    assert set(before) <= set(after)
    new_prices = query(
        settings,
        "select distinct input_per_1k_tokens from agent_step_calls "
        f"where agent_id = '{updated.agent_id}' and agent_version = 2",
    )
    assert new_prices in ([], [(0.5,)])
    assert query(settings, "select count(*) from agent_sessions") == [(12,)]
    fresh = dbt_build(settings, tmp_path / "target", "source freshness")
    assert "PASS freshness of raw.raw_events" in fresh
