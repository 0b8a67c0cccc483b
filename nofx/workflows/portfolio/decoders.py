"""The rules and their decoders: a priority key or list in, a feasible schedule out."""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Sequence

from nofx.workflows.portfolio.problem import Problem, Solution, descendant_work, upward_ranks


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
