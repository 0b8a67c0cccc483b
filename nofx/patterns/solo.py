"""Solo: one step, one capability, the best agent for it."""

from __future__ import annotations

from nofx.execution import Execution, PatternResult


async def run_solo(execution: Execution) -> PatternResult:
    """Solo: one step, one capability, the best agent for it."""
    task = execution.session.task
    step = await execution.call_step("solo", task.capability, task.prompt, write_with_next=True)
    return PatternResult(output=step.output, agent_id=step.agent_id)
