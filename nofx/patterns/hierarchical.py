"""Hierarchical: a supervisor plans, delegates subtasks to workers in parallel, checks and aggregates.

Hard tasks nest: one subtask goes to a sub-supervisor that delegates again
(depth 2). Every supervisor -> worker link is an AgentRelationshipRecorded event
(the agent_relationships table). The session succeeds when a majority of
subtasks succeed; failed subtasks are named in the outcome.
"""

from __future__ import annotations

import asyncio

from nofx.patterns.common import has_capability, sibling_capability, try_step
from nofx.runtime import PatternResult, SessionExecution, StepFailed, StepResult


def subtask_count(complexity: float) -> int:
    return 2 + round(complexity * 2)


async def supervise(
    execution: SessionExecution,
    prefix: str,
    prompt: str,
    capability: str,
    depth: int,
    max_depth: int,
) -> tuple[StepResult, list[StepResult | StepFailed]]:
    task = execution.session.task
    sid = execution.session.session_id
    plan_capability = (
        "plan.decompose" if has_capability(execution, "plan.decompose") else capability
    )
    plan = await execution.call_step(f"{prefix}/plan", plan_capability, f"Decompose: {prompt}")
    n = subtask_count(task.complexity) if depth == 1 else 2

    async def work(i: int) -> StepResult | StepFailed:
        step = f"{prefix}/worker/{i}"
        if depth < max_depth and i == 0 and task.complexity >= 0.7:
            sub_plan, parts = await supervise(
                execution,
                f"{prefix}/sub{i}",
                f"{prompt} part {i}",
                capability,
                depth + 1,
                max_depth,
            )
            done = [p for p in parts if isinstance(p, StepResult)]
            if not done:
                return StepFailed(step, "subtree_failed", f"every part of {step} failed")
            link_worker = sub_plan
        else:
            result = await try_step(
                execution,
                step,
                capability,
                f"{prompt} — part {i + 1} of {n}",
                write_with_next=True,  # with its delegation link, in one transaction
            )
            if isinstance(result, StepFailed):
                return result
            link_worker = result
        execution.emit(
            "AgentRelationshipRecorded",
            {
                "supervisor_agent_id": plan.agent_id,
                "worker_agent_id": link_worker.agent_id,
                "relation": "delegates_to",
                "depth": depth,
                "step_id": step,
            },
            key=f"{sid}/{step}/relationship",
        )
        return link_worker

    parts = list(await asyncio.gather(*(work(i) for i in range(n))))
    return plan, parts


async def run_hierarchical(execution: SessionExecution) -> PatternResult:
    task = execution.session.task
    plan, parts = await supervise(
        execution, "hier", task.prompt, task.capability, depth=1, max_depth=2
    )
    done = [p for p in parts if isinstance(p, StepResult)]
    failed = [p for p in parts if isinstance(p, StepFailed)]
    if len(done) * 2 <= len(parts):
        raise StepFailed(
            "hier/aggregate", "subtasks_failed", f"{len(failed)} of {len(parts)} subtasks failed"
        )
    aggregate_capability = sibling_capability(execution, task.capability, "summarize")
    if not has_capability(execution, aggregate_capability):
        aggregate_capability = task.capability
    if has_capability(execution, "text.summarize"):
        aggregate_capability = "text.summarize"
    summary = await execution.call_step(
        "hier/aggregate",
        aggregate_capability,
        "Combine: " + " | ".join(p.output for p in done),
        write_with_next=True,  # with the session's end
    )
    return PatternResult(
        output=summary.output,
        agent_id=plan.agent_id,
        details={
            "supervisor": plan.agent_name,
            "subtasks": len(parts),
            "succeeded": len(done),
            "failed": [f.step_id for f in failed],
        },
    )
