"""Learning step estimates from history: duration, cost and success per capability and agent.

``learn`` folds step outcome events (every attempt, failures included) into statistics;
``forecast`` uses them to put p50 and p90 makespans and an expected cost next to a
workflow's own estimates: a step's p90 duration stands in for its estimate on the critical
path, so a plan whose estimates are optimistic shows it before it runs. Capabilities with
no history keep the workflow's estimate, and the answer says which ones those are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from nofx.data_contract import StreamType
from nofx.workflows.analysis import topological_order
from nofx.workflows.model import WorkflowSpec

STREAM_TYPE = StreamType.WORKFLOW
MIN_SAMPLES = 5


def stream_id(tenant_id: str) -> str:
    return f"estimates-{tenant_id}"


@dataclass(frozen=True)
class StepStats:
    capability: str
    agent_id: str | None  # None: every agent together
    attempts: int
    success_rate: float
    p50_s: float
    p90_s: float
    mean_cost_usd: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def learn(outcomes: Iterable[dict[str, Any]]) -> list[StepStats]:
    """Statistics per capability (all agents) and per capability and agent, from the payloads
    of StepCompleted (``succeeded`` true) and StepFailed events."""
    groups: dict[tuple[str, str | None], list[tuple[bool, float, float]]] = defaultdict(list)
    for outcome in outcomes:
        capability = outcome.get("capability")
        if not capability:
            continue
        row = (
            bool(outcome["succeeded"]),
            float(outcome.get("latency_ms") or 0.0) / 1000,
            float(outcome.get("cost_usd") or 0.0),
        )
        groups[(capability, None)].append(row)
        if outcome.get("agent_id"):
            groups[(capability, outcome["agent_id"])].append(row)
    stats = []
    for (capability, agent), rows in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")
    ):
        seconds = [s for _, s, _ in rows]
        stats.append(
            StepStats(
                capability=capability,
                agent_id=agent,
                attempts=len(rows),
                success_rate=sum(ok for ok, _, _ in rows) / len(rows),
                p50_s=_quantile(seconds, 0.5),
                p90_s=_quantile(seconds, 0.9),
                mean_cost_usd=sum(c for _, _, c in rows) / len(rows),
            )
        )
    return stats


def forecast(spec: WorkflowSpec, stats: list[StepStats]) -> dict[str, Any]:
    """p50/p90 makespan (critical path with learned durations) and expected cost.

    A step is expected to take ``1 / success_rate`` attempts, so a flaky capability's retries
    count in both its duration and its cost."""
    fleet = {s.capability: s for s in stats if s.agent_id is None and s.attempts >= MIN_SAMPLES}
    steps = {s.id: s for s in spec.steps}
    finish: dict[str, dict[str, float]] = {"p50": {}, "p90": {}}
    cost = 0.0
    unknown = sorted({s.capability for s in spec.steps if s.capability not in fleet})
    for node in topological_order(spec):
        step = steps[node]
        learned = fleet.get(step.capability)
        tries = 1 / max(learned.success_rate, 0.05) if learned else 1.0
        for q in ("p50", "p90"):
            duration = getattr(learned, f"{q}_s") * tries if learned else step.estimates.duration_s
            start = max((finish[q][d] for d in step.needs), default=0.0)
            finish[q][node] = start + duration
        cost += learned.mean_cost_usd * tries if learned else step.estimates.cost_usd
    return {
        "p50_makespan_s": round(max(finish["p50"].values(), default=0.0), 3),
        "p90_makespan_s": round(max(finish["p90"].values(), default=0.0), 3),
        "expected_cost_usd": round(cost, 6),
        "capabilities_without_history": unknown,
    }


@dataclass(frozen=True)
class LearnedDurations:
    """What a plan takes from history: p50 durations to plan with, p90 to call a step late."""

    p50_s: dict[str, float]  # step id -> seconds, for steps whose capability has history
    p90_s: dict[str, float]
    capabilities: list[str]  # those with enough history

    def expected_s(self, step_id: str, estimate_s: float) -> float:
        return self.p50_s.get(step_id, estimate_s)


def learned_durations(spec: WorkflowSpec, stats: list[StepStats]) -> LearnedDurations:
    """Per step, the fleet's learned p50 and p90 duration for its capability (with at least
    ``MIN_SAMPLES`` attempts); steps without history keep their own estimate."""
    fleet = {s.capability: s for s in stats if s.agent_id is None and s.attempts >= MIN_SAMPLES}
    p50 = {s.id: fleet[s.capability].p50_s for s in spec.steps if s.capability in fleet}
    p90 = {s.id: fleet[s.capability].p90_s for s in spec.steps if s.capability in fleet}
    used = sorted({s.capability for s in spec.steps if s.capability in fleet})
    return LearnedDurations(p50, p90, used)
