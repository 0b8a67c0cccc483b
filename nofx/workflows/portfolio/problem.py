"""The scheduling problem in integers (ms, thousandths of a resource), its solution and its lower bound."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from nofx.errors import ValidationError
from nofx.workflows.analysis import topological_order
from nofx.workflows.model import WorkflowSpec

DEFAULT_POOL_SIZE = 4
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
