"""Run a workflow inside a session: every step is a durable ``call_step``, so a killed runtime
resumes the workflow without repeating finished steps (the event store is the checkpoint).

Steps start when their inputs are done, highest upward rank first, within each
pool's concurrency limit. A step that runs out of attempts fails; its dependants
are skipped (StepSkipped) and the workflow fails naming the step.
"""

from __future__ import annotations

import asyncio

from nofx.domain import Event, NewEvent
from nofx.errors import ConcurrencyError
from nofx.patterns.common import try_step
from nofx.pools import PoolGate
from nofx.runtime import PatternResult, SessionExecution, StepFailed, StepResult
from nofx.workflows.adapt import STREAM_TYPE as ADAPT_STREAM_TYPE
from nofx.workflows.adapt import Plan, apply_changes, deadline_relief
from nofx.workflows.adapt import stream_id as adapt_stream
from nofx.workflows.analysis import analyze, topological_order
from nofx.workflows.model import StepSpec, WorkflowSpec
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


class Adaptations:
    """The running workflow's plan, kept current from its ``workflow-<session>`` stream."""

    def __init__(self, execution: SessionExecution, initial: WorkflowSpec) -> None:
        self.store = execution.runtime.store
        self.stream = adapt_stream(execution.session.session_id)
        self.plan = Plan(spec=initial)
        self.seen = 0
        self.applied = 0

    def refresh(self) -> Plan:
        for event in self.store.read_stream(self.stream, after_seq=self.seen):
            self.seen = event.seq
            if event.type == "WorkflowAdapted":
                self.plan = Plan.model_validate(event.payload["plan"])
                self.applied += 1
        return self.plan


async def run_workflow(execution: SessionExecution) -> PatternResult:
    state = execution.state
    assert state is not None, "a session always starts with SessionRequested"
    adaptations = Adaptations(execution, WorkflowSpec.model_validate(state["request"]["workflow"]))
    finished: dict[str, asyncio.Event] = {}
    tasks: dict[str, asyncio.Task[None]] = {}
    pools: dict[str, PoolGate] = {}
    outputs: dict[str, str] = {}
    results: dict[str, StepResult] = {}
    failed: dict[str, StepFailed] = {}
    skipped: set[str] = set()
    sid = execution.session.session_id

    def skip(step_id: str, because: list[str]) -> None:
        skipped.add(step_id)
        execution.emit(
            "StepSkipped",
            {"step_id": f"wf/{step_id}", "because": because},
            key=f"{sid}/wf/{step_id}/skipped",
        )

    async def ready(step_id: str) -> StepSpec | None:
        """Wait for the step's dependencies as the current plan has them; None if removed."""
        while True:
            launch_new_steps()  # a replaced step may now need a step just added
            plan = adaptations.plan
            if step_id not in {s.id for s in plan.spec.steps}:
                return None
            step = plan.spec.step(step_id)
            waiting = [d for d in step.needs if not finished[d].is_set()]
            if not waiting:
                return step
            await asyncio.wait(
                [asyncio.ensure_future(finished[d].wait()) for d in waiting],
                return_when=asyncio.FIRST_COMPLETED,
            )

    async def run(step_id: str) -> None:
        try:
            step = await ready(step_id)
            if step is None:
                skip(step_id, ["removed by an adaptation"])
                return
            blocked = [d for d in step.needs if d in failed or d in skipped]
            if blocked:
                skip(step_id, blocked)
                return
            plan = adaptations.plan
            limit = plan.pool_limits.get(step.pool, POOL_LIMIT)
            pool = pools.setdefault(step.pool, PoolGate(limit))
            if pool.in_flight >= pool.capacity and execution.session.deadline_s:
                limit = relieve_deadline(step.pool, pool) or limit
            if pool.capacity != limit:
                await pool.resize(limit)
            everyone = {
                a.agent_id
                for a in execution.runtime.candidates(execution.session.tenant_id, step.capability)
            }
            pin = plan.pinned.get(step_id)
            async with pool.slot(step.priority):
                result = await try_step(
                    execution,
                    f"wf/{step_id}",
                    step.capability,
                    render_prompt(step.prompt, step.inputs, outputs, plan.spec.params),
                    input_tokens=max(1, step.estimates.tokens),
                    max_attempts=step.max_attempts,
                    exclude=frozenset(everyone - {pin}) if pin else frozenset(),
                )
            if isinstance(result, StepFailed):
                failed[step_id] = result
            else:
                results[step_id] = result
                outputs[step_id] = result.output
        finally:
            finished[step_id].set()

    def relieve_deadline(pool_name: str, gate: PoolGate) -> int | None:
        """Automatic adaptation when this pool's queue puts the deadline at risk: recorded
        like a user's change (by 'system'), so a resumed run keeps it."""
        plan = adaptations.refresh()
        done = set(results) | set(failed) | skipped
        decided = deadline_relief(
            plan,
            done,
            realised_makespan_s(plan.spec, execution.history),
            float(execution.session.deadline_s or 0),
            pool_name,
            gate.in_flight,
            gate.queued + 1,
            POOL_LIMIT,
        )
        if decided is None:
            return None
        change, reason = decided
        new_plan = apply_changes(plan, [change], started=set())
        try:
            execution.runtime.store.append(
                adapt_stream(sid),
                ADAPT_STREAM_TYPE,
                execution.session.tenant_id,
                [
                    NewEvent(
                        type="WorkflowAdapted",
                        payload={
                            "session_id": sid,
                            "changes": [change.model_dump(mode="json")],
                            "reason": reason,
                            "by": "system",
                            "started_steps": sorted(done),
                            "plan": new_plan.model_dump(mode="json"),
                        },
                    )
                ],
                expected_version=adaptations.seen,
            )
        except ConcurrencyError:
            return None  # someone adapted the workflow meanwhile: their plan wins
        return adaptations.refresh().pool_limits.get(pool_name)

    def launch_new_steps() -> None:
        spec = adaptations.refresh().spec
        rank = upward_rank(spec)
        for step in sorted(spec.steps, key=lambda s: -rank[s.id]):
            if step.id not in tasks:
                finished.setdefault(step.id, asyncio.Event())
                tasks[step.id] = asyncio.ensure_future(run(step.id))

    launch_new_steps()
    while not all(t.done() for t in tasks.values()):
        await asyncio.wait(
            [t for t in tasks.values() if not t.done()], return_when=asyncio.FIRST_COMPLETED
        )
        launch_new_steps()  # steps an adaptation added while others ran
    for task in tasks.values():
        task.result()  # a bug in a step's bookkeeping is raised, not swallowed
    spec = adaptations.plan.spec
    details = {
        "steps": len(spec.steps),
        "done": len(results),
        "failed": sorted(failed),
        "skipped": sorted(skipped),
        "adaptations": adaptations.applied,
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
