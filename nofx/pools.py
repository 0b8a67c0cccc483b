"""Agent pools: replicas of an agent that auto-scale, with every decision an event.

A pool caps the calls an agent takes at once at ``replicas x max_concurrency``; calls beyond
that wait for a slot (the queue the autoscaler watches). Agents without a pool are not
capped, as before. Pool size lives in the store (``pool-<agent_id>`` streams projected into
``agent_pools``), so every worker sharing the store uses the same size, and two workers that
decide at once cannot both apply their decision: the second one's append fails its version
check and it re-reads instead.

For simulated agents the replicas are simulated capacity, not processes: scaling them
changes how many calls run at once and how long calls queue, which is what a real
deployment's replicas change too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from nofx.data_contract import StreamType
from nofx.demand_forecast import WarehouseDemandForecast
from nofx.domain import Agent, Event, NewEvent, utcnow
from nofx.errors import ConcurrencyError, NotFoundError
from nofx.routing.autoscale import PoolSignal, ScalingDecision, ScalingPolicy
from nofx.routing.scale_ahead import decide_ahead
from nofx.store import EventStore, Transaction
from nofx.store.event_store import as_utc
from nofx.store.schema import agent_pools

STREAM_TYPE = StreamType.POOL


def stream_id(agent_id: str) -> str:
    return f"pool-{agent_id}"


@dataclass(frozen=True)
class Pool:
    agent_id: str
    tenant_id: str
    replicas: int
    policy: ScalingPolicy
    last_reason: str | None
    last_scaled_at: datetime | None
    version: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "tenant_id": self.tenant_id,
            "replicas": self.replicas,
            "policy": self.policy.as_dict(),
            "last_reason": self.last_reason,
            "last_scaled_at": self.last_scaled_at,
            "version": self.version,
        }


def _row_to_pool(row: Any) -> Pool:
    return Pool(
        agent_id=row.agent_id,
        tenant_id=row.tenant_id,
        replicas=row.replicas,
        policy=ScalingPolicy.from_dict(row.policy),
        last_reason=row.last_reason,
        last_scaled_at=None if row.last_scaled_at is None else as_utc(row.last_scaled_at),
        version=row.version,
    )


class PoolService:
    """Configure pools and record scaling decisions, projecting them in the same transaction."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def configure(
        self, agent: Agent, policy: ScalingPolicy, *, replicas: int | None = None
    ) -> Pool:
        """Create or change a pool; the size is clamped into the new policy's bounds."""
        current = self.find(agent.agent_id)
        start = replicas if replicas is not None else (current.replicas if current else 1)
        start = min(policy.max_replicas, max(policy.min_replicas, start))
        payload = {"agent_id": agent.agent_id, "policy": policy.as_dict(), "replicas": start}

        def write(tx: Transaction) -> None:
            written = tx.append(
                stream_id(agent.agent_id),
                STREAM_TYPE,
                agent.tenant_id,
                [NewEvent(type="PoolConfigured", payload=payload)],
                expected_version=current.version if current else 0,
            )
            self._project(tx.conn, written, agent.tenant_id)

        self.store.call(write)
        return self.get(agent.agent_id)

    def scale(self, pool: Pool, decision: ScalingDecision, signal: PoolSignal, worker: str) -> Pool:
        """Record and apply a decision made on ``pool`` as read; ConcurrencyError if it moved."""
        payload = {
            "agent_id": pool.agent_id,
            "before": decision.before,
            "after": decision.after,
            "direction": decision.direction,
            "reason": decision.reason,
            "utilisation": round(decision.utilisation, 4),
            "in_flight": signal.in_flight,
            "queued": signal.queued,
            "p95_latency_ms": signal.p95_latency_ms,
            "worker_id": worker,
        }

        def write(tx: Transaction) -> None:
            written = tx.append(
                stream_id(pool.agent_id),
                STREAM_TYPE,
                pool.tenant_id,
                [NewEvent(type="PoolScaled", payload=payload)],
                expected_version=pool.version,
            )
            self._project(tx.conn, written, pool.tenant_id)

        self.store.call(write)
        return self.get(pool.agent_id)

    @staticmethod
    def _project(conn: Any, written: list[Event], tenant_id: str) -> None:
        for event in written:
            p = event.payload
            values: dict[str, Any] = {"version": event.seq, "updated_at": event.occurred_at}
            if event.type == "PoolConfigured":
                values.update(replicas=p["replicas"], policy=p["policy"])
                values["last_reason"] = f"configured with {p['replicas']} replicas"
            elif event.type == "PoolScaled":
                values.update(
                    replicas=p["after"], last_reason=p["reason"], last_scaled_at=event.occurred_at
                )
            exists = conn.execute(
                select(agent_pools.c.agent_id).where(agent_pools.c.agent_id == p["agent_id"])
            ).first()
            if exists:
                conn.execute(
                    update(agent_pools).where(agent_pools.c.agent_id == p["agent_id"]), values
                )
            else:
                conn.execute(
                    insert(agent_pools),
                    {"agent_id": p["agent_id"], "tenant_id": tenant_id, **values},
                )

    def find(self, agent_id: str) -> Pool | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(
                select(agent_pools).where(agent_pools.c.agent_id == agent_id)
            ).first()
        return None if row is None else _row_to_pool(row)

    def get(self, agent_id: str) -> Pool:
        pool = self.find(agent_id)
        if pool is None:
            raise NotFoundError(
                f"agent {agent_id} has no pool",
                hint="configure one with PUT /api/v1/orchestration/pools/{agent_id}",
            )
        return pool

    def decisions(self, agent_id: str, limit: int = 100) -> list[Event]:
        """The pool's history, newest last: configuration changes and scaling decisions."""
        return self.store.read_stream(stream_id(agent_id))[-limit:]

    def list(self, tenant_id: str | None = None) -> list[Pool]:
        query = select(agent_pools).order_by(agent_pools.c.agent_id)
        if tenant_id is not None:
            query = query.where(agent_pools.c.tenant_id == tenant_id)
        with self.store.engine.connect() as conn:
            return [_row_to_pool(r) for r in conn.execute(query)]


