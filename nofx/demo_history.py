"""A week of simulated history for ``nofx demo``: sessions hour by hour on a simulated clock.

Real sessions run on the simulated fleet, but each hour's batch is stamped with that hour
(nofx.simclock), so forecasts see a week of daily and weekly seasons, anomaly detection has
days of baseline before one agent degrades on the last day, pools scale under a launch spike,
operators adapt some workflows before they start, and the API is used hour by hour (dashboard
and CI keys through the real HTTP app), which fills API latency and usage analytics. At the
end, a batch is left waiting so the models predict it before its outcome is known.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from nofx import simclock
from nofx.domain import AgentSpec, PatternName, SessionRequest, SessionStatus
from nofx.store import EventStore

DEGRADED_AGENT = "orion-haiku"
SPIKE_SHARE = 0.08  # of all sessions, arriving in one hour of the last day


def hourly_weights(start: datetime, hours: int) -> list[float]:
    """Demand per hour: business hours busiest, nights quiet, weekends at 40%."""
    weights = []
    for h in range(hours):
        at = start + timedelta(hours=h)
        base = 3.0 if 9 <= at.hour < 18 else 1.2 if 7 <= at.hour < 22 else 0.3
        weights.append(base * (0.4 if at.weekday() >= 5 else 1.0))
    return weights


def spread(total: int, weights: Sequence[float]) -> list[int]:
    """Counts per slot proportional to ``weights`` that add up to ``total`` exactly (largest
    remainders)."""
    if total <= 0 or not weights:
        return [0] * len(weights)
    whole = sum(weights)
    exact = [total * w / whole for w in weights]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def interleave(sessions: list[SessionRequest], workflows: list[SessionRequest]) -> list[Any]:
    """Workflows spread evenly through the sessions (the last one near the end)."""
    out: list[Any] = list(sessions)
    n = len(sessions) + len(workflows)
    for i, wf in enumerate(workflows):
        out.insert(min(len(out), round((i + 0.9) * n / len(workflows))), wf)
    return out


@dataclass
class History:
    start: datetime
    hours: int
    sessions: list[Any] = field(default_factory=list)
    adaptations: int = 0
    api_requests: int = 0
    waiting: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> int:
        return sum(1 for s in self.sessions if s.status is SessionStatus.SUCCEEDED)


class ApiTraffic:
    """A dashboard (read key) and a CI job (write key) using the real HTTP API in-process."""

    def __init__(self, store: EventStore, tenant_id: str = "default") -> None:
        from fastapi.testclient import TestClient

        from nofx.api.app import create_app
        from nofx.security import ApiKeyService, Scope

        keys = ApiKeyService(store)
        self.read = keys.create(tenant_id, "demo-dashboard", {Scope.READ}).plaintext
        self.write = keys.create(tenant_id, "demo-ci", {Scope.WRITE}).plaintext
        self.client = TestClient(create_app(store=store, auth_required=True))
        self.client.__enter__()
        self.sent = 0

    def hour(self, busy: float, rng: random.Random) -> None:
        """Requests in proportion to how busy the hour is; some refused (a CI job asking for
        an alert that does not exist), as real clients do."""
        dash = {"Authorization": f"Bearer {self.read}"}
        ci = {"Authorization": f"Bearer {self.write}"}
        calls: list[tuple[str, dict[str, str]]] = [("/api/v1/alerts", dash)]
        if busy > 2:
            calls.append(("/api/v1/orchestration/sessions?limit=20", dash))
        if rng.random() < 0.5:
            calls.append(("/api/v1/agents", ci))
        if rng.random() < 0.15:
            calls.append(("/api/v1/alerts/alr_missing", ci))
        for path, headers in calls:
            self.client.get(path, headers=headers)
        self.sent += len(calls)

    def close(self) -> None:
        self.client.__exit__(None, None, None)  # flushes the last latency window and usage


async def simulate_week(
    store: EventStore,
    runtime: Any,
    requests: list[SessionRequest],
    *,
    days: int,
    seed: int,
    end: datetime | None = None,
    waiting: int = 30,
    api: bool = True,
    on_done: Callable[[Any], None] | None = None,
) -> History:
    """Run ``requests`` spread over ``days`` of simulated hours ending at ``end`` (default:
    the top of the current hour), then submit ``waiting`` more that are left unrun."""
    from nofx.workflows.adapt import Adaptation, AdaptationService

    rng = random.Random(seed + 3)
    end = (end or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    hours = days * 24
    start = end - timedelta(hours=hours)
    history = History(start=start, hours=hours)
    weights = hourly_weights(start, hours)
    spike_hour = hours - 14  # the last day, mid-morning: a launch
    spike = round(len(requests) * SPIKE_SHARE)
    counts = spread(len(requests) - waiting - spike, weights)
    counts[spike_hour] += spike
    queue = iter(requests)
    traffic = ApiTraffic(store) if api else None
    adapter = AdaptationService(store, runtime.sessions, runtime.registry)
    workflows_seen = 0
    try:
        for h, count in enumerate(counts):
            simclock.set_now(start + timedelta(hours=h, minutes=rng.randint(0, 20)))
            if h == hours - 24:
                degrade(runtime.registry)
            if traffic is not None and weights[h] >= 1.0:
                await asyncio.to_thread(traffic.hour, weights[h], rng)
            for request in [next(queue) for _ in range(count)]:
                session = runtime.sessions.submit(request)
                if request.pattern is PatternName.WORKFLOW:
                    workflows_seen += 1
                    if workflows_seen % 2 == 1:  # an operator gives every other run more slots
                        adapter.adapt(
                            Adaptation.model_validate(
                                {
                                    "session_id": session.session_id,
                                    "changes": [
                                        {"op": "set_pool_limit", "pool": "default", "limit": 8}
                                    ],
                                    "reason": "demo operator: more parallel slots before it starts",
                                }
                            ),
                            session.tenant_id,
                        )
                        history.adaptations += 1
            if count:
                history.sessions += await run_watching_pools(runtime, on_done)
        simclock.set_now(end)
        history.waiting = [runtime.sessions.submit(r).session_id for r in queue]
    finally:
        if traffic is not None:
            await asyncio.to_thread(traffic.close)
            history.api_requests = traffic.sent
    return history


async def run_watching_pools(runtime: Any, on_done: Callable[[Any], None] | None) -> list[Any]:
    """Run the hour's batch with the autoscaler looking every 50 ms: a simulated hour lasts
    well under the runtime's own autoscaling interval."""
    batch = asyncio.ensure_future(runtime.run_pending(on_done=on_done))
    while not batch.done():
        await asyncio.wait({batch}, timeout=0.05)
        if not batch.done():
            await runtime.autoscale_once()
    await runtime.autoscale_once()  # the hour's peak load, even when it drained within 50 ms
    return list(batch.result().sessions)


