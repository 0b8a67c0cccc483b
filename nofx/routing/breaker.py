"""Circuit breakers per agent, as a pure state machine: the caller passes ``now``.

closed --(failure rate over the window >= threshold with enough calls, or N failures in a row)--> open
open --(cooldown elapsed)--> half_open: up to ``probes`` calls go through
half_open --(a probe succeeds)--> closed; --(a probe fails)--> open again
Transitions are returned as values so the runtime records them as events.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerPolicy:
    window: int = 20
    min_calls: int = 5
    failure_rate: float = 0.5
    consecutive_failures: int = 5
    cooldown_s: float = 30.0
    probes: int = 1


@dataclass(frozen=True)
class Transition:
    agent_id: str
    before: BreakerState
    after: BreakerState
    reason: str
    at: float


@dataclass
class Breaker:
    agent_id: str
    policy: BreakerPolicy = field(default_factory=BreakerPolicy)
    state: BreakerState = BreakerState.CLOSED
    outcomes: deque[bool] = field(default_factory=deque)
    consecutive: int = 0
    opened_at: float = 0.0
    probes_in_flight: int = 0

    def _move(self, to: BreakerState, reason: str, now: float) -> Transition:
        t = Transition(self.agent_id, self.state, to, reason, now)
        self.state = to
        if to is BreakerState.OPEN:
            self.opened_at = now
        if to is BreakerState.CLOSED:
            self.outcomes.clear()
            self.consecutive = 0
        self.probes_in_flight = 0
        return t

    def allows(self, now: float) -> tuple[bool, Transition | None]:
        """May a call go to this agent now? Moves open -> half_open when the cooldown is over."""
        transition = None
        if self.state is BreakerState.OPEN and now - self.opened_at >= self.policy.cooldown_s:
            transition = self._move(BreakerState.HALF_OPEN, "cooldown elapsed: probing", now)
        if self.state is BreakerState.CLOSED:
            return True, transition
        if self.state is BreakerState.HALF_OPEN and self.probes_in_flight < self.policy.probes:
            return True, transition
        return False, transition

    def on_call(self) -> None:
        if self.state is BreakerState.HALF_OPEN:
            self.probes_in_flight += 1

    def record(self, success: bool, now: float) -> Transition | None:
        if self.state is BreakerState.HALF_OPEN:
            if success:
                return self._move(BreakerState.CLOSED, "probe succeeded", now)
            return self._move(BreakerState.OPEN, "probe failed", now)
        if self.state is BreakerState.OPEN:
            return None  # a straggler from before the breaker opened
        self.outcomes.append(success)
        while len(self.outcomes) > self.policy.window:
            self.outcomes.popleft()
        self.consecutive = 0 if success else self.consecutive + 1
        failures = sum(1 for ok in self.outcomes if not ok)
        if self.consecutive >= self.policy.consecutive_failures:
            return self._move(BreakerState.OPEN, f"{self.consecutive} failures in a row", now)
        if (
            len(self.outcomes) >= self.policy.min_calls
            and failures / len(self.outcomes) >= self.policy.failure_rate
        ):
            return self._move(
                BreakerState.OPEN,
                f"failure rate {failures}/{len(self.outcomes)} over the window",
                now,
            )
        return None


class BreakerBoard:
    """All agents' breakers; collects transitions for the caller to persist."""

    def __init__(self, policy: BreakerPolicy | None = None) -> None:
        self.policy = policy or BreakerPolicy()
        self.breakers: dict[str, Breaker] = {}
        self.transitions: list[Transition] = []

    def get(self, agent_id: str) -> Breaker:
        if agent_id not in self.breakers:
            self.breakers[agent_id] = Breaker(agent_id, self.policy)
        return self.breakers[agent_id]

    def allows(self, agent_id: str, now: float) -> bool:
        ok, transition = self.get(agent_id).allows(now)
        if transition:
            self.transitions.append(transition)
        return ok

    def record(self, agent_id: str, success: bool, now: float) -> None:
        transition = self.get(agent_id).record(success, now)
        if transition:
            self.transitions.append(transition)

    def adopt(self, agent_id: str, state: BreakerState, reason: str, now: float) -> None:
        """Take over a transition another worker observed, so one bad agent is cut off for all.
        Not re-emitted as a transition of ours: the other worker already recorded it."""
        breaker = self.get(agent_id)
        if state is BreakerState.OPEN and breaker.state is not BreakerState.OPEN:
            breaker._move(BreakerState.OPEN, f"opened elsewhere: {reason}", now)
        elif state is BreakerState.CLOSED and breaker.state is not BreakerState.CLOSED:
            breaker._move(BreakerState.CLOSED, f"closed elsewhere: {reason}", now)

    def state(self, agent_id: str) -> BreakerState:
        return self.get(agent_id).state

    def recovers_in(self, agent_ids: list[str], now: float) -> float | None:
        """Seconds until the first of these agents that its breaker holds back may take a call
        again; None when the breakers hold none of them back (waiting would not help)."""
        waits = []
        for agent_id in agent_ids:
            breaker = self.get(agent_id)
            if breaker.state is BreakerState.OPEN:
                waits.append(max(0.0, breaker.opened_at + self.policy.cooldown_s - now))
            elif (
                breaker.state is BreakerState.HALF_OPEN
                and breaker.probes_in_flight >= self.policy.probes
            ):
                waits.append(0.5)  # a probe is out: its answer decides, look again shortly
        return min(waits) if waits else None

    def drain(self) -> list[Transition]:
        out, self.transitions = self.transitions, []
        return out
