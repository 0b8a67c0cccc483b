"""Whose failure is it: the orchestrator's, or the task's? (ADR 0018)

An *orchestration* failure is one the control plane or the agent service caused and a
better-run control plane could have avoided: no agent available, a circuit open, a call
past its deadline, a rate limit, a server error or a reply that is not a response at all,
a worker crash or a lost lease, a refused configuration. A *task* failure is about the
work itself: the agent answered and the answer was wrong, the reviewer never accepted
it, the prompt is longer than the window the tenant declared for its agents, the
tenant's budget is spent. The seed's "<1% failures" target is on orchestration failures;
task failures are measured, and answer quality is its own metric.

A failure whose type is not known here counts as the orchestrator's, so that an
unrecognised error can never make the orchestration failure rate look better.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, Protocol


class FailureClass(StrEnum):
    ORCHESTRATION = "orchestration"
    TASK = "task"


class ErrorClass(StrEnum):
    """How a failed agent call is retried (``nofx.routing.retry``): a transient error on the
    same agent after a back-off, an agent fault on another agent, a permanent one not at all.
    Providers raise errors of each class (``nofx.agents.base``)."""

    TRANSIENT = "transient"
    AGENT_FAULT = "agent_fault"
    PERMANENT = "permanent"


# the agent answered, and the answer (or the request the tenant made) is the problem
TASK_ERRORS = frozenset(
    {
        "bad_output",  # the answer failed validation: a wrong answer
        "review_rejected",  # the reviewer never accepted the work within the rounds
        "unparseable",  # the answer was not in the format the pattern asked for
        "context_length_exceeded",  # the prompt is over the window declared for the agent
        "budget_exhausted",  # the tenant's budget for the session is spent
        "swarm_budget_spent",
        "400",  # HTTP 400/413/422: the endpoint refused the request's content
        "413",
        "422",
    }
)

# the control plane or the agent service failed to deliver an answer
ORCHESTRATION_ERRORS = frozenset(
    {
        "no_eligible_agent",  # nobody to route to: none registered, all excluded, circuit open
        "timeout",
        "rate_limited",
        "service_unavailable",
        "connection_error",
        "temporary_failure",
        "redirect_refused",
        "agent_error",  # the service answered with an error, not with an answer
        "malformed_response",
        "worker_lost",  # the worker died mid-call (StepAbandoned)
        "lease_lost",
        "unsupported_pattern",
        "unsupported_capability",  # routed to an agent that does not offer the capability
        "workflow_stalled",
        "configuration_error",
        "policy_denied",
        "policy_invalid",
        "missing_api_key",
        "missing_secret",
        "executable_not_found",
        "import_error",
    }
)

# failures of a pattern that say "some of my steps gave up": their class is their cause's
COMPOSITE_ERRORS = frozenset(
    {
        "subtasks_failed",
        "subtree_failed",
        "swarm_stalled",
        "swarm_turns_exhausted",
        "workflow_step_failed",
    }
)

_STEP_FAILURES = ("StepFailed", "StepAbandoned")
_SWARM_TRY = re.compile(r"^(?P<item>.*/item\d+)/\d+$")


class EventLike(Protocol):
    """An event written (``Event``) or waiting to be (``NewEvent``)."""

    @property
    def type(self) -> str: ...

    @property
    def payload(self) -> Mapping[str, Any]: ...


def classify_error(error_type: str | None) -> FailureClass:
    """The class of one failed call or one leaf failure, from its ``error.type``."""
    if error_type in TASK_ERRORS:
        return FailureClass.TASK
    return FailureClass.ORCHESTRATION  # known orchestration errors, composites and the unknown


def _work_unit(step_id: str) -> str:
    """Tries of one swarm item (``.../item3/0``, ``.../item3/1``) are one piece of work."""
    match = _SWARM_TRY.match(step_id)
    return match.group("item") if match else step_id


def _event_class(event: EventLike) -> FailureClass:
    recorded = event.payload.get("failure_class")
    if recorded in (FailureClass.ORCHESTRATION, FailureClass.TASK):
        return FailureClass(recorded)
    return classify_error(event.payload.get("error.type"))


def unrecovered_failures(events: Iterable[EventLike]) -> dict[str, FailureClass]:
    """Per piece of work that never completed: the class of its last failed attempt.

    An attempt that failed and was then retried to success (on the same agent, another
    one, or another swarm peer) cost nothing to the session's outcome, so it is left out."""
    last: dict[str, FailureClass] = {}
    completed: set[str] = set()
    for event in events:
        step_id = event.payload.get("step_id")
        if not isinstance(step_id, str):
            continue
        unit = _work_unit(step_id)
        if event.type == "StepCompleted":
            completed.add(unit)
        elif event.type in _STEP_FAILURES:
            last[unit] = _event_class(event)
    return {unit: cls for unit, cls in last.items() if unit not in completed}


def session_failure_class(
    error_type: str | None, step_id: str | None, events: Iterable[EventLike]
) -> FailureClass:
    """The class of a session's failure, given the step it ended on and its events so far.

    - a task error (wrong answer, rejected review, budget, window) is the task's;
    - a step that gave up takes the class of its last failed attempt: ``no_eligible_agent``
      after every allowed agent answered wrongly is a task failure, after a timeout it is
      the orchestrator's; a step with no failed attempt takes its own error's class;
    - a pattern's failure (subtasks, swarm, workflow step) is the orchestrator's when any
      piece of work it lost was lost to the orchestrator, the task's when all were lost to
      the task.
    """
    if error_type in TASK_ERRORS:
        return FailureClass.TASK
    lost = unrecovered_failures(events)
    if error_type in COMPOSITE_ERRORS:
        if lost and all(cls is FailureClass.TASK for cls in lost.values()):
            return FailureClass.TASK
        return FailureClass.ORCHESTRATION
    if error_type == "no_eligible_agent" and step_id is not None:
        cause = lost.get(_work_unit(step_id))
        if cause is not None:
            return cause
    return classify_error(error_type)
