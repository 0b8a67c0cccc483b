"""Retry policy as pure functions: what to do after a failed call, and how long to wait."""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from nofx.failures import ErrorClass, FailureClass, classify_error


class RetryAction(StrEnum):
    RETRY_SAME = "retry_same_agent"
    REROUTE = "reroute"
    FAIL = "fail"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    base_delay_s: float = 0.2
    max_delay_s: float = 10.0
    multiplier: float = 2.0
    # attempts beyond max_attempts for failures that produced no answer (ADR 0018): the
    # tenant's max_attempts bounds tries at the task, not the orchestrator's own misses
    orchestration_retries: int = 2


def next_action(
    error_class: ErrorClass | str,
    attempt: int,
    policy: RetryPolicy,
    error_type: str | None = None,
) -> RetryAction:
    """Transient -> same agent after back-off; agent fault -> another agent; permanent -> stop.

    An orchestration failure (``error_type`` classified so) may use
    ``policy.orchestration_retries`` attempts beyond ``max_attempts``."""
    limit = policy.max_attempts
    if error_type is not None and classify_error(error_type) is FailureClass.ORCHESTRATION:
        limit += policy.orchestration_retries
    if attempt >= limit:
        return RetryAction.FAIL
    error_class = ErrorClass(error_class)
    if error_class is ErrorClass.PERMANENT:
        return RetryAction.FAIL
    if error_class is ErrorClass.TRANSIENT:
        return RetryAction.RETRY_SAME
    return RetryAction.REROUTE


def backoff_delay(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Exponential back-off with full jitter (AWS style): uniform(0, min(cap, base * m^(n-1)))."""
    ceiling = min(
        policy.max_delay_s, policy.base_delay_s * policy.multiplier ** max(0, attempt - 1)
    )
    return rng.uniform(0.0, ceiling)
