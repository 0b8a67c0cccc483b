"""The executor runs the plan it records, re-plans when reality deviates, and records planned
against executed makespan for every run."""

from __future__ import annotations

from pathlib import Path

import pytest

from nofx.domain import AgentSpec, PatternName, SessionRequest, Task
from nofx.patterns.workflow import executed_makespan_s, is_late
from nofx.runtime import Runtime, RuntimeConfig
from nofx.workflows import load_wfformat
from nofx.workflows.model import WorkflowSpec

DATA = Path(__file__).resolve().parents[1] / "data" / "wfcommons"


def exact_agent(registry, capabilities: set[str], **config):  # type: ignore[no-untyped-def]
    """A simulated agent that takes exactly each step's estimate (or what config says)."""
    return registry.register(
        AgentSpec(
            name="exact",
            capabilities=[{"name": c, "proficiency": 5} for c in sorted(capabilities)],
            provider={
                "config": {
                    "skill": dict.fromkeys(capabilities, 1.0),
                    "error_rate": 0.0,
                    "rate_limit_rate": 0.0,
                    "latency_from_estimate": True,
                    **config,
                }
            },
            max_concurrency=1000,
        )
    )


async def run(store, registry, spec: WorkflowSpec):  # type: ignore[no-untyped-def]
    runtime = Runtime(store, registry, config=RuntimeConfig(time_scale=0.0, seed=3))
    session = runtime.sessions.submit(
        SessionRequest(
            task=Task(prompt=spec.name, capability=spec.steps[0].capability),
            pattern=PatternName.WORKFLOW,
            workflow=spec.model_dump(mode="json"),
        )
    )
    await runtime.run_session(session.session_id)
    return runtime.sessions.get(session.session_id), runtime.sessions.events(session.session_id)


async def test_a_real_trace_runs_as_planned_with_exact_duration_agents(store, registry) -> None:
    spec = load_wfformat(DATA / "montage-chameleon-2mass-005d-001.json")
    exact_agent(registry, {s.capability for s in spec.steps})
    session, events = await run(store, registry, spec)
    assert session.status.value == "succeeded"
    planned = next(e.payload for e in events if e.type == "WorkflowPlanned")
    recorded = next(e.payload for e in events if e.type == "WorkflowMakespanRecorded")
    assert planned["planned_makespan_s"] <= 1.02 * planned["lower_bound_s"]
    assert recorded["planned_makespan_s"] == planned["planned_makespan_s"]
    assert recorded["executed_makespan_s"] <= 1.05 * recorded["planned_makespan_s"]
    assert recorded["replans"] == 0
    # each worker ran its steps in the planned order
    order = [e.payload["step_id"].removeprefix("wf/") for e in events if e.type == "StepStarted"]
    for queue in planned["queues"].values():
        assert [s for s in order if s in queue] == queue
    assert {len(q) > 0 for q in planned["queues"].values()} == {True}
    workers = {w for w in planned["queues"] if not w.split("/")[1].startswith("-")}
    assert len(workers) <= 4  # the default pool's four workers (steps of no time run beside)


async def test_late_steps_replan_the_rest_and_the_deviation_is_recorded(store, registry) -> None:
    spec = WorkflowSpec.model_validate(
        {
            "name": "late",
            "steps": [
                {"id": f"s{i}", "capability": "code.generate", "estimates": {"duration_s": 1}}
                for i in range(6)
            ]
            + [
                {
                    "id": "join",
                    "capability": "code.generate",
                    "needs": [f"s{i}" for i in range(6)],
                    "estimates": {"duration_s": 1},
                }
            ],
        }
    )
    # the agent ignores the estimates: every step takes 3 s
    exact_agent(
        registry,
        {"code.generate"},
        latency_from_estimate=False,
        latency_median_ms=2000,  # x (1 + complexity 0.5) = 3 s
        latency_sigma=0.0,
    )
    session, events = await run(store, registry, spec)
    assert session.status.value == "succeeded"
    replans = [e.payload for e in events if e.type == "WorkflowReplanned"]
    assert replans and "took 3s, planned 1s" in replans[0]["reason"]
    recorded = next(e.payload for e in events if e.type == "WorkflowMakespanRecorded")
    assert recorded["planned_makespan_s"] == 3.0  # 6 x 1 s on 4 workers, then the join
    assert recorded["executed_makespan_s"] == 9.0  # the same shape at 3 s a step
    assert recorded["replans"] == len(replans)


def test_executed_makespan_replays_workers_in_the_order_they_ran() -> None:
    spec = WorkflowSpec.model_validate(
        {
            "name": "r",
            "steps": [
                {"id": "a", "capability": "code.generate"},
                {"id": "b", "capability": "code.generate"},
                {"id": "c", "capability": "code.generate", "needs": ["a"]},
            ],
        }
    )
    ran = [("default", 0, "a"), ("default", 1, "b"), ("default", 0, "c")]
    assert executed_makespan_s(spec, ran, {"a": 2, "b": 5, "c": 1}) == 5.0
    one_worker = [("default", 0, "b"), ("default", 0, "a"), ("default", 0, "c")]
    assert executed_makespan_s(spec, one_worker, {"a": 2, "b": 5, "c": 1}) == 8.0


def test_late_means_over_the_tolerance() -> None:
    step = WorkflowSpec.model_validate(
        {"name": "x", "steps": [{"id": "a", "capability": "code.generate"}]}
    ).steps[0]
    assert not is_late(step, 60.0) and not is_late(step, 65.9) and is_late(step, 66.5)


