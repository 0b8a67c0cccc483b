"""Suggestions for a workflow: concrete changes, each with an estimated gain and a reason.

``suggest`` is pure: it looks at the spec and, when there is some, at what history says:
learned capability statistics (nofx.workflows.learning), per-step run history
(``StepHistory``) and per-agent statistics (``AgentStats``). Kinds:

- parallelize: a dependency whose output the step never reads only serialises the two;
  dropping it shortens the critical path by the gain shown.
- cheaper_agent: an agent does the capability at a success rate within two points of the
  best for less; pinning the step to it saves the difference on every run.
- raise_retries: the step (or its capability) succeeds less than 90% of the time and the
  step allows fewer attempts than it takes to succeed 95% of the time (at most five).
- merge_steps: a step whose only dependant is the next step on the same capability, both
  short: one call instead of two.
- cache_step: two steps ask exactly the same thing; run it once.
- reorder_priority: a step on the critical path waits behind lower-value work in a full
  pool (its priority is below theirs); raising it shortens the planned makespan.
- prioritize: the executor starts ready steps in declaration order, so with limited
  workers a short side branch declared first can delay the critical path; declaring steps
  by upward rank (critical path first) finishes sooner.

Where a suggestion maps to a change of a running workflow it carries that change
(nofx.workflows.adapt), so accepting it is one call. ``PreferenceModel`` learns from what
users accepted and rejected (Beta counts per kind) and re-ranks: rank = relative gain x
probability of acceptance.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from nofx.workflows.analysis import analyze, topological_order
from nofx.workflows.learning import MIN_SAMPLES, StepStats
from nofx.workflows.model import WorkflowSpec
from nofx.workflows.scheduler import upward_rank

KINDS = (
    "parallelize",
    "cheaper_agent",
    "raise_retries",
    "merge_steps",
    "cache_step",
    "prioritize",
)
SUCCESS_BAR = 0.9
TARGET_SUCCESS = 0.95
MAX_SUGGESTED_ATTEMPTS = 5
EQUAL_SUCCESS = 0.02
TINY_STEP_S = 10.0
WORKERS = 4  # the executor's default pool limit


@dataclass(frozen=True)
class StepHistory:
    """What past runs of one step (by id) showed; ``success_rate`` is per attempt."""

    step_id: str
    runs: int
    success_rate: float
    mean_duration_s: float | None = None


@dataclass(frozen=True)
class AgentStats:
    """How one agent does on one capability: share of attempts that succeed, USD per call."""

    capability: str
    agent_id: str
    success_rate: float
    cost_usd: float
    runs: int = MIN_SAMPLES


@dataclass(frozen=True)
class Suggestion:
    suggestion_id: str
    kind: str
    steps: tuple[str, ...]
    reason: str
    gain_s: float = 0.0
    gain_usd: float = 0.0
    gain_success: float = 0.0  # points of success probability, 0..1
    change: dict[str, Any] | None = None
    rank: float = 0.0
    gain: float = 0.0  # relative: share of the critical path + share of the cost + success
    order: tuple[str, ...] = ()  # prioritize: the proposed declaration order

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PreferenceModel:
    """Per kind, Beta(accepted + 1, rejected + 1): a kind users keep rejecting sinks."""

    accepted: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)

    def record(self, kind: str, accepted: bool) -> None:
        counts = self.accepted if accepted else self.rejected
        counts[kind] = counts.get(kind, 0) + 1

    def acceptance(self, kind: str) -> float:
        """The Beta posterior mean: 1/2 for a kind nobody has answered yet."""
        a, r = self.accepted.get(kind, 0), self.rejected.get(kind, 0)
        return (a + 1) / (a + r + 2)

    def score(self, suggestion: Suggestion) -> float:
        return round(suggestion.gain * self.acceptance(suggestion.kind), 6)

    def rerank(self, suggestions: Iterable[Suggestion]) -> list[Suggestion]:
        """Best first by relative gain x probability of acceptance; ties by id, stable."""
        scored = [replace(s, rank=self.score(s)) for s in suggestions]
        return sorted(scored, key=lambda s: (-s.rank, s.suggestion_id))

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": dict(self.accepted), "rejected": dict(self.rejected)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreferenceModel:
        def counts(key: str) -> dict[str, int]:
            return {str(k): int(v) for k, v in (data.get(key) or {}).items() if int(v) > 0}

        return cls(accepted=counts("accepted"), rejected=counts("rejected"))

    @classmethod
    def from_feedback(cls, feedback: Iterable[Mapping[str, Any]]) -> PreferenceModel:
        """From ``SuggestionFeedback`` event payloads ({kind, accepted, ...})."""
        model = cls()
        for item in feedback:
            model.record(str(item["kind"]), bool(item["accepted"]))
        return model


def _with_agents(stats: list[StepStats], agents: list[AgentStats]) -> list[StepStats]:
    """Agent statistics as learned rows, plus a fleet row (run-weighted) per capability
    that has none: the fleet average is what an unpinned step costs today."""
    rows = list(stats) + [
        StepStats(a.capability, a.agent_id, a.runs, a.success_rate, 0.0, 0.0, a.cost_usd)
        for a in agents
    ]
    have_fleet = {s.capability for s in stats if s.agent_id is None}
    grouped: dict[str, list[AgentStats]] = defaultdict(list)
    for a in agents:
        if a.capability not in have_fleet:
            grouped[a.capability].append(a)
    for capability, group in sorted(grouped.items()):
        runs = sum(a.runs for a in group)
        if runs <= 0:
            continue
        rows.append(
            StepStats(
                capability,
                None,
                runs,
                sum(a.success_rate * a.runs for a in group) / runs,
                0.0,
                0.0,
                sum(a.cost_usd * a.runs for a in group) / runs,
            )
        )
    return rows


def _fleet(stats: list[StepStats]) -> dict[str, StepStats]:
    return {s.capability: s for s in stats if s.agent_id is None and s.attempts >= MIN_SAMPLES}


def _critical_without(spec: WorkflowSpec, step_id: str, dep: str) -> float:
    steps = [
        s.model_copy(update={"needs": [d for d in s.needs if d != dep]}) if s.id == step_id else s
        for s in spec.steps
    ]
    return analyze(spec.model_copy(update={"steps": steps})).critical_path_s


def _parallelize(spec: WorkflowSpec, critical: float) -> list[Suggestion]:
    out = []
    for step in spec.steps:
        read = {src.split(".")[1] for src in step.inputs.values() if src.startswith("steps.")}
        for dep in step.needs:
            if dep in read:
                continue
            gain = critical - _critical_without(spec, step.id, dep)
            if gain > 0:
                out.append(
                    Suggestion(
                        f"parallelize/{dep}->{step.id}",
                        "parallelize",
                        (dep, step.id),
                        f"{step.id!r} waits for {dep!r} but reads none of its output; "
                        f"running them in parallel shortens the critical path by {gain:.0f}s",
                        gain_s=gain,
                        change={
                            "op": "replace_step",
                            "step": step.model_copy(
                                update={"needs": [d for d in step.needs if d != dep]}
                            ).model_dump(mode="json"),
                        },
                    )
                )
    return out


def _cheaper_agent(spec: WorkflowSpec, stats: list[StepStats]) -> list[Suggestion]:
    fleet = _fleet(stats)
    out = []
    for step in spec.steps:
        per_agent = [
            s
            for s in stats
            if s.capability == step.capability and s.agent_id and s.attempts >= MIN_SAMPLES
        ]
        if step.capability not in fleet or len(per_agent) < 2:
            continue
        best = max(s.success_rate for s in per_agent)
        good = [s for s in per_agent if s.success_rate >= best - EQUAL_SUCCESS]
        cheapest = min(good, key=lambda s: (s.mean_cost_usd, s.agent_id or ""))
        gain = fleet[step.capability].mean_cost_usd - cheapest.mean_cost_usd
        if gain > 0:
            out.append(
                Suggestion(
                    f"cheaper_agent/{step.id}",
                    "cheaper_agent",
                    (step.id,),
                    f"{cheapest.agent_id} succeeds {cheapest.success_rate:.0%} at "
                    f"${cheapest.mean_cost_usd:.5f} per call on {step.capability} "
                    f"(fleet average ${fleet[step.capability].mean_cost_usd:.5f})",
                    gain_usd=gain,
                    change={"op": "set_agent", "step_id": step.id, "agent_id": cheapest.agent_id},
                )
            )
    return out


def _attempts_needed(p: float) -> int:
    """The fewest attempts that succeed TARGET_SUCCESS of the time, capped."""
    for k in range(1, MAX_SUGGESTED_ATTEMPTS + 1):
        if 1 - (1 - p) ** k >= TARGET_SUCCESS:
            return k
    return MAX_SUGGESTED_ATTEMPTS


def _raise_retries(
    spec: WorkflowSpec, stats: list[StepStats], history: dict[str, StepHistory]
) -> list[Suggestion]:
    fleet = _fleet(stats)
    out = []
    for step in spec.steps:
        own = history.get(step.id)
        if own is not None and own.runs >= MIN_SAMPLES:
            p, source = own.success_rate, f"{step.id!r} succeeded {own.success_rate:.0%}"
        elif step.capability in fleet:
            p = fleet[step.capability].success_rate
            source = f"{step.capability} succeeds {p:.0%}"
        else:
            continue
        k, target = step.max_attempts, _attempts_needed(p)
        if p >= SUCCESS_BAR or k >= target:
            continue
        gain = (1 - (1 - p) ** target) - (1 - (1 - p) ** k)
        if gain <= 0:
            continue
        replacement = step.model_copy(update={"max_attempts": target}).model_dump(mode="json")
        out.append(
            Suggestion(
                f"raise_retries/{step.id}",
                "raise_retries",
                (step.id,),
                f"{source} of attempts; with {target} attempts instead of {k} the step "
                f"succeeds {gain:.0%} more often",
                gain_success=gain,
                change={"op": "replace_step", "step": replacement},
            )
        )
    return out


def _merge(spec: WorkflowSpec, stats: list[StepStats]) -> list[Suggestion]:
    fleet = _fleet(stats)
    dependants = {s.id: [o.id for o in spec.steps if s.id in o.needs] for s in spec.steps}
    out = []
    for first in spec.steps:
        if len(dependants[first.id]) != 1:
            continue
        second = spec.step(dependants[first.id][0])
        if (
            second.capability == first.capability
            and second.needs == [first.id]
            and max(first.estimates.duration_s, second.estimates.duration_s) <= TINY_STEP_S
        ):
            learned = fleet.get(first.capability)
            out.append(
                Suggestion(
                    f"merge_steps/{first.id}+{second.id}",
                    "merge_steps",
                    (first.id, second.id),
                    f"{first.id!r} and {second.id!r} are short {first.capability} steps in a "
                    "row: one call can do both",
                    gain_s=learned.p50_s
                    if learned
                    else min(first.estimates.duration_s, second.estimates.duration_s),
                    gain_usd=learned.mean_cost_usd if learned else first.estimates.cost_usd,
                )
            )
    return out


def _cache(spec: WorkflowSpec) -> list[Suggestion]:
    seen: dict[tuple[str, str, tuple[tuple[str, str], ...]], str] = {}
    out = []
    for step in spec.steps:
        key = (step.capability, step.prompt, tuple(sorted(step.inputs.items())))
        if not step.prompt and not step.inputs:
            continue  # nothing says the two steps ask the same thing
        if key in seen:
            out.append(
                Suggestion(
                    f"cache_step/{step.id}",
                    "cache_step",
                    (seen[key], step.id),
                    f"{step.id!r} asks exactly what {seen[key]!r} asks; reuse its output",
                    gain_s=step.estimates.duration_s,
                    gain_usd=step.estimates.cost_usd,
                )
            )
        else:
            seen[key] = step.id
    return out


def makespan_in_order(spec: WorkflowSpec, order: list[str], workers: int = WORKERS) -> float:
    """The makespan when ready steps start in ``order`` with ``workers`` per pool, as the
    executor does with declaration order (a simulation over estimated durations)."""
    position = {step_id: i for i, step_id in enumerate(order)}
    steps = {s.id: s for s in spec.steps}
    waiting = {s.id: set(s.needs) for s in spec.steps}
    dependants: dict[str, list[str]] = {s.id: [] for s in spec.steps}
    for s in spec.steps:
        for dep in s.needs:
            dependants[dep].append(s.id)
    free: dict[str, int] = defaultdict(lambda: workers)
    ready = [i for i, deps in waiting.items() if not deps]
    running: list[tuple[float, int, str]] = []
    now = 0.0
    while ready or running:
        ready.sort(key=position.__getitem__)
        for step_id in list(ready):
            pool = steps[step_id].pool
            if free[pool] > 0:
                free[pool] -= 1
                ready.remove(step_id)
                end = now + steps[step_id].estimates.duration_s
                heapq.heappush(running, (end, position[step_id], step_id))
        if not running:
            break
        now, _, done = heapq.heappop(running)
        free[steps[done].pool] += 1
        for child in dependants[done]:
            waiting[child].discard(done)
            if not waiting[child]:
                ready.append(child)
    return now


def _prioritize(spec: WorkflowSpec, critical_path: list[str], workers: int) -> list[Suggestion]:
    declared = [s.id for s in spec.steps]
    topo = {step_id: i for i, step_id in enumerate(topological_order(spec))}
    rank = upward_rank(spec)
    # a parent's rank is at least its child's, and topological order breaks the ties
    proposed = sorted(declared, key=lambda i: (-rank[i], topo[i]))
    if proposed == declared:
        return []
    gain = makespan_in_order(spec, declared, workers) - makespan_in_order(spec, proposed, workers)
    if gain <= 1e-9:
        return []
    moved = tuple(i for i in critical_path if proposed.index(i) < declared.index(i))
    targets = moved or tuple(i for i in proposed if proposed.index(i) != declared.index(i))
    return [
        Suggestion(
            "prioritize/critical-path-first",
            "prioritize",
            targets,
            f"with {workers} workers per pool, ready steps start in declaration order; "
            f"declaring the critical path ({' -> '.join(critical_path)}) first finishes "
            f"{gain:.0f}s sooner",
            gain_s=gain,
            order=tuple(proposed),
        )
    ]


def _reorder(spec: WorkflowSpec, critical_path: list[str], workers: int) -> list[Suggestion]:
    from nofx.workflows.scheduler import schedule

    current = schedule(spec, {"default": workers}).makespan_s
    top = max(s.priority for s in spec.steps)
    out = []
    for step_id in critical_path:
        step = spec.step(step_id)
        if step.priority >= top:
            continue
        raised = spec.model_copy(
            update={
                "steps": [
                    s.model_copy(update={"priority": top + 1}) if s.id == step_id else s
                    for s in spec.steps
                ]
            }
        )
        gain = current - schedule(raised, {"default": workers}).makespan_s
        if gain > 1e-9:
            out.append(
                Suggestion(
                    f"reorder_priority/{step_id}",
                    "reorder_priority",
                    (step_id,),
                    f"{step_id!r} is on the critical path but yields its pool to steps of "
                    f"higher priority; priority {top + 1} shortens the plan by {gain:.0f}s",
                    gain_s=gain,
                    change={
                        "op": "set_priority",
                        "step_id": step_id,
                        "priority": min(100, top + 1),
                    },
                )
            )
    return out


def suggest(
    workflow: WorkflowSpec,
    stats: list[StepStats] | None = None,
    preferences: PreferenceModel | None = None,
    *,
    history: Iterable[StepHistory] | None = None,
    agents: Iterable[AgentStats] | None = None,
    workers: int = WORKERS,
) -> list[Suggestion]:
    """Every suggestion that applies, best first by relative gain x chance of acceptance.

    ``stats`` are learned capability statistics, ``history`` what each step did in past
    runs, ``agents`` per-agent success and cost; each only adds suggestions."""
    if workers < 1:
        raise ValueError("workers must be at least 1")
    rows = _with_agents(list(stats or []), list(agents or []))
    by_step = {h.step_id: h for h in history or []}
    preferences = preferences or PreferenceModel()
    analysis = analyze(workflow)
    critical = analysis.critical_path_s
    cost = max(analysis.estimated_cost_usd, 1e-9)
    found = (
        _parallelize(workflow, critical)
        + _cheaper_agent(workflow, rows)
        + _raise_retries(workflow, rows, by_step)
        + _merge(workflow, rows)
        + _cache(workflow)
        + _prioritize(workflow, analysis.critical_path, workers)
    )
    relative = [
        replace(s, gain=s.gain_s / max(critical, 1e-9) + s.gain_usd / cost + s.gain_success)
        for s in found
    ]
    return preferences.rerank(relative)
