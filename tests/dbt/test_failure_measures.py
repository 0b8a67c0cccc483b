"""Orchestration and task failures are separate measures in the marts (ADR 0018), equal to
what the events say, and answer quality is its own column."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nofx.domain import AgentSpec, SessionRequest, Task
from nofx.registry import AgentRegistry
from nofx.runtime import Runtime, RuntimeConfig
from nofx.settings import Settings
from nofx.store import EventStore
from tests.dbt.test_models import dbt_build, land, query


def simulated(name: str, capability: str, **config: object) -> AgentSpec:
    return AgentSpec(
        name=name,
        capabilities=[{"name": capability, "proficiency": 3}],
        provider={"kind": "simulated", "config": {"error_rate": 0, "rate_limit_rate": 0, **config}},
    )


@pytest.mark.slow
def test_marts_split_failures_by_whose_they_are(
    settings: Settings, store: EventStore, registry: AgentRegistry, tmp_path: Path
) -> None:
    registry.register(simulated("wrong", "code.review", skill={"code.review": 0.0}))
    registry.register(simulated("dark", "text.summarize", dark_after_calls=0))
    good = registry.register(simulated("good", "data.analyze", skill={"data.analyze": 1.0}))
    runtime = Runtime(store, registry, config=RuntimeConfig(time_scale=0.0, seed=3))
    asks = {"code.review": 3, "text.summarize": 2, "data.analyze": 4}
    for capability, n in asks.items():
        for i in range(n):
            runtime.sessions.submit(
                SessionRequest(
                    task=Task(prompt=f"{capability} {i}", capability=capability, complexity=0.0),
                    max_attempts=1,
                )
            )
    asyncio.run(runtime.run_pending())
    land(settings, store)
    dbt_build(settings, tmp_path / "target")

    by_capability = query(
        settings,
        "select capability, status, failure_class, count(*) from agent_sessions "
        "group by all order by all",
    )
    assert by_capability == [
        ("code.review", "failed", "task", 3),  # a wrong answer: the task's
        ("data.analyze", "succeeded", None, 4),
        ("text.summarize", "failed", "orchestration", 2),  # nobody answered: ours
    ]
    daily = dict(
        (row[0], row[1:])
        for row in query(
            settings,
            "select capability, calls, orchestration_failures, task_failures, "
            "orchestration_failure_rate, task_failure_rate from agent_performance_daily",
        )
    )
    assert daily["code.review"] == (3, 0, 3, 0.0, 1.0)
    # a timeout is retried beyond max_attempts=1 (2 orchestration retries): 3 calls each
    assert daily["text.summarize"] == (6, 6, 0, 1.0, 0.0)
    assert daily["data.analyze"] == (4, 0, 0, 0.0, 0.0)
    quality = query(
        settings,
        "select min(answer_quality), max(answer_quality) from agent_sessions "
        f"where agent_id = '{good.agent_id}'",
    )
    assert quality == [(1.0, 1.0)]
