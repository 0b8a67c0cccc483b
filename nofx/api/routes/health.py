"""Liveness and readiness: is the store reachable, how far has it got."""

from __future__ import annotations

import os

from fastapi import APIRouter, Depends

from nofx import __version__
from nofx.api.deps import Services, services
from nofx.api.schemas import Health
from nofx.errors import NofxError

router = APIRouter(tags=["health"])


class StoreUnavailable(NofxError):
    code = "store-unavailable"
    http_status = 503


@router.get("/health", response_model=Health, summary="Service and store status")
def health(svc: Services = Depends(services)) -> Health:
    try:
        last = svc.store.last_position()
    except Exception as exc:
        raise StoreUnavailable(
            f"the event store is not reachable: {type(exc).__name__}",
            hint="check NOFX_DATABASE_URL and that the database is up",
        ) from exc
    return Health(
        status="ok",
        version=__version__,
        store=svc.store.dialect,
        last_position=last,
        worker_pid=os.getpid(),
    )
