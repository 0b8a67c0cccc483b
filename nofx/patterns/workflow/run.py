"""Run a workflow inside a session as planned: every step is a durable ``call_step``, so a
killed runtime resumes the workflow without repeating finished steps (the event store is the
checkpoint).

The scheduling portfolio plans the run (``WorkflowPlanned``): which worker of its pool each
step runs on, and in what order. Each worker then takes its steps in that order, each as soon
as its inputs are done. When reality deviates (a step finishes late, a step fails, the plan
is adapted, a deadline needs more slots) the rest is re-planned from what is running and
what is left (``WorkflowReplanned``); running steps keep their workers. At the end the
planned and the executed makespan are recorded (``WorkflowMakespanRecorded``): the executed
one replays what happened, each worker's steps in the order they ran with their measured
durations, so it is in the agents' time whatever the runtime's time scale.

A step that runs out of attempts fails; its dependants are skipped (StepSkipped) and the
workflow fails naming the step.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from nofx.domain import NewEvent, PatternName
from nofx.errors import ConcurrencyError
from nofx.execution import Execution, PatternResult, StepError, StepResult
from nofx.patterns.common import try_step
from nofx.patterns.hierarchical import hierarchy
from nofx.patterns.pair import pair_rounds
from nofx.patterns.swarm import swarm
from nofx.patterns.workflow.progress import (
    Adaptations,
    Dispatch,
    StepClock,
    executed_makespan_s,
    is_late,
    learned_stats,
    realised_makespan_s,
    render_prompt,
)
from nofx.workflows.adapt import STREAM_TYPE as ADAPT_STREAM_TYPE
from nofx.workflows.adapt import apply_changes, deadline_relief
from nofx.workflows.adapt import stream_id as adapt_stream
from nofx.workflows.analysis import topological_order
from nofx.workflows.learning import LearnedDurations, learned_durations
from nofx.workflows.model import WorkflowSpec
from nofx.workflows.portfolio import PortfolioResult, budget_for, plan

POOL_LIMIT = 4
PATTERN_STEPS = {
    PatternName.PAIR: pair_rounds,
    PatternName.HIERARCHICAL: hierarchy,
    PatternName.SWARM: swarm,
}
REPLAN_BUDGET_SHARE = 0.25  # a re-plan gets a quarter of a first plan's budget
WAKE_S = 0.25  # the dispatcher looks for adaptations and late steps at least this often
LATE_REMAINING = 0.25  # a step past its estimate is planned to need this share of it again


async def run_workflow(execution: Execution) -> PatternResult:
    state = execution.state
    assert state is not None, "a session always starts with SessionRequested"
    adaptations = Adaptations(execution, WorkflowSpec.model_validate(state["request"]["workflow"]))
    outputs: dict[str, str] = {}
    results: dict[str, StepResult] = {}
    failed: dict[str, StepError] = {}
    skipped: set[str] = set()
    measured: dict[str, float] = {}  # step -> agent seconds over every attempt
    started_at: dict[str, float] = {}  # wall clock, for a running step's remaining time
    tasks: dict[asyncio.Task[None], str] = {}
    dispatch = Dispatch()
    sid = execution.session.session_id
    scale = execution.runtime.config.time_scale
    plans: list[PortfolioResult] = []
    stats = learned_stats(execution)  # read once: a run plans with one history
    known: list[LearnedDurations] = []  # durations learned for the current spec, if any
    planned: set[str] = set()
    clock = StepClock(execution)
    seen_adaptations = adaptations.applied

    def skip(step_id: str, because: list[str]) -> None:
        skipped.add(step_id)
        execution.emit(
            "StepSkipped",
            {"step_id": f"wf/{step_id}", "because": because},
            key=f"{sid}/wf/{step_id}/skipped",
        )

    def settled() -> set[str]:
        return set(results) | set(failed) | skipped

    def sizes(spec: WorkflowSpec) -> dict[str, int]:
        limits = adaptations.plan.pool_limits
        out = {}
        for pool in {s.pool for s in spec.steps}:
            busy = sum(1 for (p, w) in dispatch.running if p == pool and w >= 0)
            out[pool] = max(limits.get(pool, POOL_LIMIT), busy)
        return out

    async def replan(reason: str) -> None:
        """Plan what is left: running steps keep their workers, finished ones drop out."""
        spec = adaptations.plan.spec
        ids = {s.id for s in spec.steps}
        for gone in sorted(planned - ids - settled() - set(tasks.values())):
            skip(gone, ["removed by an adaptation"])
        planned.update(ids)
        for node in topological_order(spec):  # steps whose inputs failed are skipped
            if node in settled() or node in tasks.values():
                continue
            blocked = [d for d in spec.step(node).needs if d in failed or d in skipped]
            if blocked:
                skip(node, blocked)
        # a step removed in the instant between its dispatch and its start runs to its end,
        # outside the plan
        running = frozenset(tasks.values()) & ids
        history = learned_durations(spec, stats) if stats else None
        if history is not None and not history.capabilities:
            history = None
        known[:] = [history] if history is not None else []
        remaining: dict[str, float] = {
            s.id: history.expected_s(s.id, s.estimates.duration_s)
            for s in spec.steps
            if history is not None and s.id in history.p50_s
        }
        now = time.monotonic()
        for step_id in running:
            estimate = spec.step(step_id).estimates.duration_s
            if history is not None:
                estimate = history.expected_s(step_id, estimate)
            elapsed = (now - started_at[step_id]) / scale if scale > 0 else 0.0
            # past its estimate it is assumed to need a quarter of it again, not nothing
            remaining[step_id] = max(0.001, estimate - elapsed, LATE_REMAINING * estimate)
        done = frozenset(settled())
        left = len(spec.steps) - len(done)
        first = not plans
        budget = budget_for(left) * (1.0 if first else REPLAN_BUDGET_SHARE)
        result = await asyncio.to_thread(
            plan,
            spec,
            sizes(spec),
            budget_s=budget,
            durations_s=remaining,
            done=done,
            running=running,
        )
        plans.append(result)
        # workers as the plan numbers them -> the workers the running steps are really on
        renumber: dict[tuple[str, int], int] = {}
        for slot in result.schedule.slots:
            where = dispatch.worker_of(slot.step_id)
            if where is not None and where[1] >= 0:
                renumber[(slot.pool, slot.worker)] = where[1]
        queues: dict[tuple[str, int], list[str]] = {}
        for pool, size in sizes(spec).items():
            taken = {w for (p, w) in renumber if p == pool}
            real_taken = {renumber[(p, w)] for (p, w) in renumber if p == pool}
            spare = iter(w for w in range(size) if w not in real_taken)
            for w in range(size):
                if w not in taken:
                    renumber[(pool, w)] = next(spare)
        order = {s: k for k, s in enumerate(topological_order(spec))}
        for slot in sorted(
            result.schedule.slots, key=lambda s: (s.start_s, s.end_s, order[s.step_id])
        ):
            if slot.step_id in running:
                continue
            if slot.end_s <= slot.start_s:
                # planned to take no time, so planned to hold no worker: it runs beside the
                # pool as soon as its inputs are done, not behind a worker's longer steps
                queues[(slot.pool, -1 - len(queues))] = [slot.step_id]
                continue
            queues.setdefault((slot.pool, renumber[(slot.pool, slot.worker)]), []).append(
                slot.step_id
            )
        dispatch.queues = queues
        execution.emit(
            "WorkflowPlanned" if first else "WorkflowReplanned",
            {
                "reason": reason,
                "method": result.method,
                "planned_makespan_s": round(result.makespan_s, 3),
                "lower_bound_s": round(result.lower_bound_s, 3),
                "optimal": result.optimal,
                "budget_s": round(result.budget_s, 3),
                "planning_s": round(result.elapsed_s, 3),
                "members": {k: round(v, 3) for k, v in result.members.items()},
                "durations_from": (
                    {"learned_p50": history.capabilities} if history is not None else "estimates"
                ),
                "running": sorted(running),
                "queues": {f"{p}/{w}": q for (p, w), q in sorted(queues.items())},
            },
            key=f"{sid}/wf/plan/{len(plans)}",
        )

    async def run(step_id: str, pool: str, worker: int) -> None:
        plan_now = adaptations.plan
        step = plan_now.spec.step(step_id)
        everyone = {
            a.agent_id
            for a in execution.runtime.candidates(execution.session.tenant_id, step.capability)
        }
        pin = plan_now.pinned.get(step_id)
        prompt = render_prompt(step.prompt, step.inputs, outputs, plan_now.spec.params)
        runner = PATTERN_STEPS.get(step.pattern)
        if runner is not None:  # the step is a pattern: run it, its steps under wf/<id>/
            try:
                done = await runner(
                    execution,
                    f"wf/{step_id}",
                    prompt,
                    step.capability,
                    execution.session.task.complexity,
                )
            except StepError as exc:
                failed[step_id] = exc
            else:
                outputs[step_id] = done.output
                results[step_id] = StepResult(
                    step_id=f"wf/{step_id}",
                    agent_id=done.agent_id or "",
                    agent_name="",
                    output=done.output,
                    cost_usd=0.0,
                    latency_ms=0.0,
                    input_tokens=0,
                    output_tokens=0,
                )
            measured[step_id] = clock.seconds(step_id)
            return
        result = await try_step(
            execution,
            f"wf/{step_id}",
            step.capability,
            prompt,
            input_tokens=max(1, step.estimates.tokens),
            max_attempts=step.max_attempts,
            exclude=frozenset(everyone - {pin}) if pin else frozenset(),
            context={"estimated_duration_s": step.estimates.duration_s, "workflow_step": step_id},
        )
        measured[step_id] = clock.seconds(step_id)
        if isinstance(result, StepError):
            failed[step_id] = result
        else:
            results[step_id] = result
            outputs[step_id] = result.output

    def start_ready() -> None:
        spec = adaptations.plan.spec
        ids = {s.id for s in spec.steps}
        for where, queue in dispatch.queues.items():
            if where in dispatch.running:
                continue
            while queue:
                head = queue[0]
                if head not in ids:
                    queue.pop(0)
                    if head not in settled():
                        skip(head, ["removed by an adaptation"])
                    continue
                if head in settled():
                    queue.pop(0)
                    continue
                needs = spec.step(head).needs
                blocked = [d for d in needs if d in failed or d in skipped]
                if blocked:
                    queue.pop(0)
                    skip(head, blocked)
                    continue
                if all(d in results for d in needs):
                    queue.pop(0)
                    dispatch.running[where] = head
                    dispatch.ran.append((where[0], where[1], head))
                    started_at[head] = time.monotonic()
                    tasks[asyncio.ensure_future(run(head, *where))] = head
                break

    def waiting_by_pool() -> dict[str, int]:
        """Steps whose inputs are done but whose worker is busy, per pool."""
        out: dict[str, int] = {}
        for where, queue in dispatch.queues.items():
            if queue and where in dispatch.running:
                step = adaptations.plan.spec.step(queue[0]) if queue[0] in ids_now() else None
                if step is not None and all(d in results for d in step.needs):
                    out[where[0]] = out.get(where[0], 0) + 1
        return out

    def ids_now() -> set[str]:
        return {s.id for s in adaptations.plan.spec.steps}

    def relieve_deadline(pool_name: str, busy: int, waiting: int) -> bool:
        """Automatic adaptation when this pool's queue puts the deadline at risk: recorded
        like a user's change (by 'system'), so a resumed run keeps it."""
        plan_now = adaptations.refresh()
        done = settled()
        decided = deadline_relief(
            plan_now,
            done,
            realised_makespan_s(plan_now.spec, execution.history),
            float(execution.session.deadline_s or 0),
            pool_name,
            busy,
            waiting,
            POOL_LIMIT,
        )
        if decided is None:
            return False
        change, reason = decided
        new_plan = apply_changes(plan_now, [change], started=set())
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
                            "started_steps": sorted(done | set(tasks.values())),
                            "plan": new_plan.model_dump(mode="json"),
                        },
                    )
                ],
                expected_version=adaptations.seen,
            )
        except ConcurrencyError:
            return False  # someone adapted the workflow meanwhile: their plan wins
        adaptations.refresh()
        return True

    flagged: set[str] = set()  # steps found running late (each re-plans once)

    def running_late() -> str:
        """A step still running past its p90 (or estimate + 10%), in agent time; only
        meaningful when the runtime sleeps agents' latencies (time scale > 0)."""
        if scale <= 0:
            return ""
        now = time.monotonic()
        spec = adaptations.plan.spec
        ids = ids_now()
        for step_id in sorted(set(tasks.values()) - flagged):
            if step_id not in ids:
                continue
            elapsed = (now - started_at[step_id]) / scale
            step = spec.step(step_id)
            if is_late(step, elapsed, known[0] if known else None):
                flagged.add(step_id)
                return f"step {step_id!r} is still running after {elapsed:.3g}s"
        return ""

    adaptations.refresh()  # changes made before the run (or before a crash) shape the plan
    seen_adaptations = adaptations.applied
    await replan("start")
    relieved: set[str] = set()
    while True:
        adaptations.refresh()
        if adaptations.applied != seen_adaptations:  # a change lands before the next dispatch
            seen_adaptations = adaptations.applied
            await replan("adapted")
        start_ready()
        if execution.session.deadline_s:
            for pool_name, waiting in waiting_by_pool().items():
                if pool_name in relieved:
                    continue
                busy = sum(1 for (p, w) in dispatch.running if p == pool_name and w >= 0)
                if relieve_deadline(pool_name, busy, waiting):
                    relieved.add(pool_name)
                    break
            if adaptations.applied != seen_adaptations:
                continue
        if not tasks:
            left = ids_now() - settled()
            if not left:
                break
            await replan("stalled")  # pragma: no cover - a valid plan never stalls
            start_ready()
            if not tasks:  # pragma: no cover
                raise StepError("wf/dispatch", "workflow_stalled", f"cannot start {sorted(left)}")
            continue
        finished, _ = await asyncio.wait(
            list(tasks), timeout=WAKE_S, return_when=asyncio.FIRST_COMPLETED
        )
        deviation = ""
        for task in finished:
            step_id = tasks.pop(task)
            task.result()  # a bug in a step's bookkeeping is raised, not swallowed
            where = dispatch.worker_of(step_id)
            if where is not None:
                del dispatch.running[where]
            if step_id in failed:
                deviation = deviation or f"step {step_id!r} failed"
            elif step_id in flagged:
                pass  # re-planned when it ran late already
            elif step_id in ids_now() and is_late(
                adaptations.plan.spec.step(step_id),
                measured.get(step_id, 0.0),
                known[0] if known else None,
            ):
                deviation = deviation or (
                    f"step {step_id!r} took {measured[step_id]:.3g}s, planned "
                    f"{adaptations.plan.spec.step(step_id).estimates.duration_s:.3g}s"
                )
        deviation = deviation or running_late()
        if deviation and ids_now() - settled() - set(tasks.values()):
            await replan(deviation)
    spec = adaptations.plan.spec
    planned_s = plans[0].makespan_s
    executed = executed_makespan_s(spec, dispatch.ran, measured)
    makespans = {
        "planned_makespan_s": round(planned_s, 3),
        "executed_makespan_s": round(executed, 3),
        "executed_over_planned": round(executed / planned_s, 4) if planned_s else None,
        "replans": len(plans) - 1,
        "planned_by": plans[0].method,
        "planned_from": "learned p50" if known else "estimates",
    }
    execution.emit("WorkflowMakespanRecorded", makespans, key=f"{sid}/wf/makespan")
    details: dict[str, Any] = {
        "steps": len(spec.steps),
        "done": len(results),
        "failed": sorted(failed),
        "skipped": sorted(skipped),
        "adaptations": adaptations.applied,
        **makespans,
        "actual_makespan_s": round(executed, 3),
        "planned_cost_usd": round(sum(s.estimates.cost_usd for s in spec.steps), 6),
    }
    if failed:
        first = sorted(failed)[0]
        raise StepError(
            f"wf/{first}",
            "workflow_step_failed",
            f"step {first!r} failed; skipped: {sorted(skipped)}",
        )
    sinks = [s.id for s in spec.steps if not any(s.id in o.needs for o in spec.steps)]
    return PatternResult(
        output="\n".join(outputs[s] for s in sinks if s in outputs),
        agent_id=results[next(s for s in sinks if s in results)].agent_id,
        details=details,
    )
