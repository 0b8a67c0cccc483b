"""The planner's scheduler: a portfolio of rules, an improvement step and CP-SAT, never worse
than its best member.

No single rule is strong on every DAG shape. Upward rank (critical path first) is right for
deep chains and wrong for wide levels of independent steps, where the problem is bin
packing and longest-first (LPT) wins; a look-ahead on the work a step unlocks helps fork-join
shapes; HEFT-style insertion fills idle gaps when pools of different sizes interleave. So
``plan`` runs them all, improves the best with iterated local search over priority lists
(with forward-backward justification), then hands the best to CP-SAT as a hint, and stops as
soon as a schedule meets the proven lower bound. The time budget grows with the DAG
(``budget_for``) and is reported with the result, as are every rule's makespan and which
member won.

Everything here is pure and deterministic for a seed except CP-SAT's wall-clock limit.
Durations are integer milliseconds inside (CP-SAT needs integers); results are seconds.
A step runs in one pool (``StepSpec.pool``) whose size is its number of workers; a step's
``resources`` (e.g. ``{"memory_gb": 4}``) count against ``capacities`` when one is given
for that resource, across all pools.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from nofx.errors import ValidationError
from nofx.workflows.analysis import topological_order
from nofx.workflows.model import WorkflowSpec
from nofx.workflows.scheduler import Schedule, Slot

DEFAULT_POOL_SIZE = 4
MAX_BUDGET_S = 4.0
MAX_IMPROVED_STEPS = 3000  # above this, the rules only: local search and CP-SAT cost too much
MAX_EXACT_STEPS = 600
RESOURCE_SCALE = 1000  # resources are solved in thousandths


@dataclass(frozen=True)
class Problem:
    """A workflow reduced to what scheduling needs, indexed 0..n-1 in topological order."""

    ids: tuple[str, ...]
    duration: tuple[int, ...]  # ms
    preds: tuple[tuple[int, ...], ...]
    succs: tuple[tuple[int, ...], ...]
    pool: tuple[int, ...]
    pool_names: tuple[str, ...]
    pool_size: tuple[int, ...]
    priority: tuple[int, ...]
    demand: tuple[tuple[int, ...], ...] = ()  # per resource, per step
    resource_names: tuple[str, ...] = ()
    resource_capacity: tuple[int, ...] = ()
    running: frozenset[int] = frozenset()  # already started: must start at 0

    @property
    def n(self) -> int:
        return len(self.ids)

    @classmethod
    def from_spec(
        cls,
        spec: WorkflowSpec,
        pool_sizes: Mapping[str, int] | None = None,
        capacities: Mapping[str, float] | None = None,
        *,
        durations_s: Mapping[str, float] | None = None,
        done: frozenset[str] = frozenset(),
        running: frozenset[str] = frozenset(),
    ) -> Problem:
        """``durations_s`` overrides estimates (a running step's remaining time); ``done``
        steps are left out (their dependants no longer wait for them); ``running`` steps hold
        a worker from time 0."""
        sizes = dict(pool_sizes or {})
        default = sizes.get("default", DEFAULT_POOL_SIZE)
        steps = {s.id: s for s in spec.steps}
        order = [i for i in topological_order(spec) if i not in done]
        index = {sid: k for k, sid in enumerate(order)}
        pools: dict[str, int] = {}
        for sid in order:
            pools.setdefault(steps[sid].pool, len(pools))
        capacity = {k: v for k, v in (capacities or {}).items() if v > 0}
        names = tuple(sorted(r for r in capacity if any(r in steps[s].resources for s in order)))
        demand = tuple(
            tuple(round(steps[sid].resources.get(r, 0.0) * RESOURCE_SCALE) for sid in order)
            for r in names
        )
        resource_capacity = tuple(math.floor(capacity[r] * RESOURCE_SCALE) for r in names)
        for r, (need, cap) in enumerate(zip(demand, resource_capacity, strict=True)):
            worst = max(range(len(order)), key=need.__getitem__)
            if need[worst] > cap:
                raise ValidationError(
                    f"step {order[worst]!r} needs {need[worst] / RESOURCE_SCALE:g} "
                    f"{names[r]}, more than the {cap / RESOURCE_SCALE:g} available",
                    hint=f"raise the {names[r]} capacity or lower the step's resources",
                )
        over = durations_s or {}
        preds = tuple(
            tuple(sorted(index[d] for d in steps[sid].needs if d in index)) for sid in order
        )
        succs: list[list[int]] = [[] for _ in order]
        for k, ps in enumerate(preds):
            for p in ps:
                succs[p].append(k)
        return cls(
            ids=tuple(order),
            duration=tuple(
                max(0, round(over.get(sid, steps[sid].estimates.duration_s) * 1000))
                for sid in order
            ),
            preds=preds,
            succs=tuple(tuple(s) for s in succs),
            pool=tuple(pools[steps[sid].pool] for sid in order),
            pool_names=tuple(pools),
            pool_size=tuple(max(1, sizes.get(name, default)) for name in pools),
            priority=tuple(steps[sid].priority for sid in order),
            demand=demand,
            resource_names=names,
            resource_capacity=resource_capacity,
            running=frozenset(index[s] for s in running if s in index),
        )

    def reversed(self) -> Problem:
        """The same problem with every edge turned round: for backward (right) justification."""
        return Problem(
            ids=self.ids,
            duration=self.duration,
            preds=self.succs,
            succs=self.preds,
            pool=self.pool,
            pool_names=self.pool_names,
            pool_size=self.pool_size,
            priority=self.priority,
            demand=self.demand,
            resource_names=self.resource_names,
            resource_capacity=self.resource_capacity,
        )


@dataclass(frozen=True)
class Solution:
    starts: tuple[int, ...]
    workers: tuple[int, ...]
    makespan: int


def upward_ranks(problem: Problem) -> list[int]:
    """A step's duration plus the longest chain after it (HEFT's upward rank)."""
    rank = [0] * problem.n
    for i in reversed(range(problem.n)):
        rank[i] = problem.duration[i] + max((rank[c] for c in problem.succs[i]), default=0)
    return rank


def descendant_work(problem: Problem) -> list[int]:
    """Total duration of every step after each step (the work it unlocks)."""
    reach = [0] * problem.n
    for i in reversed(range(problem.n)):
        bits = 0
        for c in problem.succs[i]:
            bits |= reach[c] | (1 << c)
        reach[i] = bits
    work = []
    for bits in reach:
        total, k = 0, 0
        while bits:
            if bits & 1:
                total += problem.duration[k]
            bits >>= 1
            k += 1
        work.append(total)
    return work


def lower_bound(problem: Problem) -> int:
    """No schedule beats the longest chain, nor any pool's or resource's work over its size."""
    if problem.n == 0:
        return 0
    bound = max(upward_ranks(problem))
    for p, size in enumerate(problem.pool_size):
        work = sum(d for d, q in zip(problem.duration, problem.pool, strict=True) if q == p)
        bound = max(bound, -(-work // size))
    for need, cap in zip(problem.demand, problem.resource_capacity, strict=True):
        if cap > 0:
            work = sum(d * r for d, r in zip(problem.duration, need, strict=True))
            bound = max(bound, -(-work // cap))
    return bound


# -- decoders: a priority key or a priority list in, a feasible schedule out -----------------


def parallel_sgs(problem: Problem, key: Sequence[tuple[int, ...]]) -> Solution:
    """Time-driven list scheduling: whenever a worker frees, start the ready steps with the
    smallest key that fit (their pool has a worker, their resources are free)."""
    n = problem.n
    waiting = [len(p) for p in problem.preds]
    ready: list[tuple[tuple[int, ...], int]] = []
    for i in range(n):
        if not waiting[i]:
            bisect.insort(ready, (key[i], i))
    free = [list(range(size)) for size in problem.pool_size]
    used = [0] * len(problem.resource_names)
    starts, workers = [0] * n, [0] * n
    running: list[tuple[int, int]] = []
    now = 0
    left = n
    while left:
        kept: list[tuple[tuple[int, ...], int]] = []
        for item in ready:
            i = item[1]
            pool = free[problem.pool[i]]
            if pool and all(
                used[r] + problem.demand[r][i] <= problem.resource_capacity[r]
                for r in range(len(used))
            ):
                workers[i] = pool.pop(0)
                starts[i] = now
                for r in range(len(used)):
                    used[r] += problem.demand[r][i]
                heapq.heappush(running, (now + problem.duration[i], i))
            else:
                kept.append(item)
        ready = kept
        now, done = heapq.heappop(running)
        batch = [done]
        while running and running[0][0] == now:
            batch.append(heapq.heappop(running)[1])
        for j in batch:
            left -= 1
            bisect.insort(free[problem.pool[j]], workers[j])
            for r in range(len(used)):
                used[r] -= problem.demand[r][j]
            for c in problem.succs[j]:
                waiting[c] -= 1
                if not waiting[c]:
                    bisect.insort(ready, (key[c], c))
    ends = (s + d for s, d in zip(starts, problem.duration, strict=True))
    return Solution(tuple(starts), tuple(workers), max(ends, default=0))


def serial_sgs(problem: Problem, order: Sequence[int]) -> Solution:
    """Insertion scheduling (HEFT-style): steps in ``order`` (a topological order), each at the
    earliest time, on any worker of its pool, where it fits, filling idle gaps."""
    n = problem.n
    starts, ends, workers = [0] * n, [0] * n, [0] * n
    busy: list[list[list[tuple[int, int]]]] = [[[] for _ in range(s)] for s in problem.pool_size]
    placed: list[int] = []
    resources = len(problem.resource_names)
    for i in order:
        d = problem.duration[i]
        earliest = max((ends[p] for p in problem.preds[i]), default=0)

        def gap(timeline: list[tuple[int, int]], t: int, d: int = d) -> int:
            if d == 0:
                return t  # takes no time on any worker
            for s, e in timeline:  # sorted, disjoint
                if e <= t:
                    continue
                if s >= t + d:
                    break
                t = e
            return t

        timelines = busy[problem.pool[i]]
        if d == 0:  # takes no time: at its earliest, on a worker idle then if there is one
            t = earliest
            idle = [w for w, line in enumerate(timelines) if not any(a <= t < b for a, b in line)]
            best = idle[0] if idle else 0
        elif not resources:
            best = min(range(len(timelines)), key=lambda w: (gap(timelines[w], earliest), w))
            t = gap(timelines[best], earliest)
        else:
            candidates = sorted({earliest, *(ends[j] for j in placed if ends[j] > earliest)})
            t, best = earliest, 0
            for t in candidates:
                fitting = [w for w in range(len(timelines)) if gap(timelines[w], t) == t]
                if fitting and _resources_fit(problem, placed, starts, ends, i, t):
                    best = fitting[0]
                    break
        starts[i], ends[i], workers[i] = t, t + d, best
        if d:
            bisect.insort(timelines[best], (t, t + d))
        placed.append(i)
    return Solution(tuple(starts), tuple(workers), max(ends, default=0))


def _resources_fit(
    problem: Problem, placed: list[int], starts: list[int], ends: list[int], i: int, t: int
) -> bool:
    d = problem.duration[i]
    if d == 0:
        return True
    overlapping = [j for j in placed if starts[j] < t + d and ends[j] > t and ends[j] > starts[j]]
    points = [t, *(starts[j] for j in overlapping if starts[j] > t)]
    for r, need in enumerate(problem.demand):
        if not need[i]:
            continue
        for point in points:
            total = sum(need[j] for j in overlapping if starts[j] <= point < ends[j])
            if total + need[i] > problem.resource_capacity[r]:
                return False
    return True


def justify(problem: Problem, solution: Solution, reverse: Problem) -> Solution:
    """Forward-backward improvement: shift every step as late as possible (serial scheduling
    of the reversed DAG in order of finish), then as early as possible in order of start.
    Never worse in practice; the caller keeps the better of the two anyway."""
    if problem.running or problem.n == 0:
        return solution
    ends = [s + d for s, d in zip(solution.starts, problem.duration, strict=True)]
    backward = serial_sgs(reverse, sorted(range(problem.n), key=lambda i: (-ends[i], -i)))
    late = [
        backward.makespan - s - d for s, d in zip(backward.starts, problem.duration, strict=True)
    ]
    forward = serial_sgs(problem, sorted(range(problem.n), key=lambda i: (late[i], i)))
    return forward if forward.makespan <= solution.makespan else solution


# -- the rules --------------------------------------------------------------------------------


def rules(problem: Problem) -> dict[str, Callable[[], Solution]]:
    """Every rule of the portfolio by name. Step priorities come first in each key."""
    rank = upward_ranks(problem)
    # running steps first, then the user's priorities, then the rule
    prio = [10**6 if i in problem.running else p for i, p in enumerate(problem.priority)]
    dur = problem.duration
    size = max(problem.pool_size)

    def lookahead() -> Solution:
        unlocked = descendant_work(problem)
        return parallel_sgs(
            problem, [(-prio[i], -(rank[i] + unlocked[i] // size), i) for i in range(problem.n)]
        )

    def heft() -> Solution:
        order = sorted(range(problem.n), key=lambda i: (-prio[i], -rank[i], i))
        return serial_sgs(problem, _topological(problem, order))

    return {
        "upward rank": lambda: parallel_sgs(
            problem, [(-prio[i], -rank[i], i) for i in range(problem.n)]
        ),
        "longest first (LPT)": lambda: parallel_sgs(
            problem, [(-prio[i], -dur[i], -rank[i], i) for i in range(problem.n)]
        ),
        "critical path with look-ahead": lookahead,
        "HEFT insertion": heft,
    }


def _topological(problem: Problem, preferred: Sequence[int]) -> list[int]:
    """``preferred`` repaired into a topological order: each step as early as its position
    allows once its predecessors are placed (running steps first)."""
    position = {i: k for k, i in enumerate(preferred)}
    waiting = [len(p) for p in problem.preds]
    heap = [(0 if i in problem.running else 1, position[i], i) for i in range(problem.n)]
    heap = [h for h in heap if not waiting[h[2]]]
    heapq.heapify(heap)
    out = []
    while heap:
        *_, i = heapq.heappop(heap)
        out.append(i)
        for c in problem.succs[i]:
            waiting[c] -= 1
            if not waiting[c]:
                heapq.heappush(heap, (0 if c in problem.running else 1, position[c], c))
    return out


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


# -- the portfolio ----------------------------------------------------------------------------


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
