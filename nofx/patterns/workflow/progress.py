"""What a running workflow keeps track of: its current plan (adaptations), the dispatch of
steps to workers, each step's measured agent time, and the makespans and lateness computed
from them. The loop that uses them is ``nofx.patterns.workflow.run``."""

from __future__ import annotations

from dataclasses import dataclass, field

from nofx.domain import Event
from nofx.execution import Execution
from nofx.workflows.adapt import Plan
from nofx.workflows.adapt import stream_id as adapt_stream
from nofx.workflows.analysis import topological_order
from nofx.workflows.learning import LearnedDurations, StepStats
from nofx.workflows.learning import stream_id as learning_stream
from nofx.workflows.model import StepSpec, WorkflowSpec

LATE_TOLERANCE = 0.1  # a step is late when it took more than 10% over its estimate


def render_prompt(
    step_prompt: str, inputs: dict[str, str], outputs: dict[str, str], params: dict
) -> str:
    parts = [step_prompt] if step_prompt else []
    for name, source in inputs.items():
        kind, _, rest = source.partition(".")
        value = outputs.get(rest.split(".")[0], "") if kind == "steps" else params.get(rest, "")
        parts.append(f"{name}: {value}")
    return "\n".join(parts) or "run this step"


def realised_makespan_s(spec: WorkflowSpec, history: list[Event]) -> float:
    """The workflow's makespan from its steps' measured call latencies (every attempt,
    retries included): each step starts when its last dependency ends. For simulated agents
    these are the simulated latencies, so the number is comparable to the plan's estimates
    whatever the simulator's time scale."""
    spent: dict[str, float] = {}
    for event in history:
        step_id = str(event.payload.get("step_id", ""))
        if event.type in ("StepCompleted", "StepFailed") and step_id.startswith("wf/"):
            name = step_id.removeprefix("wf/").split("/")[0]  # a pattern step's steps too
            spent[name] = spent.get(name, 0.0) + float(event.payload.get("latency_ms") or 0) / 1000
    finish: dict[str, float] = {}
    for node in topological_order(spec):
        start = max((finish[d] for d in spec.step(node).needs), default=0.0)
        finish[node] = start + spent.get(node, 0.0)
    return max(finish.values(), default=0.0)


class Adaptations:
    """The running workflow's plan, kept current from its ``workflow-<session>`` stream."""

    def __init__(self, execution: Execution, initial: WorkflowSpec) -> None:
        self.store = execution.runtime.store
        self.stream = adapt_stream(execution.session.session_id)
        self.plan = Plan(spec=initial)
        self.seen = 0
        self.applied = 0

    def refresh(self) -> Plan:
        for event in self.store.read_stream(self.stream, after_seq=self.seen):
            self.seen = event.seq
            if event.type == "WorkflowAdapted":
                self.plan = Plan.model_validate(event.payload["plan"])
                self.applied += 1
        return self.plan


@dataclass
class Dispatch:
    """The plan being executed: each worker's remaining steps, in order."""

    queues: dict[tuple[str, int], list[str]] = field(default_factory=dict)
    running: dict[tuple[str, int], str] = field(default_factory=dict)
    ran: list[tuple[str, int, str]] = field(default_factory=list)  # (pool, worker, step)

    def worker_of(self, step_id: str) -> tuple[str, int] | None:
        return next((w for w, s in self.running.items() if s == step_id), None)


def executed_makespan_s(
    spec: WorkflowSpec, ran: list[tuple[str, int, str]], durations: dict[str, float]
) -> float:
    """Replay of an execution: each worker's steps in the order they ran, each starting when
    its inputs and its worker are free, taking its measured duration."""
    needs = {s.id: s.needs for s in spec.steps}
    finish: dict[str, float] = {}
    free: dict[tuple[str, int], float] = {}
    pending = list(ran)
    while pending:  # dispatch order respects dependencies, so one pass usually suffices
        left = []
        for pool, worker, step in pending:
            deps = needs.get(step, [])
            if any(d not in finish and any(d == r[2] for r in ran) for d in deps):
                left.append((pool, worker, step))
                continue
            start = max([free.get((pool, worker), 0.0), *(finish.get(d, 0.0) for d in deps)])
            finish[step] = start + durations.get(step, 0.0)
            free[(pool, worker)] = finish[step]
        if len(left) == len(pending):  # pragma: no cover - a cycle cannot run
            break
        pending = left
    return max(finish.values(), default=0.0)


def is_late(step: StepSpec, measured_s: float, learned: LearnedDurations | None = None) -> bool:
    """Later than the learned p90 for its capability when there is history, else later than
    its estimate by more than the tolerance (and by more than a millisecond)."""
    if learned is not None and step.id in learned.p90_s:
        return measured_s > learned.p90_s[step.id] and measured_s - learned.p90_s[step.id] > 1e-3
    estimate = step.estimates.duration_s
    return measured_s > estimate * (1 + LATE_TOLERANCE) and measured_s - estimate > 1e-3


def learned_stats(execution: Execution) -> list[StepStats]:
    """The tenant's latest learned estimates (POST /workflows/learn); empty without any."""
    store = execution.runtime.store
    events = store.read_stream(learning_stream(execution.session.tenant_id))
    learned = [e for e in events if e.type == "EstimatesLearned"]
    return [StepStats(**s) for s in learned[-1].payload["stats"]] if learned else []


class StepClock:
    """Each workflow step's agent time (every attempt's latency), read from the session's
    history as it grows, each event once."""

    def __init__(self, execution: Execution) -> None:
        self.execution = execution
        self.read = 0
        self.spent: dict[str, float] = {}

    def seconds(self, step_id: str) -> float:
        history = self.execution.history
        for event in history[self.read :]:
            name = str(event.payload.get("step_id", ""))
            if event.type in ("StepCompleted", "StepFailed") and name.startswith("wf/"):
                key = name.removeprefix("wf/").split("/")[0]  # a pattern step's steps too
                latency = float(event.payload.get("latency_ms") or 0) / 1000
                self.spent[key] = self.spent.get(key, 0.0) + latency
        self.read = len(history)
        return self.spent.get(step_id, 0.0)
