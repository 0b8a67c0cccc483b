"""API usage by key, tenant, endpoint and hour: the raw facts of user behaviour analytics.

A pure ASGI middleware counts each authenticated request under (tenant, key, method, route
template, hour) in memory and writes the counts as ``ApiUsageCounted`` events (one per
bucket, in the tenant's ``api-usage-<tenant>`` stream) when the hour turns or a minute
has passed, in the thread pool, so a request never waits on the database. The dbt mart
``api_usage_hourly`` sums them. Routes are templates (``/sessions/{session_id}``), never raw
paths, so ids and tenant input do not become columns.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from nofx.data_contract import StreamType
from nofx.domain import NewEvent, utcnow

API_PREFIX = "/api/v1"
STREAM_TYPE = StreamType.API_USAGE
FLUSH_S = 60.0


@dataclass
class Bucket:
    requests: int = 0
    client_errors: int = 0
    server_errors: int = 0
    total_ms: float = 0.0


@dataclass
class UsageCounter:
    """Counts per bucket; ``drain`` hands them over when they are due and starts afresh."""

    flush_s: float = FLUSH_S
    buckets: dict[tuple[str, str, str, str, str], Bucket] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    hour: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(
        self, tenant: str, key_id: str, method: str, route: str, status: int, ms: float
    ) -> bool:
        """Count one request; True when the counts are due to be written."""
        hour = utcnow().strftime("%Y-%m-%dT%H:00:00+00:00")
        with self.lock:
            turned = bool(self.hour) and hour != self.hour and bool(self.buckets)
            bucket = self.buckets.setdefault((tenant, key_id, method, route, hour), Bucket())
            bucket.requests += 1
            bucket.client_errors += int(400 <= status < 500)
            bucket.server_errors += int(status >= 500)
            bucket.total_ms += ms
            self.hour = hour
            return turned or time.monotonic() - self.started >= self.flush_s

    def drain(self) -> dict[tuple[str, str, str, str, str], Bucket]:
        with self.lock:
            out, self.buckets, self.started = self.buckets, {}, time.monotonic()
            return out


def record_usage(store: Any, buckets: dict[tuple[str, str, str, str, str], Bucket]) -> None:
    """One event per bucket, in its tenant's stream."""
    for (tenant, key_id, method, route, hour), b in buckets.items():
        store.append(
            f"api-usage-{tenant}",
            STREAM_TYPE,
            tenant,
            [
                NewEvent(
                    type="ApiUsageCounted",
                    payload={
                        "key_id": key_id,
                        "method": method,
                        "route": route,
                        "hour": hour,
                        "requests": b.requests,
                        "client_errors": b.client_errors,
                        "server_errors": b.server_errors,
                        "total_ms": round(b.total_ms, 3),
                    },
                )
            ],
        )


class UsageMiddleware:
    def __init__(self, app: Any, store: Callable[[], Any], counter: UsageCounter) -> None:
        self.app = app
        self.store = store
        self.counter = counter

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.monotonic()

        async def observe(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            principal = (scope.get("state") or {}).get("principal")
            route = getattr(scope.get("route"), "path", None)
            if principal is not None and route:
                if scope["path"].startswith(API_PREFIX + "/") and not route.startswith(API_PREFIX):
                    route = API_PREFIX + route
                due = self.counter.add(
                    principal.tenant_id,
                    principal.key_id or "",
                    scope["method"],
                    route,
                    status,
                    (time.monotonic() - started) * 1000,
                )
                if due:
                    await anyio.to_thread.run_sync(record_usage, self.store(), self.counter.drain())


def install(app: Any) -> UsageCounter:
    counter = UsageCounter()
    app.state.usage = counter
    app.add_middleware(UsageMiddleware, store=lambda: app.state.services.store, counter=counter)
    return counter


def flush(app: Any) -> None:
    """Write what is counted now (at shutdown, and by the demo at the end of its week)."""
    record_usage(app.state.services.store, app.state.usage.drain())
