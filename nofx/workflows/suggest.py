"""Suggestions for a workflow: concrete changes, each with an estimated gain and a reason.

``suggest`` is pure: it looks at the spec and, when there is history, at the learned step
statistics (nofx.workflows.learning). Kinds:

- parallelize: a dependency whose output the step never reads only serialises the two;
  dropping it shortens the critical path by the gain shown.
- cheaper_agent: an agent does the capability at a success rate within two points of the
  best for less; pinning the step to it saves the difference on every run.
- raise_retries: the capability succeeds less than 90% of the time and the step allows
  fewer than three attempts; more attempts turn failures into late successes.
- merge_steps: a step whose only dependant is the next step on the same capability, both
  short: one call instead of two.
- cache_step: two steps ask exactly the same thing; run it once.
- reorder_priority: a step on the critical path waits behind lower-value work in a full
  pool (its priority is below theirs); raising it shortens the planned makespan.

Where a suggestion maps to a change of a running workflow it carries that change
(nofx.workflows.adapt), so accepting it is one call. ``PreferenceModel`` learns from what
users accepted and rejected (Beta counts per kind) and re-ranks: rank = relative gain x
probability of acceptance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from nofx.workflows.analysis import analyze
from nofx.workflows.learning import MIN_SAMPLES, StepStats
from nofx.workflows.model import WorkflowSpec

KINDS = (
    "parallelize",
    "cheaper_agent",
    "raise_retries",
    "merge_steps",
    "cache_step",
    "reorder_priority",
)
SUCCESS_BAR = 0.9
EQUAL_SUCCESS = 0.02
TINY_STEP_S = 10.0


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
        a, r = self.accepted.get(kind, 0), self.rejected.get(kind, 0)
        return (a + 1) / (a + r + 2)

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": dict(self.accepted), "rejected": dict(self.rejected)}

    @classmethod
    def from_feedback(cls, feedback: list[dict[str, Any]]) -> PreferenceModel:
        model = cls()
        for item in feedback:
            model.record(str(item["kind"]), bool(item["accepted"]))
        return model


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
        cheapest = min(good, key=lambda s: s.mean_cost_usd)
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


def _raise_retries(spec: WorkflowSpec, stats: list[StepStats]) -> list[Suggestion]:
    fleet = _fleet(stats)
    out = []
    for step in spec.steps:
        learned = fleet.get(step.capability)
        if learned is None or learned.success_rate >= SUCCESS_BAR or step.max_attempts >= 3:
            continue
        p, k = learned.success_rate, step.max_attempts
        gain = (1 - (1 - p) ** 3) - (1 - (1 - p) ** k)
        replacement = step.model_copy(update={"max_attempts": 3}).model_dump(mode="json")
        out.append(
            Suggestion(
                f"raise_retries/{step.id}",
                "raise_retries",
                (step.id,),
                f"{step.capability} succeeds {p:.0%} of attempts; with 3 attempts instead of "
                f"{k} the step succeeds {gain:.0%} more often",
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
    spec: WorkflowSpec,
    stats: list[StepStats] | None = None,
    preferences: PreferenceModel | None = None,
) -> list[Suggestion]:
    """Every suggestion that applies, best first by relative gain x chance of acceptance."""
    stats = stats or []
    preferences = preferences or PreferenceModel()
    analysis = analyze(spec)
    critical = analysis.critical_path_s
    cost = max(analysis.estimated_cost_usd, 1e-9)
    found = (
        _parallelize(spec, critical)
        + _cheaper_agent(spec, stats)
        + _raise_retries(spec, stats)
        + _merge(spec, stats)
        + _cache(spec)
        + _reorder(spec, analysis.critical_path, analysis.workers)
    )
    ranked = []
    for s in found:
        relative = s.gain_s / max(critical, 1e-9) + s.gain_usd / cost + s.gain_success
        rank = relative * preferences.acceptance(s.kind)
        ranked.append(Suggestion(**{**s.as_dict(), "steps": s.steps, "rank": round(rank, 6)}))
    return sorted(ranked, key=lambda s: (-s.rank, s.suggestion_id))
