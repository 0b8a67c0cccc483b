"""Prometheus metrics, the audit trail of writes, and the body size limit, as one pure ASGI middleware.

(Starlette's ``@app.middleware("http")`` wraps every request in extra tasks and
streams; a plain ASGI middleware costs a fraction of that on the hot path.)
"""

from __future__ import annotations

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

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI, metrics: Metrics) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        self.metrics = metrics

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
        principal = (scope.get("state") or {}).get("principal")
        if method in WRITE_METHODS and principal is not None and path != "unmatched":
            store = self.fastapi_app.state.services.store
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
                        },
                    )
                ],
            )


def install(app: FastAPI) -> None:
    metrics = Metrics()
    app.add_middleware(EdgeMiddleware, fastapi_app=app, metrics=metrics)

    @app.get("/metrics", include_in_schema=False)
    def metrics_endpoint() -> Response:
        svc = app.state.services
        for status, n in svc.sessions.count_by_status().items():
            metrics.sessions.labels(status).set(n)
        metrics.events.set(svc.store.last_position())
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


__all__: list[Any] = ["install"]
