"""Prometheus metrics and the audit trail of writes, as one middleware."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from nofx.domain import NewEvent

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
API_PREFIX = "/api/v1"


def install(app: FastAPI) -> None:
    registry = CollectorRegistry()
    requests = Counter(
        "nofx_http_requests_total",
        "HTTP requests",
        ["method", "route", "status"],
        registry=registry,
    )
    latency = Histogram(
        "nofx_http_request_duration_seconds",
        "HTTP request latency",
        ["method", "route"],
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
        registry=registry,
    )
    sessions = Gauge("nofx_sessions", "Sessions by status", ["status"], registry=registry)
    events = Gauge("nofx_events_last_position", "Position of the newest event", registry=registry)

    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        if request.url.path.startswith(API_PREFIX + "/") and not path.startswith(API_PREFIX):
            path = API_PREFIX + path  # included routers report their path without the prefix
        latency.labels(request.method, path).observe(time.perf_counter() - start)
        requests.labels(request.method, path, str(response.status_code)).inc()
        principal = getattr(request.state, "principal", None)
        if request.method in WRITE_METHODS and principal is not None and path != "unmatched":
            store = request.app.state.services.store
            store.append(
                f"audit-{principal.tenant_id}",
                "audit",
                principal.tenant_id,
                [
                    NewEvent(
                        type="ApiWrite",
                        payload={
                            "key_id": principal.key_id,
                            "method": request.method,
                            "route": path,
                            "path": request.url.path,
                            "status": response.status_code,
                        },
                    )
                ],
            )
        return response

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        svc = app.state.services
        for status, n in svc.sessions.count_by_status().items():
            sessions.labels(status).set(n)
        events.set(svc.store.last_position())
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
