"""The HTTP API: ``create_app()`` builds it (``uvicorn nofx.api.app:create_app --factory``)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from nofx import __version__
from nofx.api import examples, observability, offline_docs, problems
from nofx.api.deps import Services
from nofx.api.routes import (
    agents,
    alerts,
    analytics,
    communicate,
    health,
    keys,
    pools,
    sessions,
    workflows,
)
from nofx.bus import MessageBus
from nofx.registry import AgentRegistry
from nofx.routing.router import SmartRouter
from nofx.routing.selection import Selector
from nofx.security import ApiKeyService, SharedRateLimiter
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


def _default_selector() -> Selector:
    """The dry run ranks as the runtime would, without exploration noise."""
    return SmartRouter(seed=7, explore=False)


def auth_required_from_env() -> bool:
    """API keys are required unless NOFX_API_AUTH=off (local experiments only)."""
    return os.environ.get("NOFX_API_AUTH", "keys").lower() not in ("off", "0", "false", "none")


def create_app(
    settings: Settings | None = None,
    *,
    store: EventStore | None = None,
    auth_required: bool | None = None,
) -> FastAPI:
    settings = settings or Settings.from_env()
    owns_store = store is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # the last, partial latency window is worth keeping: nothing is silently dropped
        if summary := app.state.latency_window.flush():
            observability.record_latency_window(app.state.services.store, summary)
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
    app.state.services = Services(
        store=store,
        registry=registry,
        sessions=SessionService(store, registry),
        keys=ApiKeyService(store),
        limiter=SharedRateLimiter(store),
        auth_required=auth_required_from_env() if auth_required is None else auth_required,
    )
    app.state.selector = _default_selector()
    app.state.bus = MessageBus(store)
    problems.install(app)
    observability.install(app)
    offline_docs.install(app)

    for module in (
        health,
        agents,
        sessions,
        communicate,
        pools,
        workflows,
        analytics,
        alerts,
        keys,
    ):
        app.include_router(module.router, prefix="/api/v1")
    app.include_router(communicate.breakers_router, prefix="/api/v1")
    install_response_examples(app)
    return app


def install_response_examples(app: FastAPI) -> None:
    """Serve the spec with the recorded response examples (nofx/api/examples.py) attached."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = examples.attach_response_examples(
                build(), examples.load_examples()
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
