"""Changing a running workflow: validated against what has already run, recorded as events.

A change touches only steps that have not started: adding a step (its dependencies may be
finished steps), removing or replacing a pending step, pinning a pending step to an agent,
changing its priority, or changing a pool's concurrency limit. ``apply_changes`` is the pure decision: it returns
the new spec or refuses with the change's index and what to do. The API records accepted
changes as ``WorkflowAdapted`` events in the ``workflow-<session_id>`` stream, and the
executor applies them before it starts each step, so a change lands without interrupting
steps in flight and survives a restart (the stream is replayed on resume).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nofx.data_contract import StreamType
from nofx.errors import ValidationError
from nofx.workflows.model import StepSpec, WorkflowSpec, validate

STREAM_TYPE = StreamType.WORKFLOW


def stream_id(session_id: str) -> str:
    return f"workflow-{session_id}"


class _Change(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AddStep(_Change):
    op: Literal["add_step"]
    step: StepSpec


class RemoveStep(_Change):
    op: Literal["remove_step"]
    step_id: str


class ReplaceStep(_Change):
    op: Literal["replace_step"]
    step: StepSpec = Field(description="the new definition; its id names the step replaced")


class SetAgent(_Change):
    op: Literal["set_agent"]
    step_id: str
    agent_id: str = Field(description="only this agent may run the step")


class SetPriority(_Change):
    op: Literal["set_priority"]
    step_id: str
    priority: int = Field(ge=-100, le=100, description="higher starts first in its pool")


class SetPoolLimit(_Change):
    op: Literal["set_pool_limit"]
    pool: str
    limit: int = Field(ge=1, le=1000)


Change = Annotated[
    AddStep | RemoveStep | ReplaceStep | SetAgent | SetPriority | SetPoolLimit,
    Field(discriminator="op"),
]


class Adaptation(BaseModel):
    """What the API accepts: the session running the workflow and the changes, in order."""

    model_config = ConfigDict(extra="forbid")

    session_id: str = Field(min_length=1, max_length=64)
    changes: list[Change] = Field(min_length=1, max_length=100)
    reason: str = Field(default="", max_length=500, description="why, for the record")


class Plan(BaseModel):
    """A running workflow's current shape: the spec, agent pins and pool limits."""

    spec: WorkflowSpec
    pinned: dict[str, str] = Field(default_factory=dict)
    pool_limits: dict[str, int] = Field(default_factory=dict)


def _refuse(index: int, message: str, hint: str) -> ValidationError:
    return ValidationError(f"change {index + 1}: {message}", hint=hint)


def apply_changes(
    plan: Plan,
    changes: list[Any],
    started: set[str],
    known_capabilities: set[str] | None = None,
) -> Plan:
    """The plan after ``changes``, or a ValidationError naming the first change refused.
    ``started`` are the steps that have begun (or finished): they cannot change."""
    steps = {s.id: s for s in plan.spec.steps}
    pinned = dict(plan.pinned)
    limits = dict(plan.pool_limits)
    for index, change in enumerate(changes):
        target = getattr(change, "step_id", None) or getattr(
            getattr(change, "step", None), "id", None
        )
        if isinstance(change, AddStep):
            if change.step.id in steps:
                raise _refuse(index, f"step {change.step.id!r} exists", "replace_step changes it")
            steps[change.step.id] = change.step
            continue
        if isinstance(change, SetPoolLimit):
            limits[change.pool] = change.limit
            continue
        if target not in steps:
            raise _refuse(index, f"no step {target!r}", "list the workflow's steps to find it")
        if target in started:
            raise _refuse(
                index,
                f"step {target!r} has already started",
                "only pending steps can change; add a follow-up step instead",
            )
        if isinstance(change, RemoveStep):
            dependants = sorted(s.id for s in steps.values() if target in s.needs)
            if dependants:
                raise _refuse(
                    index,
                    f"steps {dependants} need {target!r}",
                    "remove or replace those steps first, in the same request",
                )
            del steps[target]
            pinned.pop(target, None)
        elif isinstance(change, ReplaceStep):
            steps[target] = change.step
        elif isinstance(change, SetAgent):
            pinned[target] = change.agent_id
        elif isinstance(change, SetPriority):
            steps[target] = steps[target].model_copy(update={"priority": change.priority})
    spec = plan.spec.model_copy(update={"steps": list(steps.values())})
    validate(spec, known_capabilities)  # cycles, unknown dependencies and capabilities
    return Plan(spec=spec, pinned=pinned, pool_limits=limits)


