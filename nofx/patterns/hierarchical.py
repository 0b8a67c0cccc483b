"""Hierarchical: a supervisor plans, delegates subtasks to workers in parallel, checks and aggregates.

The supervisor's plan is asked for as JSON (``{"subtasks": [...]}``) and parsed; each worker
receives one of the plan's subtasks. A plan that is a numbered or bulleted list is read as
one too; a plan with no subtasks falls back to numbered parts of the task, and says so.
Hard tasks nest: one subtask goes to a sub-supervisor that delegates again
(depth 2). Every supervisor -> worker link is an AgentRelationshipRecorded event
(the agent_relationships table). The session succeeds when a majority of
subtasks succeed; failed subtasks are named in the outcome.
"""

from __future__ import annotations

import asyncio
import json
import re

from nofx.execution import Execution, PatternResult, StepError, StepResult
from nofx.patterns.common import has_capability, sibling_capability, try_step
from nofx.patterns.pair import MAX_PARSE_CHARS, first_json_object

MAX_SUBTASKS = 8
LIST_ITEM = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+(.+?)\s*$")


def subtask_count(complexity: float) -> int:
    return 2 + round(complexity * 2)


def parse_subtasks(text: str, limit: int = MAX_SUBTASKS) -> list[str]:
    """The subtasks of a plan: a JSON ``{"subtasks": [...]}`` object or list, else the items
    of a numbered or bulleted list; empty when the plan has neither."""
    try:
        data = first_json_object(text) if "{" in text else None
    except ValueError:
        data = None
    if data is None and text.lstrip().startswith("[") and len(text) <= MAX_PARSE_CHARS:
        try:
            data = {"subtasks": json.loads(text)}
        except (ValueError, RecursionError):
            data = None
    if isinstance(data, dict) and isinstance(data.get("subtasks"), list):
        items = [str(i).strip() for i in data["subtasks"][:limit] if str(i).strip()]
    else:
        lines = text[:MAX_PARSE_CHARS].splitlines()
        items = [m.group(1) for line in lines if (m := LIST_ITEM.match(line[:4000]))]
    return [i[:2000] for i in items[:limit]]


def plan_prompt(prompt: str, count: int) -> str:
    return (
        f"Decompose the task into {count} independent subtasks. Answer with only a JSON "
        f'object: {{"subtasks": [string, ...]}}.\n\nTask:\n{prompt}'
    )


async def supervise(
    execution: Execution,
    prefix: str,
    prompt: str,
    capability: str,
    depth: int,
    max_depth: int,
    complexity: float | None = None,
) -> tuple[StepResult, list[StepResult | StepError]]:
    sid = execution.session.session_id
    complexity = execution.session.task.complexity if complexity is None else complexity
    plan_capability = (
        "plan.decompose" if has_capability(execution, "plan.decompose") else capability
    )
    wanted = subtask_count(complexity) if depth == 1 else 2
    plan = await execution.call_step(
        f"{prefix}/plan",
        plan_capability,
        plan_prompt(prompt, wanted),
        context={"expects": "subtasks", "count": wanted, "goal": prompt},
    )
    subtasks = parse_subtasks(plan.output) or [
        f"{prompt} — part {i + 1} of {wanted}" for i in range(wanted)
    ]
    n = len(subtasks)

    async def work(i: int) -> StepResult | StepError:
        step = f"{prefix}/worker/{i}"
        if depth < max_depth and i == 0 and complexity >= 0.7:
            sub_plan, parts = await supervise(
                execution,
                f"{prefix}/sub{i}",
                subtasks[i],
                capability,
                depth + 1,
                max_depth,
                complexity,
            )
            done = [p for p in parts if isinstance(p, StepResult)]
            if not done:
                return StepError(step, "subtree_failed", f"every part of {step} failed")
            link_worker = sub_plan
        else:
            result = await try_step(
                execution,
                step,
                capability,
                f"{subtasks[i]}\n\nThis is one part of: {prompt}",
                complexity=complexity,
                write_with_next=True,  # with its delegation link, in one transaction
            )
            if isinstance(result, StepError):
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
                "subtask": subtasks[i][:200],
            },
            key=f"{sid}/{step}/relationship",
        )
        return link_worker

    # every part finishes before an error goes up: a sibling still running after the session
    # ended would write its delegation link after SessionFailed
    outcomes = await asyncio.gather(*(work(i) for i in range(n)), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    parts: list[StepResult | StepError] = [o for o in outcomes if not isinstance(o, BaseException)]
    return plan, parts


async def hierarchy(
    execution: Execution, prefix: str, prompt: str, capability: str, complexity: float
) -> PatternResult:
    """Plan, delegate, aggregate, for any prompt; ``prefix`` names the steps (``hier`` for a
    session, ``wf/<step>`` inside a workflow)."""
    plan, parts = await supervise(
        execution, prefix, prompt, capability, depth=1, max_depth=2, complexity=complexity
    )
    done = [p for p in parts if isinstance(p, StepResult)]
    failed = [p for p in parts if isinstance(p, StepError)]
    if len(done) * 2 <= len(parts):
        raise StepError(
            f"{prefix}/aggregate",
            "subtasks_failed",
            f"{len(failed)} of {len(parts)} subtasks failed",
        )
    aggregate_capability = sibling_capability(execution, capability, "summarize")
    if not has_capability(execution, aggregate_capability):
        aggregate_capability = capability
    if has_capability(execution, "text.summarize"):
        aggregate_capability = "text.summarize"
    summary = await execution.call_step(
        f"{prefix}/aggregate",
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


async def run_hierarchical(execution: Execution) -> PatternResult:
    task = execution.session.task
    return await hierarchy(execution, "hier", task.prompt, task.capability, task.complexity)