async def test_with_learned_history_the_plan_uses_p50_and_lateness_p90(store, registry) -> None:
    from nofx.domain import NewEvent
    from nofx.workflows import learning

    spec = WorkflowSpec.model_validate(
        {
            "name": "learned",
            "steps": [
                # hand-written estimates far from what the agent takes (about 1.5 s)
                {"id": f"s{i}", "capability": "code.generate", "estimates": {"duration_s": 600}}
                for i in range(3)
            ],
        }
    )
    exact_agent(
        registry,
        {"code.generate"},
        latency_from_estimate=False,
        latency_median_ms=1000,
        latency_sigma=0.0,
    )
    _, first = await run(store, registry, spec)
    outcomes = [
        {**e.payload, "succeeded": e.type == "StepCompleted"}
        for e in first
        if e.type in ("StepCompleted", "StepFailed")
    ] * 2  # five samples make a capability's history count
    stats = learning.learn(outcomes)
    store.append(
        learning.stream_id("default"),
        learning.STREAM_TYPE,
        "default",
        [NewEvent(type="EstimatesLearned", payload={"stats": [s.as_dict() for s in stats]})],
    )
    _, second = await run(store, registry, spec)
    planned = next(e.payload for e in second if e.type == "WorkflowPlanned")
    recorded = next(e.payload for e in second if e.type == "WorkflowMakespanRecorded")
    assert planned["durations_from"] == {"learned_p50": ["code.generate"]}
    assert recorded["planned_from"] == "learned p50"
    assert recorded["planned_makespan_s"] == 1.5  # p50, not the 600 s estimate
    assert recorded["executed_over_planned"] == 1.0  # the delay is now measured against it
    assert not [e for e in second if e.type == "WorkflowReplanned"]


def test_learned_p90_decides_lateness() -> None:
    from nofx.workflows.learning import StepStats, learned_durations

    spec = WorkflowSpec.model_validate(
        {"name": "x", "steps": [{"id": "a", "capability": "code.generate"}]}
    )
    stats = [StepStats("code.generate", None, 9, 1.0, 2.0, 4.0, 0.0)]
    learned = learned_durations(spec, stats)
    assert learned.expected_s("a", 60.0) == 2.0 and learned.expected_s("b", 60.0) == 60.0
    assert not is_late(spec.steps[0], 3.9, learned) and is_late(spec.steps[0], 4.5, learned)
    few = [StepStats("code.generate", None, 2, 1.0, 2.0, 4.0, 0.0)]
    assert learned_durations(spec, few).capabilities == []


async def test_a_step_planned_to_take_no_time_does_not_wait_behind_a_long_one(
    store, registry
) -> None:
    def step(sid: str, seconds: float, needs: list[str] | None = None) -> dict:
        return {
            "id": sid,
            "capability": "code.generate",
            "needs": needs or [],
            "estimates": {"duration_s": seconds},
        }

    spec = WorkflowSpec.model_validate(
        {
            "name": "zero",
            "steps": [
                step("long", 10),
                step("short", 1),
                step("marker", 0, ["short"]),  # e.g. a WfCommons task with runtime 0
                step("after", 5, ["marker"]),
                step("tail", 4, ["after"]),
            ],
        }
    )
    exact_agent(registry, {"code.generate"})
    runtime = Runtime(store, registry, config=RuntimeConfig(time_scale=0.0, seed=3))
    session = runtime.sessions.submit(
        SessionRequest(
            task=Task(prompt="zero", capability="code.generate"),
            pattern=PatternName.WORKFLOW,
            workflow=spec.model_dump(mode="json"),
        )
    )
    from nofx.domain import NewEvent
    from nofx.workflows.adapt import Plan, stream_id

    store.append(  # two workers, as POST /workflows/adapt would set them
        stream_id(session.session_id),
        "workflow",
        session.tenant_id,
        [
            NewEvent(
                type="WorkflowAdapted",
                payload={"plan": Plan(spec=spec, pool_limits={"default": 2}).model_dump()},
            )
        ],
    )
    await runtime.run_session(session.session_id)
    events = runtime.sessions.events(session.session_id)
    recorded = next(e.payload for e in events if e.type == "WorkflowMakespanRecorded")
    assert recorded["planned_makespan_s"] == 10.0
    assert recorded["executed_makespan_s"] == 10.0


async def test_a_step_still_running_past_its_estimate_replans_before_it_ends(
    store, registry
) -> None:
    spec = WorkflowSpec.model_validate(
        {
            "name": "slow",
            "steps": [
                {"id": "a", "capability": "code.generate", "estimates": {"duration_s": 1}},
                {
                    "id": "b",
                    "capability": "code.generate",
                    "needs": ["a"],
                    "estimates": {"duration_s": 1},
                },
            ],
        }
    )
    # 40 s a call (x 1.5 for complexity 0.5 = 60 s of agent time), slept at 1/100: 0.6 s
    exact_agent(
        registry,
        {"code.generate"},
        latency_from_estimate=False,
        latency_median_ms=40_000,
        latency_sigma=0.0,
    )
    runtime = Runtime(store, registry, config=RuntimeConfig(time_scale=0.01, seed=3))
    session = runtime.sessions.submit(
        SessionRequest(
            task=Task(prompt="slow", capability="code.generate"),
            pattern=PatternName.WORKFLOW,
            workflow=spec.model_dump(mode="json"),
        )
    )
    await runtime.run_session(session.session_id)
    events = runtime.sessions.events(session.session_id)
    replans = [e.payload for e in events if e.type == "WorkflowReplanned"]
    assert "'a' is still running" in replans[0]["reason"]
    assert replans[0]["running"] == ["a"]
    # planned again from a quarter of its estimate left, not from nothing
    assert replans[0]["planned_makespan_s"] == pytest.approx(1.25, abs=0.01)
    assert runtime.sessions.get(session.session_id).status.value == "succeeded"
