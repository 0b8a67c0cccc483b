"""Changing a running workflow: the rule on its own, then through the API while a step is
in flight, with the executor picking the change up before it starts the next step."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from nofx.agents import AgentResult, ProviderSet
from nofx.api.app import create_app
from nofx.domain import AgentSpec, PatternName, ProviderKind, SessionRequest, Task
from nofx.errors import ValidationError
from nofx.runtime import Runtime, RuntimeConfig
from nofx.store import EventStore
from nofx.workflows.adapt import AddStep, Plan, RemoveStep, ReplaceStep, SetAgent, apply_changes
from nofx.workflows.model import StepSpec, WorkflowSpec

FLOW = {
    "name": "fan-out",
    "steps": [
        {"id": "a", "capability": "code.generate"},
        {"id": "b", "capability": "code.review", "needs": ["a"]},
        {"id": "c", "capability": "code.review", "needs": ["a"]},
    ],
}
CAPS = {"code.generate", "code.review"}

# these tests run local python agents (through fake providers): the operator allows them
pytestmark = pytest.mark.usefixtures("local_agents_policy")


def plan() -> Plan:
    return Plan(spec=WorkflowSpec.model_validate(FLOW))


def test_pending_steps_change_and_started_ones_do_not() -> None:
    added = apply_changes(
        plan(),
        [
            AddStep(op="add_step", step=StepSpec(id="d", capability="code.generate", needs=["b"])),
            RemoveStep(op="remove_step", step_id="c"),
            SetAgent(op="set_agent", step_id="b", agent_id="agt_1"),
        ],
        started={"a"},
        known_capabilities=CAPS,
    )
    assert [s.id for s in added.spec.steps] == ["a", "b", "d"] and added.pinned == {"b": "agt_1"}
    refusals = [
        ([RemoveStep(op="remove_step", step_id="a")], "already started"),
        ([RemoveStep(op="remove_step", step_id="zz")], "no step 'zz'"),
        ([AddStep(op="add_step", step=StepSpec(id="b", capability="code.review"))], "exists"),
        (
            [
                ReplaceStep(
                    op="replace_step",
                    step=StepSpec(id="b", capability="code.review", needs=["a", "c"]),
                ),
                ReplaceStep(
                    op="replace_step",
                    step=StepSpec(id="c", capability="code.review", needs=["b"]),
                ),
            ],
            "cycle",
        ),
        (
            [ReplaceStep(op="replace_step", step=StepSpec(id="c", capability="sql.write"))],
            "sql.write",
        ),
    ]
    for changes, message in refusals:
        with pytest.raises(ValidationError, match=message):
            apply_changes(plan(), changes, started={"a"}, known_capabilities=CAPS)
    # removing a step others need is refused, unless they go in the same request
    needed = plan().spec.model_copy(
        update={
            "steps": [
                *plan().spec.steps,
                StepSpec(id="d", capability="code.generate", needs=["c"]),
            ]
        }
    )
    with pytest.raises(ValidationError, match="need 'c'"):
        apply_changes(Plan(spec=needed), [RemoveStep(op="remove_step", step_id="c")], set())
    both = [RemoveStep(op="remove_step", step_id="d"), RemoveStep(op="remove_step", step_id="c")]
    assert len(apply_changes(Plan(spec=needed), both, set()).spec.steps) == 2


class Gated:
    """A python-kind provider whose calls wait until the test opens the gate."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.calls: list[tuple[str, str]] = []

    async def invoke(self, agent, call):  # type: ignore[no-untyped-def]
        self.calls.append(
            (call.call_id.split("/")[1] + "/" + call.call_id.split("/")[2], agent.agent_id)
        )
        await self.gate.wait()
        return AgentResult(
            output=f"done by {agent.name}",
            input_tokens=5,
            output_tokens=5,
            cost_usd=0.0,
            latency_ms=10,
        )