def degrade(registry: Any) -> None:
    """The degraded agent gets slow and error-prone for the last day (an anomaly to find)."""
    for agent in registry.list():
        if agent.name != DEGRADED_AGENT:
            continue
        spec = AgentSpec.model_validate(agent.model_dump(include=set(AgentSpec.model_fields)))
        config = dict(spec.provider.config)
        config["latency_median_ms"] = float(config.get("latency_median_ms", 700)) * 4
        config["error_rate"] = 0.3
        provider = spec.provider.model_copy(update={"config": config})
        registry.update(agent.agent_id, spec.model_copy(update={"provider": provider}))


def define_business_metric(store: EventStore, tenant_id: str = "default") -> None:
    """A custom metric and an alert rule on it, as a tenant would define them over the API."""
    from nofx.alert_rules import AlertRule, Comparison, Severity, TenantRules
    from nofx.metrics import CustomMetricService

    CustomMetricService(store).define(
        tenant_id,
        "daily_spend_usd",
        "select sum(cost_usd) as value from agent_sessions "
        "where ended_at >= (select max(ended_at) from agent_sessions) - interval 1 day",
        description="what the last day of sessions cost",
    )
    TenantRules(store).put(
        tenant_id,
        AlertRule(
            "daily_spend",
            "custom:daily_spend_usd",
            Comparison.ABOVE,
            5.0,
            Severity.WARNING,
            description="the last day's sessions cost more than $5",
        ),
    )
