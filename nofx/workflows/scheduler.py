"""List scheduling under resource limits, as a pure function over estimated durations.

Priority is the step's own ``priority``, then its upward rank (HEFT): a step's
duration plus the longest chain of work after it, so the critical path goes first. Each step runs in a pool
(``resources['pool']``, default ``default``) whose concurrency is limited; a
budget stops scheduling steps that would overspend (they and their dependants
are reported as unscheduled).
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass, field

from nofx.workflows.analysis import topological_order
from nofx.workflows.model import WorkflowSpec


@dataclass(frozen=True)
class Slot:
    step_id: str
    pool: str
    worker: int
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Schedule:
    slots: list[Slot]
    makespan_s: float
    cost_usd: float
    unscheduled: list[str] = field(default_factory=list)

    def slot(self, step_id: str) -> Slot:
        return next(s for s in self.slots if s.step_id == step_id)


def upward_rank(spec: WorkflowSpec) -> dict[str, float]:
    children: dict[str, list[str]] = {s.id: [] for s in spec.steps}
    for s in spec.steps:
        for dep in s.needs:
            children[dep].append(s.id)
    duration = {s.id: s.estimates.duration_s for s in spec.steps}
    rank: dict[str, float] = {}
    for node in reversed(topological_order(spec)):
        rank[node] = duration[node] + max((rank[c] for c in children[node]), default=0.0)
    return rank


def schedule(
    spec: WorkflowSpec, limits: dict[str, int] | None = None, budget_usd: float | None = None
) -> Schedule:
    """Event-driven list scheduling: whenever workers are free, start the ready step of highest rank.

    ``limits`` maps pool name -> concurrent workers (a pool not named gets ``limits['default']``,
    or 4 when that is not given either).
    """
    limits = dict(limits or {})
    default_limit = limits.get("default", 4)
    steps = {s.id: s for s in spec.steps}
    rank = upward_rank(spec)
    waiting = {s.id: set(s.needs) for s in spec.steps}
    dependants: dict[str, list[str]] = {s.id: [] for s in spec.steps}
    for s in spec.steps:
        for dep in s.needs:
            dependants[dep].append(s.id)
    free: dict[str, list[int]] = {}

    def key(step_id: str) -> tuple[int, float, str]:
        return (-steps[step_id].priority, -rank[step_id], step_id)

    # one ready heap per pool: a full pool's steps wait without being looked at again, so
    # each event costs O(pools + log n) instead of a pass over every ready step
    ready: dict[str, list[tuple[int, float, str]]] = {}

    def make_ready(step_id: str) -> None:
        heapq.heappush(ready.setdefault(steps[step_id].pool, []), key(step_id))

    for step_id, deps in waiting.items():
        if not deps:
            make_ready(step_id)
    running: list[tuple[float, str, str, int]] = []  # (end, step, pool, worker)
    slots: list[Slot] = []
    spent = 0.0
    now = 0.0
    skipped: set[str] = set()

    def workers(pool: str) -> list[int]:
        if pool not in free:
            free[pool] = list(range(max(1, limits.get(pool, default_limit))))
        return free[pool]

    def skip(step_id: str) -> None:
        if step_id in skipped:
            return
        skipped.add(step_id)
        for child in dependants[step_id]:
            skip(child)

    while True:
        # start ready steps in priority order across the pools that have a free worker
        while True:
            startable = [(heap[0], pool) for pool, heap in ready.items() if heap and workers(pool)]
            if not startable:
                break
            _, pool = min(startable)
            *_, step_id = heapq.heappop(ready[pool])
            step = steps[step_id]
            if budget_usd is not None and spent + step.estimates.cost_usd > budget_usd + 1e-12:
                skip(step_id)
                continue
            worker = workers(pool).pop(0)
            spent += step.estimates.cost_usd
            end = now + step.estimates.duration_s
            heapq.heappush(running, (end, step_id, pool, worker))
            slots.append(Slot(step_id, pool, worker, now, end))
        if not running:
            break
        now, done, pool, worker = heapq.heappop(running)
        bisect.insort(workers(pool), worker)
        for child in dependants[done]:
            waiting[child].discard(done)
            if not waiting[child] and child not in skipped:
                make_ready(child)
    makespan = max((s.end_s for s in slots), default=0.0)
    return Schedule(slots, makespan, spent, sorted(skipped))
