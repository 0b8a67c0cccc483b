"""Priorities: what the scheduler, the pool gate, adaptations and suggestions do with them,
and the resource conflicts analysis reports."""

from __future__ import annotations

import asyncio

from nofx.pools import PoolGate
from nofx.workflows.adapt import Plan, SetPriority, apply_changes
from nofx.workflows.analysis import analyze
from nofx.workflows.model import WorkflowSpec
from nofx.workflows.scheduler import schedule
from nofx.workflows.suggest import suggest


def fan(priorities: dict[str, int] | None = None, sides: int = 3) -> WorkflowSpec:
    """A long two-step chain and ``sides`` short side steps competing for the same pool."""
    priorities = priorities or {}
    steps = [
        {"id": "long", "capability": "code.generate", "estimates": {"duration_s": 10}},
        {
            "id": "after",
            "capability": "code.generate",
            "needs": ["long"],
            "estimates": {"duration_s": 10},
        },
    ] + [
        {"id": f"side{i}", "capability": "code.generate", "estimates": {"duration_s": 3}}
        for i in range(sides)
    ]
    for step in steps:
        step["priority"] = priorities.get(step["id"], 0)
    return WorkflowSpec.model_validate({"name": "fan", "steps": steps})


def test_priority_comes_before_rank_in_the_scheduler() -> None:
    by_rank = schedule(fan(), {"default": 1})
    assert by_rank.slots[0].step_id == "long"  # critical path first
    forced = schedule(fan({"side0": 5}), {"default": 1})
    assert forced.slots[0].step_id == "side0"
    assert forced.makespan_s == by_rank.makespan_s  # one worker: same total, other order


async def test_the_gate_lets_the_highest_priority_waiter_in_first() -> None:
    gate = PoolGate(capacity=1)
    order: list[str] = []

    async def call(name: str, priority: int) -> None:
        async with gate.slot(priority):
            order.append(name)
            await asyncio.sleep(0.01)

    holder = asyncio.create_task(call("first", 0))
    while not order:  # the holder has the slot (a fixed sleep is flaky on a loaded machine)
        await asyncio.sleep(0)
    waiters = [asyncio.create_task(call(n, p)) for n, p in (("low", 0), ("high", 9), ("mid", 5))]
    await asyncio.gather(holder, *waiters)
    assert order == ["first", "high", "mid", "low"]


def test_priority_is_an_adaptation_of_pending_steps() -> None:
    plan = apply_changes(
        Plan(spec=fan()), [SetPriority(op="set_priority", step_id="side1", priority=7)], set()
    )
    assert plan.spec.step("side1").priority == 7


def test_resource_conflicts_name_the_pool_and_the_steps_that_wait() -> None:
    (conflict,) = analyze(fan(), workers=2).resource_conflicts
    assert "pool 'default', level 0: 4 steps could run together on 2 slots" in conflict
    assert analyze(fan(), workers=4).resource_conflicts == []


def test_a_critical_step_behind_higher_priorities_gets_a_reorder_suggestion() -> None:
    # eight side steps of priority 3 fill the four default slots before the critical chain
    spec = fan({f"side{i}": 3 for i in range(8)}, sides=8)
    found = [s for s in suggest(spec) if s.kind == "reorder_priority"]
    assert found and found[0].steps == ("long",)
    assert found[0].change == {"op": "set_priority", "step_id": "long", "priority": 4}
    assert found[0].gain_s > 0
    assert not [s for s in suggest(fan(sides=8)) if s.kind == "reorder_priority"]
