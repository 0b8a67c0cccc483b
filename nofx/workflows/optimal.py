"""Exact scheduling with OR-tools CP-SAT: the optimal makespan for K identical workers.

``solve_exact`` is the plain CP-SAT model (one cumulative, hinted by list scheduling), kept
as a reference. ``best_schedule`` is what the planner uses: the scheduling portfolio
(``nofx.workflows.portfolio``), with which member won and the proven lower bound.

Durations are solved in milliseconds (integers); steps of unknown duration count as 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from nofx.workflows.model import WorkflowSpec
from nofx.workflows.portfolio import plan
from nofx.workflows.scheduler import schedule


@dataclass(frozen=True)
class ExactResult:
    makespan_s: float
    lower_bound_s: float
    optimal: bool
    starts_s: dict[str, float]


def solve_exact(spec: WorkflowSpec, workers: int, time_limit_s: float = 5.0) -> ExactResult:
    """The minimum makespan for ``workers`` identical workers (all steps in one pool)."""
    from ortools.sat.python import cp_model

    ms = {s.id: max(0, round(s.estimates.duration_s * 1000)) for s in spec.steps}
    horizon = sum(ms.values()) or 1
    model = cp_model.CpModel()
    start = {sid: model.new_int_var(0, horizon, f"s_{sid}") for sid in ms}
    end = {sid: model.new_int_var(0, horizon, f"e_{sid}") for sid in ms}
    intervals = [model.new_interval_var(start[i], ms[i], end[i], f"i_{i}") for i in ms]
    for step in spec.steps:
        for dep in step.needs:
            model.add(start[step.id] >= end[dep])
    model.add_cumulative(intervals, [1] * len(intervals), workers)
    makespan = model.new_int_var(0, horizon, "makespan")
    model.add_max_equality(makespan, list(end.values()))
    model.minimize(makespan)
    hint = schedule(spec, {"default": workers})
    for slot in hint.slots:
        model.add_hint(start[slot.step_id], round(slot.start_s * 1000))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit_s
    solver.parameters.num_workers = 2
    solver.parameters.random_seed = 7
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        starts = {slot.step_id: slot.start_s for slot in hint.slots}
        return ExactResult(hint.makespan_s, 0.0, False, starts)  # pragma: no cover
    return ExactResult(
        makespan_s=solver.objective_value / 1000,
        lower_bound_s=solver.best_objective_bound / 1000,
        optimal=status == cp_model.OPTIMAL,
        starts_s={sid: solver.value(var) / 1000 for sid, var in start.items()},
    )


@dataclass(frozen=True)
class PlannedSchedule:
    makespan_s: float
    method: str  # the portfolio member that won, with "(optimal)" when it meets the bound
    lower_bound_s: float | None
    budget_s: float = 0.0


def best_schedule(
    spec: WorkflowSpec, workers: int, time_limit_s: float | None = None
) -> PlannedSchedule:
    """The planner's schedule for ``workers`` identical workers: the scheduling portfolio
    (rules, local search, CP-SAT; see ``nofx.workflows.portfolio``) within ``time_limit_s``,
    or the budget it derives from the DAG's size."""
    result = plan(spec, {"default": workers}, budget_s=time_limit_s)
    method = result.method + (" (optimal)" if result.optimal else "")
    return PlannedSchedule(result.makespan_s, method, result.lower_bound_s, result.budget_s)