def deadline_relief(
    plan: Plan,
    finished: set[str],
    elapsed_s: float,
    deadline_s: float,
    pool: str,
    busy: int,
    waiting: int,
    default_limit: int,
) -> tuple[SetPoolLimit, str] | None:
    """Automatic adaptation: more slots for ``pool`` when its queue is what puts the deadline
    at risk. The rest of the plan (finished steps count zero) is scheduled with the current
    limits and with enough slots for everyone waiting; if only the latter meets the deadline,
    the pool gets those slots. None when the deadline is safe, or lost either way."""
    from nofx.workflows.scheduler import schedule

    remaining = plan.spec.model_copy(
        update={
            "steps": [
                s.model_copy(
                    update={"estimates": s.estimates.model_copy(update={"duration_s": 0.0})}
                )
                if s.id in finished
                else s
                for s in plan.spec.steps
            ]
        }
    )
    limits = {"default": default_limit, **plan.pool_limits}
    current = limits.get(pool, default_limit)
    wanted = max(current, busy + waiting)
    if wanted <= current:
        return None
    as_is = elapsed_s + schedule(remaining, limits).makespan_s
    relieved = elapsed_s + schedule(remaining, {**limits, pool: wanted}).makespan_s
    if as_is <= deadline_s or relieved > deadline_s:
        return None
    reason = (
        f"deadline at risk: {as_is:.0f}s planned against a {deadline_s:.0f}s deadline with "
        f"{current} slots in pool {pool!r}; {wanted} slots make it {relieved:.0f}s"
    )
    return SetPoolLimit(op="set_pool_limit", pool=pool, limit=min(1000, wanted)), reason


class AdaptationService:
    """Validates an adaptation against the running session and records it."""

    def __init__(self, store: Any, sessions: Any, registry: Any) -> None:
        self.store = store
        self.sessions = sessions
        self.registry = registry

    def current(self, session_id: str, initial: WorkflowSpec) -> tuple[Plan, int]:
        """The plan in force and the adaptation stream's version."""
        events = self.store.read_stream(stream_id(session_id))
        adapted = [e for e in events if e.type == "WorkflowAdapted"]
        plan = Plan.model_validate(adapted[-1].payload["plan"]) if adapted else Plan(spec=initial)
        return plan, events[-1].seq if events else 0

    def adapt(self, adaptation: Adaptation, tenant_id: str) -> dict[str, Any]:
        from nofx.domain import NewEvent, PatternName
        from nofx.errors import ConflictError

        session = self.sessions.get(adaptation.session_id, tenant_id=tenant_id)
        if session.pattern is not PatternName.WORKFLOW:
            raise ValidationError(
                f"session {session.session_id} runs pattern {session.pattern.value!r}",
                hint="only workflow sessions can be adapted",
            )
        if session.status.terminal:
            raise ConflictError(
                f"session {session.session_id} is already {session.status.value}",
                hint="submit a new workflow instead",
            )
        history = self.sessions.events(session.session_id)
        request = history[0].payload["request"]
        started = {  # a pattern step's own steps (wf/<id>/author/1) mean <id> has started
            str(e.payload["step_id"]).removeprefix("wf/").split("/")[0]
            for e in history
            if e.type in ("StepStarted", "StepSkipped")
        }
        plan, version = self.current(
            session.session_id, WorkflowSpec.model_validate(request["workflow"])
        )
        new_plan = apply_changes(
            plan, adaptation.changes, started, self.registry.capabilities(tenant_id)
        )
        payload = {
            "session_id": session.session_id,
            "changes": [c.model_dump(mode="json") for c in adaptation.changes],
            "reason": adaptation.reason,
            "started_steps": sorted(started),
            "plan": new_plan.model_dump(mode="json"),
        }
        written = self.store.append(
            stream_id(session.session_id),
            STREAM_TYPE,
            tenant_id,
            [NewEvent(type="WorkflowAdapted", payload=payload)],
            expected_version=version,
        )
        return {
            "session_id": session.session_id,
            "adaptation": written[0].seq,
            "plan": payload["plan"],
            "started_steps": payload["started_steps"],
        }
