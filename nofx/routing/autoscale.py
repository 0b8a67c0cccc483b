"""Auto-scaling decisions for agent pools, as a pure function: the caller passes the signal.

A pool is an agent's replicas; its capacity is ``replicas x max_concurrency`` calls at once.
The rule follows the Kubernetes Horizontal Pod Autoscaler, which operators already know:

    desired = ceil(demand / (per_replica_capacity x target_utilisation))

where demand is calls in flight plus calls queued for a slot. A p95 latency above the
pool's target adds a replica even when the arithmetic says the pool is big enough (the
agent is slow under its current load). Changes within a 10% tolerance are ignored, so the
pool does not flap; scale-up waits ``scale_up_cooldown_s`` after the last change and
scale-down waits the longer ``scale_down_cooldown_s`` and then sheds at most half the
replicas at a time, because scaling down too eagerly is what makes pools oscillate.
Every decision carries its reason so the runtime can record it as an event.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from nofx.errors import ValidationError

TOLERANCE = 0.10


class PolicyError(ValidationError, ValueError):  # still a ValueError for older callers
    """A scaling policy that cannot work (min above max, a target outside (0, 1])."""


@dataclass(frozen=True)
class ScalingPolicy:
    min_replicas: int = 1
    max_replicas: int = 8
    target_utilisation: float = 0.7
    latency_target_ms: float | None = None
    scale_up_cooldown_s: float = 15.0
    scale_down_cooldown_s: float = 60.0

    def __post_init__(self) -> None:
        if self.min_replicas < 0 or self.max_replicas < 1:
            raise PolicyError("min_replicas must be >= 0 and max_replicas >= 1")
        if self.min_replicas > self.max_replicas:
            raise PolicyError(
                f"min_replicas {self.min_replicas} is above max_replicas {self.max_replicas}: "
                "lower the minimum or raise the maximum"
            )
        if not 0 < self.target_utilisation <= 1:
            raise PolicyError("target_utilisation must be in (0, 1], e.g. 0.7 for 70%")
        if self.latency_target_ms is not None and self.latency_target_ms <= 0:
            raise PolicyError("latency_target_ms must be positive, or omitted")
        if self.scale_up_cooldown_s < 0 or self.scale_down_cooldown_s < 0:
            raise PolicyError("cooldowns cannot be negative")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScalingPolicy:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass(frozen=True)
class PoolSignal:
    """What a worker observed of one pool at ``now`` (seconds on the caller's clock)."""

    replicas: int
    per_replica_concurrency: int
    in_flight: int
    queued: int
    now: float
    last_scaled_at: float | None = None
    p95_latency_ms: float | None = None

    @property
    def capacity(self) -> int:
        return self.replicas * self.per_replica_concurrency

    @property
    def utilisation(self) -> float:
        """Demand over capacity: above 1 means calls wait for a slot."""
        demand = self.in_flight + self.queued
        return demand / self.capacity if self.capacity else (math.inf if demand else 0.0)


@dataclass(frozen=True)
class ScalingDecision:
    before: int
    after: int
    reason: str
    utilisation: float

    @property
    def direction(self) -> str:
        return "up" if self.after > self.before else "down"


@dataclass(frozen=True)
class Desired:
    replicas: int
    reason: str
    for_latency: bool = False


def desired_replicas(policy: ScalingPolicy, signal: PoolSignal) -> Desired:
    """The replica count the signal asks for, clamped to the policy, and why."""
    demand = signal.in_flight + signal.queued
    per_replica = signal.per_replica_concurrency * policy.target_utilisation
    wanted = math.ceil(demand / per_replica) if demand else 0
    reason = (
        f"demand {demand} (in flight {signal.in_flight}, queued {signal.queued}) at "
        f"{policy.target_utilisation:.0%} of {signal.per_replica_concurrency} per replica "
        f"needs {wanted}"
    )
    slow = (
        policy.latency_target_ms is not None
        and signal.p95_latency_ms is not None
        and signal.p95_latency_ms > policy.latency_target_ms * (1 + TOLERANCE)
        and demand > 0
    )
    for_latency = bool(slow and wanted <= signal.replicas)
    if for_latency:
        wanted = signal.replicas + 1
        reason = (
            f"p95 latency {signal.p95_latency_ms:.0f} ms is over the "
            f"{policy.latency_target_ms:.0f} ms target"
        )
    clamped = min(policy.max_replicas, max(policy.min_replicas, wanted))
    if clamped != wanted:
        bound = "max_replicas" if clamped < wanted else "min_replicas"
        reason += f"; held at {bound} {clamped}"
    return Desired(clamped, reason, for_latency)


def decide(policy: ScalingPolicy, signal: PoolSignal) -> ScalingDecision | None:
    """Scale the pool, or not (None): the decision the runtime records and applies."""
    desired = desired_replicas(policy, signal)
    target, reason = desired.replicas, desired.reason
    current = signal.replicas
    if target == current:
        return None
    since = math.inf if signal.last_scaled_at is None else signal.now - signal.last_scaled_at
    outside_bounds = current < policy.min_replicas or current > policy.max_replicas
    if target > current:
        if not outside_bounds and since < policy.scale_up_cooldown_s:
            return None
        # within the tolerance band the pool is close enough: do not add a replica for noise
        near_target = signal.utilisation <= policy.target_utilisation * (1 + TOLERANCE)
        if not outside_bounds and current and near_target and not desired.for_latency:
            return None
        return ScalingDecision(current, target, reason, signal.utilisation)
    if not outside_bounds and since < policy.scale_down_cooldown_s:
        return None
    if not outside_bounds and signal.utilisation >= policy.target_utilisation * (1 - TOLERANCE):
        return None
    floor = target if outside_bounds else max(target, current - max(1, current // 2))
    return ScalingDecision(current, floor, reason, signal.utilisation)