async def test_a_workflow_adapted_while_a_step_runs(store: EventStore, registry) -> None:
    agents = [
        registry.register(
            AgentSpec(
                name=f"worker{i}",
                capabilities=[{"name": c, "proficiency": 3} for c in sorted(CAPS)],
                provider={
                    "kind": "python",
                    "config": {"callable": "tests.agents.agent_functions:shout"},
                },
            )
        )
        for i in range(2)
    ]
    provider = Gated()
    runtime = Runtime(
        store,
        registry,
        providers=ProviderSet({ProviderKind.PYTHON: provider}),
        config=RuntimeConfig(time_scale=0.0),
    )
    session = runtime.sessions.submit(
        SessionRequest(
            task=Task(prompt="fan out", capability="code.generate"),
            pattern=PatternName.WORKFLOW,
            workflow=FLOW,
        )
    )
    running = asyncio.create_task(runtime.run_pending())
    while not provider.calls:  # step a is in flight
        await asyncio.sleep(0.01)
    change = {
        "session_id": session.session_id,
        "reason": "c is not needed; d checks b",
        "changes": [
            {"op": "remove_step", "step_id": "c"},
            {"op": "add_step", "step": {"id": "d", "capability": "code.generate", "needs": ["b"]}},
            {"op": "set_agent", "step_id": "b", "agent_id": agents[1].agent_id},
        ],
    }
    with TestClient(create_app(store=store, auth_required=False)) as client:
        refused = client.post(
            "/api/v1/workflows/adapt",
            json={**change, "changes": [{"op": "remove_step", "step_id": "a"}]},
        )
        assert refused.status_code == 422 and "already started" in refused.json()["detail"]
        accepted = client.post("/api/v1/workflows/adapt", json=change)
        assert accepted.status_code == 200, accepted.text
        assert [s["id"] for s in accepted.json()["plan"]["spec"]["steps"]] == ["a", "b", "d"]
        provider.gate.set()
        await running
        done = runtime.sessions.get(session.session_id)
        assert done.status.value == "succeeded"
        late = client.post("/api/v1/workflows/adapt", json=change)
        assert late.status_code == 409
    events = runtime.sessions.events(session.session_id)
    ran = [e.payload["step_id"] for e in events if e.type == "StepCompleted"]
    assert sorted(ran) == ["wf/a", "wf/b", "wf/d"]
    skipped = [e.payload for e in events if e.type == "StepSkipped"]
    assert skipped == [
        {
            "session_id": session.session_id,
            "step_id": "wf/c",
            "because": ["removed by an adaptation"],
        }
    ]
    by_step = {
        e.payload["step_id"]: e.payload["agent_id"] for e in events if e.type == "StepCompleted"
    }
    assert by_step["wf/b"] == agents[1].agent_id  # the pin held
    assert events[-1].payload["details"]["adaptations"] == 1


def test_deadline_relief_is_a_pure_decision() -> None:
    from nofx.workflows.adapt import deadline_relief

    flat = Plan(
        spec=WorkflowSpec.model_validate(
            {
                "name": "flat",
                "steps": [
                    {"id": f"s{i}", "capability": "code.generate", "estimates": {"duration_s": 10}}
                    for i in range(8)
                ],
            }
        )
    )
    # 8 x 10 s on 4 slots: 20 s planned against 15 s; 8 slots make it 10 s
    change, reason = deadline_relief(flat, set(), 0.0, 15.0, "default", 4, 4, 4)
    assert change.limit == 8 and "deadline at risk" in reason
    assert deadline_relief(flat, set(), 0.0, 25.0, "default", 4, 4, 4) is None  # safe
    assert deadline_relief(flat, set(), 0.0, 5.0, "default", 4, 4, 4) is None  # lost anyway
    assert deadline_relief(flat, set(), 0.0, 15.0, "default", 4, 0, 8) is None  # no queue


async def test_a_workflow_at_risk_of_its_deadline_gets_more_slots(
    store: EventStore, registry
) -> None:
    registry.register(
        AgentSpec(
            name="worker",
            capabilities=[{"name": "code.generate", "proficiency": 3}],
            provider={
                "kind": "python",
                "config": {"callable": "tests.agents.agent_functions:shout"},
            },
            max_concurrency=100,
        )
    )
    provider = Gated()
    runtime = Runtime(
        store,
        registry,
        providers=ProviderSet({ProviderKind.PYTHON: provider}),
        config=RuntimeConfig(time_scale=0.0),
    )
    flat = {
        "name": "flat",
        "steps": [
            {"id": f"s{i}", "capability": "code.generate", "estimates": {"duration_s": 10}}
            for i in range(8)
        ],
    }
    session = runtime.sessions.submit(
        SessionRequest(
            task=Task(prompt="eight", capability="code.generate"),
            pattern=PatternName.WORKFLOW,
            workflow=flat,
            deadline_s=15,
        )
    )
    running = asyncio.create_task(runtime.run_pending())
    for _ in range(500):  # the four default slots fill, then the relief lets the rest in
        if len(provider.calls) == 8:
            break
        await asyncio.sleep(0.01)
    assert len(provider.calls) == 8, "all eight steps should run at once after the relief"
    provider.gate.set()
    await running
    adapted = [e.payload for e in store.read_stream(f"workflow-{session.session_id}")]
    assert [a["by"] for a in adapted] == ["system"]
    assert adapted[0]["plan"]["pool_limits"] == {"default": 8}
    assert "deadline at risk" in adapted[0]["reason"]
    assert runtime.sessions.get(session.session_id).status.value == "succeeded"
