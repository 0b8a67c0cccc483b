"""Workflow analysis as pure functions: critical path, the makespan lower bound for K workers,
the parallelism profile, and cost and duration estimates."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from nofx.workflows.model import WorkflowSpec


def topological_order(spec: WorkflowSpec) -> list[str]:
    """Kahn's algorithm, ties broken by declaration order (the spec is validated acyclic)."""
    order_index = {s.id: i for i, s in enumerate(spec.steps)}
    remaining = {s.id: set(s.needs) for s in spec.steps}
    ready = sorted((i for i, deps in remaining.items() if not deps), key=order_index.__getitem__)
    order: list[str] = []
    dependants: dict[str, list[str]] = {s.id: [] for s in spec.steps}
    for s in spec.steps:
        for dep in s.needs:
            dependants[dep].append(s.id)
    while ready:
        node = ready.pop(0)
        order.append(node)
        for child in dependants[node]:
            remaining[child].discard(node)
            if not remaining[child]:
                ready.append(child)
                ready.sort(key=order_index.__getitem__)
    return order


@dataclass(frozen=True)
class Analysis:
    steps: int
    edges: int
    critical_path: list[str]
    critical_path_s: float
    total_work_s: float
    workers: int
    makespan_lower_bound_s: float
    parallelism_profile: list[int]
    max_parallelism: int
    estimated_cost_usd: float
    bottlenecks: list[str] = field(default_factory=list)
    resource_conflicts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resource_conflicts(spec: WorkflowSpec, level: dict[str, int], limit: int) -> list[str]:
    """Where steps that could run together (same level) outnumber their pool's slots."""
    out = []
    groups: dict[tuple[str, int], list[str]] = {}
    for step in spec.steps:
        groups.setdefault((step.pool, level[step.id]), []).append(step.id)
    for (pool, depth), ids in sorted(groups.items()):
        if len(ids) > limit:
            out.append(
                f"pool {pool!r}, level {depth}: {len(ids)} steps could run together on "
                f"{limit} slots, so {len(ids) - limit} wait ({', '.join(sorted(ids))})"
            )
    return out


def analyze(spec: WorkflowSpec, workers: int = 4) -> Analysis:
    """Longest path by estimated duration; lower bound max(critical path, total work / K)."""
    if workers < 1:
        raise ValueError("workers must be at least 1")
    order = topological_order(spec)
    steps = {s.id: s for s in spec.steps}
    finish: dict[str, float] = {}
    parent: dict[str, str | None] = {}
    level: dict[str, int] = {}
    for node in order:
        step = steps[node]
        via = max(step.needs, key=finish.__getitem__) if step.needs else None
        start = finish[via] if via is not None else 0.0
        finish[node] = start + step.estimates.duration_s
        parent[node] = via
        level[node] = 1 + max((level[d] for d in step.needs), default=-1)
    end = max(order, key=lambda n: finish[n])
    path = [end]
    while parent[path[-1]] is not None:
        path.append(parent[path[-1]])  # type: ignore[arg-type]
    path.reverse()
    total = sum(s.estimates.duration_s for s in spec.steps)
    critical = finish[end]
    profile = [0] * (max(level.values()) + 1)
    for node in order:
        profile[level[node]] += 1
    longest = sorted(path, key=lambda n: -steps[n].estimates.duration_s)
    bottlenecks = [
        n for n in longest[:3] if critical and steps[n].estimates.duration_s >= 0.2 * critical
    ]
    return Analysis(
        steps=len(spec.steps),
        edges=sum(len(s.needs) for s in spec.steps),
        critical_path=path,
        critical_path_s=critical,
        total_work_s=total,
        workers=workers,
        makespan_lower_bound_s=max(critical, total / workers),
        parallelism_profile=profile,
        max_parallelism=max(profile),
        estimated_cost_usd=sum(s.estimates.cost_usd for s in spec.steps),
        bottlenecks=bottlenecks,
        resource_conflicts=resource_conflicts(spec, level, workers),
    )