class PoolGate:
    """This process's slots for one pool: at most ``capacity`` calls at once, the rest queue;
    among queued callers, a higher ``priority`` goes first.

    It also keeps the highest load seen since the autoscaler last looked (``take_peaks``): a
    burst that starts and drains between two autoscaling rounds still counts as demand."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_flight = 0
        self.waiting: list[int] = []
        self._changed = asyncio.Condition()
        self._peak_in_flight = 0
        self._peak_queued = 0

    def take_peaks(self) -> tuple[int, int]:
        """The most calls in flight and the longest queue since the last call, then reset."""
        peaks = (
            max(self._peak_in_flight, self.in_flight),
            max(self._peak_queued, self.queued),
        )
        self._peak_in_flight, self._peak_queued = self.in_flight, self.queued
        return peaks

    @property
    def queued(self) -> int:
        return len(self.waiting)

    async def resize(self, capacity: int) -> None:
        async with self._changed:
            self.capacity = capacity
            self._changed.notify_all()

    @asynccontextmanager
    async def slot(self, priority: int = 0) -> AsyncIterator[None]:
        async with self._changed:
            self.waiting.append(priority)
            self._peak_queued = max(self._peak_queued, len(self.waiting))
            try:
                await self._changed.wait_for(
                    lambda: self.in_flight < self.capacity and priority >= max(self.waiting)
                )
            finally:
                self.waiting.remove(priority)
                self._changed.notify_all()  # the next in line may now be the highest
            self.in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self.in_flight)
        try:
            yield
        finally:
            async with self._changed:
                self.in_flight -= 1
                self._changed.notify_all()


def _log_load_failure(done: asyncio.Future[None]) -> None:
    exc = None if done.cancelled() else done.exception()
    if exc is not None:
        logging.getLogger(__name__).warning("reading the pools failed: %s", exc)


class Autoscaler:
    """Holds this worker's gates and turns what they see into recorded scaling decisions."""

    def __init__(
        self,
        pools: PoolService,
        worker_id: str,
        *,
        refresh_s: float = 1.0,
        forecast: WarehouseDemandForecast | None = None,
    ) -> None:
        self.pools = pools
        # the usage forecast, so pools grow before the peak (nofx.routing.scale_ahead)
        self.forecast = forecast if forecast is not None else WarehouseDemandForecast()
        self.worker_id = worker_id
        self.refresh_s = refresh_s
        self.gates: dict[str, PoolGate] = {}
        self._known: dict[str, Pool] = {}
        self._loaded_at = float("-inf")
        self._latency: dict[str, list[float]] = {}
        self._loading: asyncio.Future[None] | None = None

    def _load(self, force: bool = False) -> None:
        if force or time.monotonic() - self._loaded_at >= self.refresh_s:
            self._known = {p.agent_id: p for p in self.pools.list()}
            self._loaded_at = time.monotonic()

    async def _load_async(self, force: bool = False) -> None:
        """``_load`` in a thread, off the event loop; concurrent callers share one read."""
        if self._loading is None and (
            force or time.monotonic() - self._loaded_at >= self.refresh_s
        ):

            async def load() -> None:
                try:
                    pools = await asyncio.to_thread(self.pools.list)
                    self._known = {p.agent_id: p for p in pools}
                    self._loaded_at = time.monotonic()
                finally:
                    self._loading = None

            self._loading = asyncio.ensure_future(load())
            self._loading.add_done_callback(_log_load_failure)
        # a refresh runs behind the pools already known: a call about to start waits for
        # the first read only, not for every refresh (ten thousand waiters woken at once
        # stall the loop, ADR 0015)
        if self._loading is not None and (force or self._loaded_at == float("-inf")):
            await asyncio.shield(self._loading)

    def pool_for(self, agent: Agent) -> Pool | None:
        self._load()
        return self._known.get(agent.agent_id)

    @asynccontextmanager
    async def slot(self, agent: Agent) -> AsyncIterator[None]:
        """A slot in the agent's pool, waiting while the pool is full; no-op without a pool."""
        await self._load_async()
        pool = self._known.get(agent.agent_id)
        if pool is None:
            yield
            return
        capacity = pool.replicas * agent.max_concurrency
        gate = self.gates.get(agent.agent_id)
        if gate is None:
            gate = self.gates[agent.agent_id] = PoolGate(capacity)
        elif gate.capacity != capacity:
            await gate.resize(capacity)
        async with gate.slot():
            yield

    def observe_latency(self, agent_id: str, latency_ms: float) -> None:
        window = self._latency.setdefault(agent_id, [])
        window.append(latency_ms)
        del window[:-200]

    def p95_latency_ms(self, agent_id: str) -> float | None:
        window = sorted(self._latency.get(agent_id, []))
        return window[int(0.95 * (len(window) - 1))] if window else None

    async def evaluate(
        self, agents: dict[str, Agent], now: datetime | None = None
    ) -> list[ScalingDecision]:
        """One autoscaling round over the pools this worker has seen traffic for."""
        await self._load_async(force=True)
        await asyncio.to_thread(self.forecast.refresh)
        now = now or utcnow()
        made = []
        for agent_id, gate in list(self.gates.items()):
            pool, agent = self._known.get(agent_id), agents.get(agent_id)
            if pool is None or agent is None:
                continue
            last = pool.last_scaled_at.timestamp() if pool.last_scaled_at else None
            in_flight, queued = gate.take_peaks()
            signal = PoolSignal(
                replicas=pool.replicas,
                per_replica_concurrency=agent.max_concurrency,
                in_flight=in_flight,
                queued=queued,
                now=now.timestamp(),
                last_scaled_at=last,
                p95_latency_ms=self.p95_latency_ms(agent_id),
            )
            decision = decide_ahead(pool.policy, signal, self.forecast.peak(agent_id, now))
            if decision is None:
                continue
            try:
                updated = await asyncio.to_thread(
                    self.pools.scale, pool, decision, signal, self.worker_id
                )
            except ConcurrencyError:
                continue  # another worker changed the pool first; re-read next round
            self._known[agent_id] = updated
            await gate.resize(updated.replicas * agent.max_concurrency)
            made.append(decision)
        return made
