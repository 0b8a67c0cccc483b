"""Liveness and readiness: is the store reachable, how far has it got.

Answered from the event loop alone: the store is asked at most every ``MAX_AGE_S`` by a
background read in the thread pool, and every probe in between reads that answer. So /health
measures whether the API can answer at all (its event loop), costs the database nothing
however often it is polled, and says "unavailable" within about MAX_AGE_S of the store
going away.
"""

from __future__ import annotations

import asyncio
import os
import time

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Request, Response

from nofx import __version__
from nofx.api.deps import Services, services
from nofx.api.parsed import ParsedJsonRoute
from nofx.api.schemas import Health
from nofx.errors import NofxError
from nofx.store import EventStore

router = APIRouter(tags=["health"], route_class=ParsedJsonRoute)
MAX_AGE_S = 0.5


class StoreUnavailable(NofxError):
    code = "store-unavailable"
    http_status = 503


class StoreProbe:
    """The store's last position (or why it could not be read), at most MAX_AGE_S old."""

    def __init__(self, store: EventStore, max_age_s: float = MAX_AGE_S) -> None:
        self.store = store
        self.max_age_s = max_age_s
        self._answer: int | Exception | None = None
        self._at = float("-inf")
        self._refreshing: asyncio.Future[None] | None = None

    async def last_position(self) -> int:
        stale = time.monotonic() - self._at > self.max_age_s
        if stale and (self._refreshing is None or self._refreshing.done()):
            self._refreshing = asyncio.ensure_future(self._refresh())
        if self._answer is None and self._refreshing is not None:
            await asyncio.shield(self._refreshing)  # the first answer is waited for
        answer = self._answer
        if isinstance(answer, Exception) or answer is None:
            name = type(answer).__name__ if answer is not None else "no answer"
            raise StoreUnavailable(
                f"the event store is not reachable: {name}",
                hint="check NOFX_DATABASE_URL and that the database is up",
            )
        return answer

    async def _refresh(self) -> None:
        try:
            self._answer = await anyio.to_thread.run_sync(self.store.last_position)
        except Exception as exc:
            self._answer = exc
        self._at = time.monotonic()


async def fast_answer(app: FastAPI) -> Response | None:
    """The /health answer without routing, dependencies or model serialization, or None when
    the store is unavailable (the route then answers with its problem+json).

    The edge middleware answers GET /api/v1/health with this: a probe must cost the event loop
    almost nothing, or it measures its own cost under load instead of the loop's (each Python
    step on the loop is a point where it can lose the GIL to a busy handler thread).
    """
    try:
        last = await app.state.store_probe.last_position()
    except StoreUnavailable:
        return None
    prefix: bytes | None = getattr(app.state, "health_prefix", None)
    if prefix is None:  # the constant part, rendered once exactly as the route renders it
        template = Health(
            status="ok",
            version=__version__,
            store=app.state.services.store.dialect,
            last_position=0,
            worker_pid=os.getpid(),
        ).model_dump_json()
        head, _, tail = template.partition('"last_position":0')
        prefix = (head + '"last_position":').encode()
        app.state.health_prefix, app.state.health_suffix = prefix, tail.encode()
    body = prefix + str(last).encode() + app.state.health_suffix
    return Response(body, media_type="application/json")


@router.get("/health", response_model=Health, summary="Service and store status")
async def health(request: Request, svc: Services = Depends(services)) -> Health:
    probe: StoreProbe = request.app.state.store_probe
    last = await probe.last_position()
    return Health(
        status="ok",
        version=__version__,
        store=svc.store.dialect,
        last_position=last,
        worker_pid=os.getpid(),
    )
