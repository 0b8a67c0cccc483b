"""Whose failure is it: the taxonomy of ADR 0018 as a pure function."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nofx.failures import (
    COMPOSITE_ERRORS,
    ORCHESTRATION_ERRORS,
    TASK_ERRORS,
    FailureClass,
    classify_error,
    session_failure_class,
    unrecovered_failures,
)
from nofx.routing.retry import RetryAction, RetryPolicy, next_action

ORCH, TASK = FailureClass.ORCHESTRATION, FailureClass.TASK


@dataclass(frozen=True)
class Ev:
    type: str
    payload: dict[str, Any] = field(default_factory=dict)


def failed(step: str, error: str, **extra: Any) -> Ev:
    return Ev("StepFailed", {"step_id": step, "error.type": error, **extra})


def done(step: str) -> Ev:
    return Ev("StepCompleted", {"step_id": step})


@pytest.mark.parametrize(
    ("error_type", "expected"),
    [
        ("no_eligible_agent", ORCH),
        ("timeout", ORCH),
        ("rate_limited", ORCH),
        ("agent_error", ORCH),
        ("worker_lost", ORCH),
        ("503", ORCH),
        ("bad_output", TASK),
        ("review_rejected", TASK),
        ("context_length_exceeded", TASK),
        ("budget_exhausted", TASK),
    ],
)
def test_leaf_errors_have_the_class_the_adr_gives_them(
    error_type: str, expected: FailureClass
) -> None:
    assert classify_error(error_type) is expected


@given(st.text(max_size=30).filter(lambda t: t not in TASK_ERRORS))
def test_anything_not_known_as_the_tasks_counts_against_the_orchestrator(error: str) -> None:
    assert classify_error(error) is ORCH
    assert classify_error(None) is ORCH


def test_the_lists_do_not_overlap() -> None:
    assert not TASK_ERRORS & ORCHESTRATION_ERRORS
    assert not COMPOSITE_ERRORS & (TASK_ERRORS | ORCHESTRATION_ERRORS)


def test_a_wrong_answer_ends_a_session_as_a_task_failure_even_after_a_timeout() -> None:
    events = [failed("solo", "timeout"), failed("solo", "bad_output")]
    assert session_failure_class("bad_output", "solo", events) is TASK


def test_no_agent_left_after_wrong_answers_is_the_tasks_after_a_timeout_the_orchestrators() -> None:
    wrong = [failed("swarm/item0/0", "bad_output", failure_class="task")]
    assert session_failure_class("no_eligible_agent", "swarm/item0/0", wrong) is TASK
    dark = [failed("solo", "timeout")]
    assert session_failure_class("no_eligible_agent", "solo", dark) is ORCH
    assert session_failure_class("no_eligible_agent", "solo", []) is ORCH


def test_a_pattern_failure_takes_the_class_of_the_work_it_lost() -> None:
    task_only = [failed("hier/worker/0", "bad_output"), failed("hier/worker/1", "bad_output")]
    assert session_failure_class("subtasks_failed", "hier/aggregate", task_only) is TASK
    mixed = [*task_only, failed("hier/worker/2", "rate_limited")]
    assert session_failure_class("subtasks_failed", "hier/aggregate", mixed) is ORCH
    # nothing recorded about what was lost: the orchestrator's
    assert session_failure_class("swarm_stalled", "swarm/terminate", []) is ORCH


def test_work_retried_to_success_is_not_a_cause() -> None:
    events = [
        failed("swarm/item0/0", "timeout"),  # handed to the next peer, which finished it
        done("swarm/item0/1"),
        failed("swarm/item1/0", "bad_output"),
        failed("swarm/item1/1", "bad_output"),
        failed("hier/worker/0", "rate_limited"),
        done("hier/worker/0"),
    ]
    assert unrecovered_failures(events) == {"swarm/item1": TASK}
    assert session_failure_class("swarm_stalled", "swarm/terminate", events) is TASK


def test_the_class_recorded_on_an_event_wins_over_its_type() -> None:
    events = [failed("a", "something_new", failure_class="task")]
    assert unrecovered_failures(events) == {"a": TASK}


def test_orchestration_failures_get_retries_beyond_the_tenants_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=1, orchestration_retries=2)
    assert next_action("transient", 1, policy, "rate_limited") is RetryAction.RETRY_SAME
    assert next_action("agent_fault", 2, policy, "agent_error") is RetryAction.REROUTE
    assert next_action("agent_fault", 3, policy, "agent_error") is RetryAction.FAIL
    # a wrong answer uses the tenant's attempts only, and so does an untyped call
    assert next_action("agent_fault", 1, policy, "bad_output") is RetryAction.FAIL
    assert next_action("transient", 1, policy) is RetryAction.FAIL
    assert next_action("permanent", 1, RetryPolicy(max_attempts=3), "rate_limited") is (
        RetryAction.FAIL
    )
