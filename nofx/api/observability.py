"""Prometheus metrics, the audit trail of writes, and the body size limit, as one pure ASGI middleware.

Besides the Prometheus histogram (for scrapers), each API process writes an
``ApiLatencyWindow`` event per minute with the requests it served and their p50/p95/p99, so
the data platform (marts, the API-latency alert rule, dashboards) sees the API's latency
without a metrics server.

(Starlette's ``@app.middleware("http")`` wraps every request in extra tasks and
streams; a plain ASGI middleware costs a fraction of that on the hot path.)
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nofx.api import problems
from nofx.domain import NewEvent

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
API_PREFIX = "/api/v1"
MAX_BODY_BYTES = 1024 * 1024
LATENCY_WINDOW_S = 60.0


class LatencyWindow:
    """Request durations of this process over a fixed window, flushed as one event."""

    def __init__(self, window_s: float = LATENCY_WINDOW_S) -> None:
        self.window_s = window_s
        self.started_wall = time.time()
        self.started = time.monotonic()
        self.durations_ms: list[float] = []
        self.server_errors = 0
        self.source = f"{socket.gethostname()}-{os.getpid()}"

    def add(self, elapsed_s: float, status: int) -> dict[str, Any] | None:
        """Record one request; returns the window's summary when the window is over."""
        self.durations_ms.append(elapsed_s * 1000)
        self.server_errors += status >= 500
        if time.monotonic() - self.started < self.window_s:
            return None
        return self.flush()

    def flush(self) -> dict[str, Any] | None:
        durations = sorted(self.durations_ms)
        summary = None
        if durations:

            def pick(q: float) -> float:
                return round(durations[min(len(durations) - 1, int(q * len(durations)))], 3)

            summary = {
                "source": self.source,
                "window_start_epoch_s": round(self.started_wall, 3),
                "window_s": round(time.monotonic() - self.started, 3),
                "requests": len(durations),
                "server_errors": self.server_errors,
                "p50_ms": pick(0.50),
                "p95_ms": pick(0.95),
                "p99_ms": pick(0.99),
            }
        self.started_wall, self.started = time.time(), time.monotonic()
        self.durations_ms, self.server_errors = [], 0
        return summary


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "nofx_http_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "nofx_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
            registry=self.registry,
        )
        self.sessions = Gauge(
            "nofx_sessions", "Sessions by status", ["status"], registry=self.registry
        )
        self.events = Gauge(
            "nofx_events_last_position", "Position of the newest event", registry=self.registry
        )


class EdgeMiddleware:
    """Refuses oversized bodies, times and counts every request, and audits every write."""

    def __init__(
        self, app: ASGIApp, fastapi_app: FastAPI, metrics: Metrics, window: LatencyWindow
    ) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        self.metrics = metrics
        self.window = window

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            response = problems.problem(
                413,
                "payload-too-large",
                "Payload too large",
                f"request bodies are limited to {MAX_BODY_BYTES} bytes; send less",
                scope["path"],
            )
            await response(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self._observe(scope, status["code"], time.perf_counter() - start)

    def _observe(self, scope: Scope, status: int, elapsed: float) -> None:
        route = scope.get("route")
        path = getattr(route, "path", "unmatched")
        if scope["path"].startswith(API_PREFIX + "/") and not path.startswith(API_PREFIX):
            path = API_PREFIX + path  # included routers report their path without the prefix
        method = scope["method"]
        self.metrics.latency.labels(method, path).observe(elapsed)
        self.metrics.requests.labels(method, path, str(status)).inc()
        store = self.fastapi_app.state.services.store
        if path.startswith(API_PREFIX) and (summary := self.window.add(elapsed, status)):
            record_latency_window(store, summary)
        principal = (scope.get("state") or {}).get("principal")
        if method in WRITE_METHODS and principal is not None and path != "unmatched":
            store.append(
                f"audit-{principal.tenant_id}",
                "audit",
                principal.tenant_id,
                [
                    NewEvent(
                        type="ApiWrite",
                        payload={
                            "key_id": principal.key_id,
                            "method": method,
                            "route": path,
                            "path": scope["path"],
                            "status": status,
                            "duration_ms": round(elapsed * 1000, 3),
                        },
                    )
                ],
            )


def record_latency_window(store: Any, summary: dict[str, Any]) -> None:
    store.append(
        f"api-latency-{summary['source']}",
        "api_metrics",
        "system",
        [NewEvent(type="ApiLatencyWindow", payload=summary)],
    )


def install(app: FastAPI) -> None:
    metrics = Metrics()
    app.state.latency_window = LatencyWindow()
    app.add_middleware(
        EdgeMiddleware, fastapi_app=app, metrics=metrics, window=app.state.latency_window
    )

    @app.get("/metrics", include_in_schema=False)
    def metrics_endpoint() -> Response:
        svc = app.state.services
        for status, n in svc.sessions.count_by_status().items():
            metrics.sessions.labels(status).set(n)
        metrics.events.set(svc.store.last_position())
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


__all__: list[Any] = ["install"]
