"""The HTTP API: ``create_app()`` builds it (``uvicorn nofx.api.app:create_app --factory``)."""

from __future__ import annotations

import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from nofx import __version__
from nofx.api import observability, offline_docs, pagination, problems, spec_examples, usage
from nofx.api.compute import AnalysisPool
from nofx.api.deps import Services
from nofx.api.limits import ApiLimits
from nofx.api.routes import (
    agents,
    alert_rules,
    alerts,
    analytics,
    communicate,
    custom_metrics,
    health,
    keys,
    pools,
    sessions,
    workflows,
)
from nofx.api.routes.sessions import StreamCounter
from nofx.bus import MessageBus
from nofx.registry import AgentRegistry
from nofx.routing.router import default_router
from nofx.routing.selection import Selector
from nofx.security import ApiKeyService, FailureGuard, SharedRateLimiter
from nofx.sessions import SessionService
from nofx.settings import Settings
from nofx.store import EventStore

DESCRIPTION = """
The NOFX control plane: register agents, request sessions, follow their events.

Errors are `application/problem+json` with a stable `type` URI per error and a
`detail` that says what to do next. Lists are paginated with opaque cursors
(`limit`, `cursor` → `next_cursor`). Authenticate with
`Authorization: Bearer nofx_<id>_<secret>` (create keys with `nofx keys create`);
the key decides the tenant, the scopes (read, write, admin) and the rate limit.
"""


def _default_selector(store: EventStore) -> Selector:
    """The dry run ranks as the runtime would, without exploration noise, on the statistics
    every worker shares through the store."""
    return default_router(store, seed=7, explore=False, explained=10)


def auth_required_from_env() -> bool:
    """API keys are required unless NOFX_API_AUTH=off (local experiments only)."""
    return Settings.from_env().api_auth


def create_app(
    settings: Settings | None = None,
    *,
    store: EventStore | None = None,
    auth_required: bool | None = None,
    limits: ApiLimits | None = None,
) -> FastAPI:
    settings = settings or Settings.from_env()
    owns_store = store is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # handlers run in threads; when one is busy in Python, the event loop waits for the
        # GIL up to the switch interval (5 ms by default) at every hand-off: a shorter one
        # keeps every other request fast (issue 10: /health from 2 ms to 290 ms)
        sys.setswitchinterval(app.state.services.limits.gil_switch_interval_ms / 1000)
        app.state.analysis_pool.start()
        # the spec is built and rendered now, in a thread: built on the first GET it held
        # the event loop for 100-300 ms (every other request waited)
        await anyio.to_thread.run_sync(app.state.openapi_body)
        await anyio.to_thread.run_sync(build_routes_now, app)
        yield
        # the last, partial latency window is worth keeping: nothing is silently dropped
        store = app.state.services.store
        if summary := app.state.latency_window.flush():
            observability.queue_write(store, observability.latency_window_write(summary))
        await anyio.to_thread.run_sync(usage.flush, app)
        # audit events and windows were queued without waiting: a no-op through the writer
        # returns once everything queued before it is committed
        await anyio.to_thread.run_sync(store.call, lambda _tx: None)
        app.state.analysis_pool.close()
        if owns_store:
            app.state.services.store.dispose()

    app = FastAPI(
        title="NOFX control plane",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from local assets below: the CDN pages are blank offline
        redoc_url=None,
        openapi_tags=[
            {"name": "health", "description": "service status"},
            {"name": "agents", "description": "the agent registry"},
            {"name": "orchestration", "description": "sessions and agent selection"},
            {"name": "workflows", "description": "workflow analysis"},
            {"name": "analytics", "description": "predictions, insights, recommendations"},
            {"name": "alerts", "description": "alerts raised by the rules, and resolving them"},
            {"name": "keys", "description": "API keys (admin scope)"},
        ],
    )
    if store is None:
        settings.ensure_dirs()
        store = EventStore(settings.database_url)
    registry = AgentRegistry(store)
    limits = limits or ApiLimits.from_settings(settings)
    pagination.configure(settings.home, settings.cursor_secret)
    app.state.services = Services(
        store=store,
        registry=registry,
        sessions=SessionService(store, registry),
        keys=ApiKeyService(store, cache_s=limits.auth_cache_s),
        limiter=SharedRateLimiter(store),
        auth_required=auth_required_from_env() if auth_required is None else auth_required,
        limits=limits,
        auth_guard=FailureGuard(limits.auth_failures_burst, limits.auth_failures_per_minute),
    )
    app.state.analysis_pool = AnalysisPool(
        limits.analysis_workers, limits.analysis_budget_s, limits.analysis_max_waiting
    )
    app.state.sse_streams = StreamCounter()
    app.state.store_probe = health.StoreProbe(store)
    app.state.selector = _default_selector(store)
    app.state.bus = MessageBus(store)
    problems.install(app)
    observability.install(app, limits)
    usage.install(app)
    offline_docs.install(app)

    errors = problems.problem_responses()  # documented on every operation
    for module in (
        health,
        agents,
        sessions,
        communicate,
        pools,
        workflows,
        analytics,
        alerts,
        alert_rules,
        custom_metrics,
        keys,
    ):
        app.include_router(module.router, prefix="/api/v1", responses=errors)
    app.include_router(communicate.breakers_router, prefix="/api/v1", responses=errors)
    install_response_examples(app)
    return app


def build_routes_now(app: FastAPI) -> None:
    """Have FastAPI build every route's request handling (dependencies, body models) now.

    FastAPI builds the routes of an included router on the first request that reaches that
    router, on the event loop: 100-300 ms per router under load, during which every other
    request (and /health) waits. Matching one throwaway request against each router at
    startup builds them all, before the first client is served.
    """
    for route in app.router.routes:
        scope: dict[str, Any] = {
            "type": "http",
            "method": "GET",
            "path": "/",
            "root_path": "",
            "headers": [],
            "query_string": b"",
        }
        route.matches(scope)


def install_response_examples(app: FastAPI) -> None:
    """Serve the spec with the recorded response examples (nofx/api/spec_examples.py) attached.

    The spec is rendered to bytes once (at startup, in a thread) and served from them:
    FastAPI's own /openapi.json route builds and renders it on the event loop.
    """
    build = app.openapi
    lock = threading.Lock()

    def openapi() -> dict[str, Any]:
        with lock:
            if app.openapi_schema is None:
                app.openapi_schema = spec_examples.attach_response_examples(
                    build(), spec_examples.load_examples()
                )
        return app.openapi_schema

    rendered: list[bytes] = []

    def openapi_body() -> bytes:
        if not rendered:
            rendered.append(JSONResponse(openapi()).body)
        return rendered[0]

    async def openapi_json(request: Request) -> Response:
        body = rendered[0] if rendered else await anyio.to_thread.run_sync(openapi_body)
        return Response(body, media_type="application/json")

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.openapi_body = openapi_body
    if app.openapi_url:
        app.router.routes[:] = [
            r for r in app.router.routes if getattr(r, "path", None) != app.openapi_url
        ]
        app.add_route(app.openapi_url, openapi_json, include_in_schema=False)
