"""The portfolio itself: every member within the time budget, the best kept, and how it was found."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from nofx.workflows.model import WorkflowSpec
from nofx.workflows.portfolio.decoders import rules
from nofx.workflows.portfolio.problem import Problem, Solution, lower_bound
from nofx.workflows.portfolio.search import cp_sat, local_search
from nofx.workflows.scheduler import Schedule, Slot

MAX_BUDGET_S = 4.0
MAX_IMPROVED_STEPS = 3000  # above this, the rules only: local search and CP-SAT cost too much
MAX_EXACT_STEPS = 600


def budget_for(steps: int) -> float:
    """Seconds the planner may spend: 0.3 s plus 15 ms a step, at most ``MAX_BUDGET_S``."""
    return min(MAX_BUDGET_S, 0.3 + 0.015 * steps)


@dataclass(frozen=True)
class PortfolioResult:
    """The chosen schedule and how it was found."""

    schedule: Schedule
    method: str  # the member whose schedule won
    lower_bound_s: float  # proven: no schedule is shorter
    optimal: bool  # the makespan meets the proven bound
    budget_s: float
    elapsed_s: float
    members: dict[str, float] = field(default_factory=dict)  # makespan (s) per member tried

    @property
    def makespan_s(self) -> float:
        return self.schedule.makespan_s

    def order(self) -> list[str]:
        """Step ids by planned start (then pool and worker)."""
        slots = sorted(self.schedule.slots, key=lambda s: (s.start_s, s.pool, s.worker))
        return [s.step_id for s in slots]


def to_schedule(problem: Problem, solution: Solution, cost_usd: float = 0.0) -> Schedule:
    slots = [
        Slot(
            problem.ids[i],
            problem.pool_names[problem.pool[i]],
            solution.workers[i],
            solution.starts[i] / 1000,
            (solution.starts[i] + problem.duration[i]) / 1000,
        )
        for i in sorted(range(problem.n), key=lambda i: (solution.starts[i], i))
    ]
    return Schedule(slots, solution.makespan / 1000, cost_usd)


def solve(
    problem: Problem,
    *,
    budget_s: float | None = None,
    seed: int = 7,
    exact: bool = True,
) -> tuple[Solution, dict[str, object]]:
    """The portfolio over a ``Problem``: (best solution, how). See ``plan``."""
    began = time.perf_counter()
    budget = budget_for(problem.n) if budget_s is None else budget_s
    bound = lower_bound(problem)
    members: dict[str, int] = {}
    best: Solution | None = None
    method = ""
    for name, rule in rules(problem).items():
        solution = rule()
        members[name] = solution.makespan
        if best is None or solution.makespan < best.makespan:
            best, method = solution, name
    assert best is not None
    optimal = best.makespan <= bound
    if not optimal and problem.n <= MAX_IMPROVED_STEPS and budget > 0:
        share = 0.35 if exact and problem.n <= MAX_EXACT_STEPS else 1.0
        deadline = began + budget * share
        improved = local_search(problem, best, deadline, bound, seed)
        members["iterated local search"] = improved.makespan
        if improved.makespan < best.makespan:
            best, method = improved, "iterated local search"
        optimal = best.makespan <= bound
    if not optimal and exact and problem.n <= MAX_EXACT_STEPS and budget > 0:
        try:  # the first import of OR-tools takes a second or more: inside the budget
            import ortools.sat.python.cp_model  # noqa: F401
        except ImportError:  # pragma: no cover - ortools ships with nofx
            exact = False
        left = budget - (time.perf_counter() - began)
        if left > 0.05:
            try:
                solved, bound, optimal = cp_sat(problem, best, bound, left, seed)
            except ImportError:  # pragma: no cover - ortools ships with nofx
                solved = best
            members["CP-SAT"] = solved.makespan
            if solved.makespan < best.makespan:
                best, method = solved, "CP-SAT"
            optimal = optimal or best.makespan <= bound
    return best, {
        "method": method,
        "bound": min(bound, best.makespan),
        "optimal": optimal or best.makespan <= bound,
        "budget_s": budget,
        "elapsed_s": time.perf_counter() - began,
        "members": members,
    }


def plan(
    spec: WorkflowSpec,
    pool_sizes: Mapping[str, int] | None = None,
    capacities: Mapping[str, float] | None = None,
    *,
    budget_s: float | None = None,
    seed: int = 7,
    exact: bool = True,
    durations_s: Mapping[str, float] | None = None,
    done: frozenset[str] = frozenset(),
    running: frozenset[str] = frozenset(),
) -> PortfolioResult:
    """The best schedule the portfolio finds for ``spec`` within the budget (default:
    ``budget_for(steps)``), with the proven lower bound and every member's makespan."""
    problem = Problem.from_spec(
        spec, pool_sizes, capacities, durations_s=durations_s, done=done, running=running
    )
    if problem.n == 0:
        return PortfolioResult(Schedule([], 0.0, 0.0), "empty", 0.0, True, 0.0, 0.0)
    solution, how = solve(problem, budget_s=budget_s, seed=seed, exact=exact)
    cost = sum(s.estimates.cost_usd for s in spec.steps if s.id not in done)
    members = how["members"]
    assert isinstance(members, dict)
    return PortfolioResult(
        schedule=to_schedule(problem, solution, cost),
        method=str(how["method"]),
        lower_bound_s=int(how["bound"]) / 1000,  # type: ignore[call-overload]
        optimal=bool(how["optimal"]),
        budget_s=float(how["budget_s"]),  # type: ignore[arg-type]
        elapsed_s=float(how["elapsed_s"]),  # type: ignore[arg-type]
        members={k: v / 1000 for k, v in members.items()},
    )
