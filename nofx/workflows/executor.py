"""Run a workflow inside a session: every step is a durable ``call_step``, so a killed runtime
resumes the workflow without repeating finished steps (the event store is the checkpoint).

Steps start when their inputs are done, highest upward rank first, within each
pool's concurrency limit. A step that runs out of attempts fails; its dependants
are skipped (StepSkipped) and the workflow fails naming the step.
"""

from __future__ import annotations

import asyncio

from nofx.domain import Event
from nofx.patterns.common import try_step
from nofx.runtime import PatternResult, SessionExecution, StepFailed, StepResult
from nofx.workflows.analysis import analyze, topological_order
from nofx.workflows.model import WorkflowSpec
from nofx.workflows.scheduler import upward_rank

POOL_LIMIT = 4


def render_prompt(
    step_prompt: str, inputs: dict[str, str], outputs: dict[str, str], params: dict
) -> str:
    parts = [step_prompt] if step_prompt else []
    for name, source in inputs.items():
        kind, _, rest = source.partition(".")
        value = outputs.get(rest.split(".")[0], "") if kind == "steps" else params.get(rest, "")
        parts.append(f"{name}: {value}")
    return "\n".join(parts) or "run this step"


def realised_makespan_s(spec: WorkflowSpec, history: list[Event]) -> float:
    """The workflow's makespan from its steps' measured call latencies (every attempt,
    retries included): each step starts when its last dependency ends. For simulated agents
    these are the simulated latencies, so the number is comparable to the plan's estimates
    whatever the simulator's time scale."""
    spent: dict[str, float] = {}
    for event in history:
        step_id = str(event.payload.get("step_id", ""))
        if event.type in ("StepCompleted", "StepFailed") and step_id.startswith("wf/"):
            name = step_id.removeprefix("wf/")
            spent[name] = spent.get(name, 0.0) + float(event.payload.get("latency_ms") or 0) / 1000
    finish: dict[str, float] = {}
    for node in topological_order(spec):
        start = max((finish[d] for d in spec.step(node).needs), default=0.0)
        finish[node] = start + spent.get(node, 0.0)
    return max(finish.values(), default=0.0)


async def run_workflow(execution: SessionExecution) -> PatternResult:
    state = execution.state
    assert state is not None, "a session always starts with SessionRequested"
    spec = WorkflowSpec.model_validate(state["request"]["workflow"])
    rank = upward_rank(spec)
    finished = {s.id: asyncio.Event() for s in spec.steps}
    pools: dict[str, asyncio.Semaphore] = {}
    outputs: dict[str, str] = {}
    results: dict[str, StepResult] = {}
    failed: dict[str, StepFailed] = {}
    skipped: set[str] = set()
    sid = execution.session.session_id

    async def run(step_id: str) -> None:
        step = spec.step(step_id)
        try:
            for dep in step.needs:
                await finished[dep].wait()
            blocked = [d for d in step.needs if d in failed or d in skipped]
            if blocked:
                skipped.add(step_id)
                execution.emit(
                    "StepSkipped",
                    {"step_id": f"wf/{step_id}", "because": blocked},
                    key=f"{sid}/wf/{step_id}/skipped",
                )
                return
            pool = pools.setdefault(step.pool, asyncio.Semaphore(POOL_LIMIT))
            async with pool:
                result = await try_step(
                    execution,
                    f"wf/{step_id}",
                    step.capability,
                    render_prompt(step.prompt, step.inputs, outputs, spec.params),
                    input_tokens=max(1, step.estimates.tokens),
                    max_attempts=step.max_attempts,
                )
            if isinstance(result, StepFailed):
                failed[step_id] = result
            else:
                results[step_id] = result
                outputs[step_id] = result.output
        finally:
            finished[step_id].set()

    await asyncio.gather(*(run(s.id) for s in sorted(spec.steps, key=lambda s: -rank[s.id])))
    details = {
        "steps": len(spec.steps),
        "done": len(results),
        "failed": sorted(failed),
        "skipped": sorted(skipped),
        "planned_makespan_s": round(analyze(spec).critical_path_s, 3),
        "actual_makespan_s": round(realised_makespan_s(spec, execution.history), 3),
        "planned_cost_usd": round(sum(s.estimates.cost_usd for s in spec.steps), 6),
    }
    if failed:
        first = sorted(failed)[0]
        raise StepFailed(
            f"wf/{first}",
            "workflow_step_failed",
            f"step {first!r} failed; skipped: {sorted(skipped)}",
        )
    sinks = [s.id for s in spec.steps if not any(s.id in o.needs for o in spec.steps)]
    return PatternResult(
        output="\n".join(outputs[s] for s in sinks),
        agent_id=results[sinks[0]].agent_id,
        details=details,
    )
