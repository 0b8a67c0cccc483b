"""Improving on the rules: iterated local search, then CP-SAT hinted with the best schedule so far."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Sequence

from nofx.workflows.portfolio.decoders import _topological, justify, serial_sgs
from nofx.workflows.portfolio.problem import Problem, Solution


def local_search(
    problem: Problem, best: Solution, deadline: float, target: int, seed: int = 7
) -> Solution:
    """Iterated local search over priority lists: move one step (or swap two) within the
    window its dependencies allow, decode with insertion scheduling, keep what is no worse,
    and restart from the best after a run of failures. Stops at ``deadline`` or ``target``."""
    rng = random.Random(seed)
    reverse = problem.reversed()
    order = sorted(range(problem.n), key=lambda i: (best.starts[i], i))
    order = _topological(problem, order)
    current = justify(problem, serial_sgs(problem, order), reverse)
    if current.makespan < best.makespan:
        best = current
    order = sorted(range(problem.n), key=lambda i: (current.starts[i], i))
    movable = [i for i in range(problem.n) if i not in problem.running]
    failures = 0
    while time.perf_counter() < deadline and best.makespan > target and movable:
        candidate = list(order)
        for _ in range(1 + (failures > 50) + (failures > 200)):
            step = rng.choice(movable)
            k = candidate.index(step)
            candidate.pop(k)
            lo = max((candidate.index(p) + 1 for p in problem.preds[step]), default=0)
            hi = min((candidate.index(c) for c in problem.succs[step]), default=len(candidate))
            candidate.insert(rng.randint(lo, hi) if hi >= lo else lo, step)
        decoded = serial_sgs(problem, _topological(problem, candidate))
        if rng.random() < 0.2:
            decoded = justify(problem, decoded, reverse)
        if decoded.makespan <= current.makespan:
            if decoded.makespan < current.makespan:
                failures = 0
            current = decoded
            order = sorted(range(problem.n), key=lambda i: (decoded.starts[i], i))
            if decoded.makespan < best.makespan:
                best = decoded
        else:
            failures += 1
        if failures > 400:
            current, failures = best, 0
            order = sorted(range(problem.n), key=lambda i: (best.starts[i], i))
    return best


def cp_sat(
    problem: Problem, hint: Solution, bound: int, time_limit_s: float, seed: int = 7
) -> tuple[Solution, int, bool]:
    """CP-SAT from the best schedule so far: (solution, proven bound, optimal).

    One cumulative per pool (so identical workers are never told apart: no worker symmetry
    to break; workers are assigned afterwards by start time) and per resource. Steps that
    are interchangeable (same pool, duration, resources, predecessors and successors) are
    ordered by index, breaking the remaining symmetry. The makespan's domain starts at the
    proven lower bound, so a schedule meeting it stops the search at once."""
    from ortools.sat.python import cp_model

    n = problem.n
    horizon = hint.makespan
    model = cp_model.CpModel()
    start = [model.new_int_var(0, horizon - problem.duration[i], f"s{i}") for i in range(n)]
    intervals = [
        model.new_fixed_size_interval_var(start[i], problem.duration[i], "") for i in range(n)
    ]
    for i in range(n):
        if i in problem.running:
            model.add(start[i] == 0)
        for p in problem.preds[i]:
            model.add(start[i] >= start[p] + problem.duration[p])
    for p, size in enumerate(problem.pool_size):
        pooled = [intervals[i] for i in range(n) if problem.pool[i] == p and problem.duration[i]]
        if len(pooled) > size:
            model.add_cumulative(pooled, [1] * len(pooled), size)
    for need, cap in zip(problem.demand, problem.resource_capacity, strict=True):
        users = [i for i in range(n) if need[i] and problem.duration[i]]
        if users:
            model.add_cumulative([intervals[i] for i in users], [need[i] for i in users], cap)
    classes: dict[tuple[object, ...], list[int]] = {}
    for i in range(n):
        if i in problem.running:
            continue
        signature = (
            problem.pool[i],
            problem.duration[i],
            problem.preds[i],
            problem.succs[i],
            tuple(need[i] for need in problem.demand),
        )
        classes.setdefault(signature, []).append(i)
    for twins in classes.values():
        for a, b in itertools.pairwise(twins):
            model.add(start[a] <= start[b])
    makespan = model.new_int_var(min(bound, horizon), horizon, "makespan")
    sinks = [i for i in range(n) if not problem.succs[i]]
    for i in sinks:
        model.add(makespan >= start[i] + problem.duration[i])
    model.minimize(makespan)
    hinted = sorted(range(n), key=lambda i: (hint.starts[i], i))
    for i in hinted:
        model.add_hint(start[i], hint.starts[i])
    model.add_hint(makespan, hint.makespan)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.05, time_limit_s)
    solver.parameters.num_workers = 2
    solver.parameters.random_seed = seed
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return hint, bound, False
    starts = [solver.value(start[i]) for i in range(n)]
    solution = _assign_workers(problem, starts)
    proven = max(bound, round(solver.best_objective_bound))
    if solution.makespan > hint.makespan:  # pragma: no cover - the hint bounds the horizon
        return hint, proven, False
    return solution, proven, status == cp_model.OPTIMAL or solution.makespan <= proven


def _assign_workers(problem: Problem, starts: Sequence[int]) -> Solution:
    """Workers for a schedule that respects each pool's size: by start time, the lowest free
    worker (interval colouring, always possible for identical workers)."""
    n = problem.n
    workers = [0] * n
    free_at: list[list[int]] = [[0] * size for size in problem.pool_size]
    for i in sorted(range(n), key=lambda i: (starts[i], problem.duration[i] > 0, i)):
        slots = free_at[problem.pool[i]]
        w = next((w for w, t in enumerate(slots) if t <= starts[i]), 0)
        workers[i] = w
        if problem.duration[i]:
            slots[w] = starts[i] + problem.duration[i]
    ends = (s + d for s, d in zip(starts, problem.duration, strict=True))
    return Solution(tuple(starts), tuple(workers), max(ends, default=0))
