"""Online estimates per (agent, capability): a Beta posterior for success, recent-window latency and cost."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field


def prior_success(proficiency: int) -> float:
    """Declared proficiency 1..5 maps to a prior mean 0.63..0.95 (the simulator's convention)."""
    return min(0.95, 0.55 + 0.08 * proficiency)


@dataclass
class AgentEstimate:
    """Beta(alpha, beta) on success, with exponential forgetting so degradation shows up.

    Latency and cost are kept over a recent window with running sums, so reading
    them costs O(1) on the routing hot path; the p95 is cached until the next update.
    """

    alpha: float
    beta: float
    window: int = 50
    latencies: deque[float] = field(default_factory=deque)
    costs: deque[float] = field(default_factory=deque)
    observations: int = 0
    _latency_sum: float = 0.0
    _cost_sum: float = 0.0
    _p95: float | None = None

    @classmethod
    def from_prior(cls, mean: float, strength: float = 4.0) -> AgentEstimate:
        return cls(alpha=mean * strength, beta=(1 - mean) * strength)

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    def sample(self, rng: random.Random) -> float:
        return rng.betavariate(self.alpha, self.beta)

    def update(
        self, success: bool, latency_ms: float, cost_usd: float, decay: float = 0.995
    ) -> None:
        self.alpha = self.alpha * decay + (1.0 if success else 0.0)
        self.beta = self.beta * decay + (0.0 if success else 1.0)
        if latency_ms > 0:
            self.latencies.append(latency_ms)
            self._latency_sum += latency_ms
            if len(self.latencies) > self.window:
                self._latency_sum -= self.latencies.popleft()
            self._p95 = None
        if cost_usd > 0:
            self.costs.append(cost_usd)
            self._cost_sum += cost_usd
            if len(self.costs) > self.window:
                self._cost_sum -= self.costs.popleft()
        self.observations += 1

    def latency_p95(self) -> float | None:
        if not self.latencies:
            return None
        if self._p95 is None:
            ordered = sorted(self.latencies)
            self._p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        return self._p95

    def latency_mean(self) -> float | None:
        return self._latency_sum / len(self.latencies) if self.latencies else None

    def cost_mean(self) -> float | None:
        return self._cost_sum / len(self.costs) if self.costs else None
