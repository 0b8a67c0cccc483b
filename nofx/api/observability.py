"""Prometheus metrics, the audit trail of writes, and the body size limit, as one pure ASGI middleware.

Besides the Prometheus histogram (for scrapers), each API process writes an
``ApiLatencyWindow`` event per minute with the requests it served and their p50/p95/p99, so
the data platform (marts, the API-latency alert rule, dashboards) sees the API's latency
without a metrics server.

(Starlette's ``@app.middleware("http")`` wraps every request in extra tasks and
streams; a plain ASGI middleware costs a fraction of that on the hot path.)
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import math
import os
import socket
import time
from typing import Any

import anyio.to_thread
from fastapi import Depends, FastAPI, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nofx.api import problems
from nofx.api.deps import metrics_reader
from nofx.api.limits import ApiLimits, json_depth
from nofx.api.parsed import PARSED_JSON
from nofx.api.routes import health
from nofx.data_contract import StreamType
from nofx.domain import NewEvent
from nofx.store.writer import Append

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
API_PREFIX = "/api/v1"
HEALTH_PATH = API_PREFIX + "/health"
OFFLOAD_CHECK_BYTES = 64 * 1024
LATENCY_WINDOW_S = 60.0

log = logging.getLogger(__name__)


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
        self,
        app: ASGIApp,
        fastapi_app: FastAPI,
        metrics: Metrics,
        window: LatencyWindow,
        limits: ApiLimits | None = None,
    ) -> None:
        self.app = app
        self.limits = limits or ApiLimits()
        self.fastapi_app = fastapi_app
        self.metrics = metrics
        self.window = window

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        scope.setdefault("state", {})["received_at"] = time.monotonic()  # for time budgets
        if scope["method"] == "GET" and scope["path"] == HEALTH_PATH:
            answer = await health.fast_answer(self.fastapi_app)
            if answer is not None:  # else the route answers, with its problem+json
                await answer(scope, receive, send)
                await self._observe(scope, 200, time.perf_counter() - start, HEALTH_PATH)
                return
        if scope["method"] in WRITE_METHODS:
            checked = await self._checked_body(scope, receive)
            if isinstance(checked, Response):
                await checked(scope, receive, send)
                await self._observe(scope, checked.status_code, time.perf_counter() - start)
                return
            receive = _replay(checked, receive)
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            await self._observe(scope, status["code"], time.perf_counter() - start)

    async def _checked_body(self, scope: Scope, receive: Receive) -> bytes | Response:
        """The whole body, counted as it streams in (Content-Length or chunked alike), or the
        problem answer: 413 past the size limit, 422 for JSON nested too deep or holding
        NaN/Infinity. Refused before any handler (or the store) sees it."""
        limit = self.limits.max_body_bytes
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            return _too_large(limit, scope["path"])
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return _too_large(limit, scope["path"])
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        content_type = headers.get(b"content-type", b"").lower()
        if body and (not content_type or b"json" in content_type):
            if len(body) > OFFLOAD_CHECK_BYTES:  # parsing a large body is worth a thread
                value, refusal = await anyio.to_thread.run_sync(
                    parse_checked, body, self.limits.max_json_depth
                )
            else:
                value, refusal = parse_checked(body, self.limits.max_json_depth)
            if refusal is not None:
                return problems.problem(
                    422,
                    "validation-error",
                    "Request is not valid",
                    refusal,
                    scope["path"],
                    errors=[{"field": "body", "message": refusal, "type": "json"}],
                )
            if value is not NOT_JSON:  # the route reads this instead of parsing again
                scope["state"][PARSED_JSON] = value
        return body

    async def _observe(
        self, scope: Scope, status: int, elapsed: float, route_path: str | None = None
    ) -> None:
        """Metrics here; the store writes (latency window, audit) are queued on the store's
        group-commit writer after the answer went out: no thread hop, no database I/O and no
        wait on the event loop (they commit with the next group)."""
        route = scope.get("route")
        path: str = route_path or getattr(route, "path", None) or "unmatched"
        if scope["path"].startswith(API_PREFIX + "/") and not path.startswith(API_PREFIX):
            path = API_PREFIX + path  # included routers report their path without the prefix
        method = scope["method"]
        self.metrics.latency.labels(method, path).observe(elapsed)
        self.metrics.requests.labels(method, path, str(status)).inc()
        store = self.fastapi_app.state.services.store
        if path.startswith(API_PREFIX) and (summary := self.window.add(elapsed, status)):
            queue_write(store, latency_window_write(summary))
        principal = (scope.get("state") or {}).get("principal")
        if method in WRITE_METHODS and principal is not None and path != "unmatched":
            queue_write(store, audit_write(principal, method, path, scope["path"], status, elapsed))


def queue_write(store: Any, op: Append) -> None:
    """Hand ``op`` to the writer and return; a failed commit is logged, never lost silently."""
    future = store.submit(op)
    future.add_done_callback(_log_failure)


def _log_failure(future: concurrent.futures.Future[Any]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.warning("an audit or metrics write was not committed: %s", exc)


def audit_write(
    principal: Any,
    method: str,
    route: str,
    path: str,
    status: int,
    elapsed: float,
) -> Append:
    """The audit trail of a write: who, what, the answer and how long it took."""
    return Append(
        f"audit-{principal.tenant_id}",
        StreamType.AUDIT,
        principal.tenant_id,
        [
            NewEvent(
                type="ApiWrite",
                payload={
                    "key_id": principal.key_id,
                    "method": method,
                    "route": route,
                    "path": path,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                },
            )
        ],
    )


class _NonFinite(ValueError):
    pass


def _refuse_constant(name: str) -> float:
    raise _NonFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFinite(text)
    return value


NOT_JSON: Any = object()
"""What parse_checked returns for bytes that are not JSON (the route's validation says where)."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Each JSON object, built in Python: the C parser holds the GIL for a whole document, so
    parsing a large body in a thread would still stall the event loop for all of it; a Python
    step per object is a point where the loop can take the GIL back."""
    return dict(pairs)


def json_refusal(body: bytes, max_depth: int) -> str | None:
    """Why a JSON body is refused before it reaches a handler, or None to let it through."""
    return parse_checked(body, max_depth)[1]


def parse_checked(body: bytes, max_depth: int) -> tuple[Any, str | None]:
    """The body's JSON value and why it is refused (None to let it through), in one parse.

    NaN and Infinity are not JSON (RFC 8259) although Python reads them, and a number like
    1e999 reads as infinity: a ``budget_usd`` of Infinity would mean "no budget". Nesting
    deeper than ``max_depth`` is refused too: no body the API documents comes close, and a
    deep one costs every later reader (serializers stop at a fixed depth).
    """
    try:
        value = json.loads(
            body,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            object_pairs_hook=_object,
        )
    except _NonFinite as exc:
        return NOT_JSON, (
            f"numbers must be finite: {exc} is not accepted (JSON has no NaN or Infinity); "
            "send a finite number, or leave the field out"
        )
    except RecursionError:
        return NOT_JSON, f"the JSON body is nested deeper than {max_depth} levels; flatten it"
    except json.JSONDecodeError:
        return NOT_JSON, None  # the route's own validation reports where the JSON breaks
    except ValueError as exc:  # e.g. an integer of thousands of digits
        return NOT_JSON, f"the JSON body is not accepted: {exc}"
    if json_depth(value, max_depth) > max_depth:
        return NOT_JSON, f"the JSON body is nested deeper than {max_depth} levels; flatten it"
    return value, None


def _too_large(limit: int, path: str) -> Response:
    return problems.problem(
        413,
        "payload-too-large",
        "Payload too large",
        f"request bodies are limited to {limit} bytes; send less "
        "(the operator sets NOFX_API_MAX_BODY_BYTES)",
        path,
    )


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then listens to the client again
    (so a streaming answer still learns when the client leaves)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def latency_window_write(summary: dict[str, Any]) -> Append:
    return Append(
        f"api-latency-{summary['source']}",
        StreamType.API_METRICS,
        "system",
        [NewEvent(type="ApiLatencyWindow", payload=summary)],
    )


def install(app: FastAPI, limits: ApiLimits | None = None) -> None:
    metrics = Metrics()
    app.state.latency_window = LatencyWindow()
    app.add_middleware(
        EdgeMiddleware,
        fastapi_app=app,
        metrics=metrics,
        window=app.state.latency_window,
        limits=limits or ApiLimits(),
    )

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(metrics_reader)])
    def metrics_endpoint() -> Response:
        """Counts across every tenant, so only a key with the ``metrics`` scope reads them
        (an operator's scope: ``nofx keys create --scope metrics``)."""
        svc = app.state.services
        for status, n in svc.sessions.count_by_status().items():
            metrics.sessions.labels(status).set(n)
        metrics.events.set(svc.store.last_position())
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


__all__: list[Any] = ["install"]
