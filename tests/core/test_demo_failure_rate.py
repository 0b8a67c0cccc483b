"""The demo fleet and defaults meet the seed's <1% orchestration failure target (issue 14),
measured from the events (not the mart), with task failures still counted."""

from __future__ import annotations

from collections import Counter

from nofx.domain import PatternName
from nofx.fleet import demo_fleet, demo_pool_policy, demo_requests, demo_workflow_requests
from nofx.pools import PoolService
from nofx.registry import AgentRegistry
from nofx.runtime import Runtime, RuntimeConfig
from nofx.store import EventStore

DEMO_SESSIONS = 300  # `nofx demo`'s default


async def test_demo_workload_keeps_orchestration_failures_under_one_percent(
    store: EventStore, registry: AgentRegistry
) -> None:
    for spec in demo_fleet(7):
        registry.register(spec)
    pools = PoolService(store)
    for agent in registry.list():
        pools.configure(agent, demo_pool_policy())
    runtime = Runtime(store, registry, config=RuntimeConfig(time_scale=0.0, seed=7))
    patterns = tuple(
        p.value for p in runtime.patterns if p not in (PatternName.AUTO, PatternName.WORKFLOW)
    )
    workflows = demo_workflow_requests(DEMO_SESSIONS // 30, seed=7)
    ids = [
        runtime.sessions.submit(r).session_id
        for r in [
            *demo_requests(DEMO_SESSIONS - len(workflows), seed=7, patterns=patterns),
            *workflows,
        ]
    ]
    summary = await runtime.run_pending()
    assert len(summary.sessions) == DEMO_SESSIONS and not summary.interrupted

    ends: Counter[str] = Counter()
    step_classes: Counter[str] = Counter()
    for sid in ids:
        events = runtime.sessions.events(sid)
        last = events[-1]
        assert last.type in ("SessionCompleted", "SessionFailed")
        ends["succeeded" if last.type == "SessionCompleted" else last.payload["failure_class"]] += 1
        step_classes.update(e.payload["failure_class"] for e in events if e.type == "StepFailed")
    finished = sum(ends.values())
    assert ends["orchestration"] / finished < 0.01, ends
    # honest: wrong answers still fail sessions, and are counted as the task's
    assert ends["task"] / finished > 0.03, ends
    # the orchestrator did meet failures of its own (rate limits, server errors) and got
    # around them: they are in the log, not hidden
    assert step_classes["orchestration"] > 0 and step_classes["task"] > 0
